"""Real media for tests and demos: synthesised face clips and local live sources (RTMP, RTSP, RTMPS).

``make_face_clip`` encodes (once, cached) an H.264 clip of a real smiling face; ``RtmpSource``,
``RtspSource`` and ``RtmpsSource`` serve a clip live on 127.0.0.1 as real processes (FFmpeg, GStreamer's
RTSP server, stunnel). See :mod:`emotionctl.media.clips` and :mod:`emotionctl.media.live_sources`.

:mod:`emotionctl.media.evalset` is the labelled evaluation set (real photos from pinned packages, hand-labelled
faces, synthetic scenes and clips with ground truth); import it from there (it is not re-exported here).
"""

from .clips import DEFAULT_SEGMENTS, Segment, concat_clips, make_face_clip, segment_at, timeline
from .live_sources import (
    LiveSource,
    LiveSourceError,
    RtmpSource,
    RtmpsSource,
    RtspSource,
    ToolMissing,
    free_port,
    listening,
    require_tools,
)

__all__ = [
    "DEFAULT_SEGMENTS",
    "LiveSource",
    "LiveSourceError",
    "RtmpSource",
    "RtmpsSource",
    "RtspSource",
    "Segment",
    "ToolMissing",
    "concat_clips",
    "free_port",
    "listening",
    "make_face_clip",
    "require_tools",
    "segment_at",
    "timeline",
]
