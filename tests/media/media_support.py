"""Constants and helpers shared by the media tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import os

import pytest

from emotionctl.media import LiveSource, RtmpSource, RtmpsSource, RtspSource, ToolMissing, require_tools

SMALL = (320, 240)
FPS = 15
# the clip the protocol tests play: 4 s of face, 2 s empty, 2 s face
SEGMENTS = (("face", 4), ("empty", 2), ("face", 2))
TOOLS = {"rtmp": ("ffmpeg",), "rtsp": ("ffmpeg", "gst-rtsp-server"), "rtmps": ("ffmpeg", "stunnel", "openssl")}
SOURCES: dict[str, type[LiveSource]] = {"rtmp": RtmpSource, "rtsp": RtspSource, "rtmps": RtmpsSource}
PROTOCOLS = tuple(SOURCES)


def needs(*tools: str) -> None:
    """Skip (fail under CI) when a Debian program the test needs is missing, with the install command."""
    try:
        require_tools(*tools)
    except ToolMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
