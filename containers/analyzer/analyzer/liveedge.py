"""Where the live edge of a stream is, and how far behind it a frame is.

A live stream's frames carry timestamps (pts, seconds) paced by the sender's clock. The *expected arrival* of
a frame is ``pts + base``, where ``base`` is the smallest ``received - pts`` seen so far: the offset between the
sender's clock and ours for a frame that came in with no queueing at all. A frame's *lag* is ``now - (pts +
base)``: how long after its expected arrival we got to it — time spent in socket buffers while earlier work ran,
plus whatever we are doing with it now. A frame read straight off the wire has a lag near zero whatever its
receive stamp says; a frame read from a backlog has a lag of about the backlog's length.

``base`` may creep up by ``drift`` per second of our clock, so a sender clock slower than ours is not mistaken
for a growing lag. Timestamps that go back by more than a second (a new connection without a reset, a
wrapped clock) restart the estimate.

Used by :func:`analyzer.ingest.frames` (packets: decode or skip to catch up) and by
:class:`analyzer.pipeline.RateGate` (frames: analyse this one or a newer one). No AWS, no PyAV.
"""

from __future__ import annotations

import math

DEFAULT_DRIFT = 0.002


class LiveEdge:
    """The stream clock's offset to ours, from ``(pts, received)`` pairs."""

    def __init__(self, drift: float = DEFAULT_DRIFT) -> None:
        self.drift = drift
        self.reset()

    def reset(self) -> None:
        """Forget the stream clock (a new connection: timestamps restart)."""
        self._base: float | None = None
        self._last_pts = -math.inf
        self._last_received = 0.0
        self.restarted = False  # the last observe() restarted the estimate (timestamps went back)

    def observe(self, pts: float, received: float) -> float:
        """Record a frame (or packet) of stream time ``pts`` received at ``received``; its expected arrival."""
        self.restarted = self._base is not None and pts < self._last_pts - 1.0
        if self.restarted:
            self._base = None
        offset = received - pts
        if self._base is None:
            self._base = offset
        else:
            self._base = min(self._base + self.drift * max(0.0, received - self._last_received), offset)
        self._last_pts = pts
        self._last_received = received
        return pts + self._base

    def lag(self, pts: float, received: float, now: float) -> float:
        """:meth:`observe` the frame, then its lag at ``now`` (seconds, ≥ 0)."""
        return max(0.0, now - self.observe(pts, received))
