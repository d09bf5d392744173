"""Constants and helpers shared by the media tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from emotionctl.media import LiveSource, RtmpSource, RtmpsSource, RtspSource

SMALL = (320, 240)
FPS = 15
# the clip the protocol tests play: 4 s of face, 2 s empty, 2 s face
SEGMENTS = (("face", 4), ("empty", 2), ("face", 2))
TOOLS = {"rtmp": ("ffmpeg",), "rtsp": ("ffmpeg", "gst-rtsp-server"), "rtmps": ("ffmpeg", "stunnel", "openssl")}
SOURCES: dict[str, type[LiveSource]] = {"rtmp": RtmpSource, "rtsp": RtspSource, "rtmps": RtmpsSource}
PROTOCOLS = tuple(SOURCES)


