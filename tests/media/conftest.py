"""Real media for the media tests: cached face clips (session-scoped) and live sources on 127.0.0.1.

The sources need Debian programs (ffmpeg, stunnel4, openssl, GStreamer's RTSP server; ``make setup`` installs
them as root). Without them the tests are skipped with the install command, except under CI (``CI`` set),
where a missing tool is a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from media_support import FPS, SEGMENTS, SMALL, SOURCES, TOOLS
from testsupport import needs

from emotionctl.media import LiveSource
from emotionctl.media.clips import make_face_clip


@pytest.fixture(scope="session")
def small_clip() -> Path:
    """320x240, 15 fps: face 4 s, empty 2 s, face 2 s."""
    return make_face_clip(*SMALL, fps=FPS, segments=SEGMENTS)


@pytest.fixture(scope="session")
def face_clip() -> Path:
    """The default clip (640x360, 15 fps): face 4 s, empty 3 s, face 4 s."""
    return make_face_clip()


@pytest.fixture(scope="session")
def qhd_clip() -> Path:
    """2560x1440: above the 1080p limit."""
    return make_face_clip(2560, 1440, fps=FPS, segments=(("face", 2),))


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveSource]]:
    """``serve(protocol, clip, **options)`` → a started, ready source; every one is stopped after the test."""
    started: list[LiveSource] = []

    def _serve(protocol: str, clip: Path, **options: object) -> LiveSource:
        needs(*TOOLS[protocol])
        options.setdefault("max_lifetime", 120.0)
        source = SOURCES[protocol](clip, **options)  # type: ignore[arg-type]
        started.append(source)
        source.start()
        return source.wait_ready(30)

    yield _serve
    for source in started:
        source.stop()
