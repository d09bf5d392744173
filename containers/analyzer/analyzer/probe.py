"""``emotionctl probe``: open a stream, describe it, and say whether a session would accept it (exit codes:
:class:`analyzer.cli.ExitCode`)."""

from __future__ import annotations

import time
from typing import Any

from emotion_shared.uri import redact_uri

from . import ingest


def probe(uri: str, timeout: tuple[float, float] = ingest.DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Open ``uri``, decode its first video frame and describe it. Raises ``StreamUnreachable``/``StreamEnded``
    when it cannot be read; a stream above 1080p is reported with ``accepted: false``, not raised."""
    started = time.monotonic()
    result: dict[str, Any] = {"uri": redact_uri(uri), "accepted": True, "reason": None, "sources": []}
    try:
        container = ingest.open_stream(uri, timeout)
    except ingest.ResolutionExceeded as exc:
        return result | {"accepted": False, "reason": str(exc), "openSeconds": round(time.monotonic() - started, 3)}
    try:
        result["openSeconds"] = round(time.monotonic() - started, 3)
        result["sources"] = ingest.describe_sources(container)
        try:
            first = next(ingest.frames(container))
        except ingest.ResolutionExceeded as exc:
            return result | {"accepted": False, "reason": str(exc)}
        except StopIteration:
            raise ingest.StreamEnded("the stream ended before its first frame") from None
        for source in result["sources"]:
            if source["type"] == "video":
                source["width"], source["height"] = first.width, first.height
                break
        result["firstFrameSeconds"] = round(time.monotonic() - started, 3)
    finally:
        container.close()
    return result
