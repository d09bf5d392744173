"""The analyzer's one box type: ``(x0, y0, x1, y1)`` in frame pixels, ``x1 > x0``, ``y1 > y0``."""

from __future__ import annotations

Box = tuple[float, float, float, float]
