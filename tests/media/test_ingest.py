"""analyzer.ingest beyond the happy path, over real sockets: how a stream ends (dropped, stalled, over), a
silent peer at open, a resolution change mid-stream, audio tracks, and connecting with retries."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from analyzer import ingest
from media_support import FPS, PROTOCOLS, SMALL
from testsupport import needs

from emotionctl.media import LiveSource, RtmpSource, concat_clips, free_port, make_face_clip

pytestmark = pytest.mark.media

Serve = Callable[..., LiveSource]
TIMEOUT = (15.0, 30.0)


def _take(frames: Iterator[ingest.Frame], n: int) -> list[ingest.Frame]:
    out = []
    for frame in frames:
        out.append(frame)
        if len(out) == n:
            break
    return out


# ------------------------------------------------------------------------------------------ the rule itself
@pytest.mark.parametrize(
    ("width", "height", "allowed"),
    [
        (1920, 1080, True),
        (1080, 1920, True),  # portrait 1080p
        (1280, 720, True),
        (1920, 1081, False),
        (1921, 1080, False),
        (2560, 1080, False),  # long side
        (1920, 1200, False),  # short side (and pixels)
        (1088, 1088, False),  # short side
        (2560, 1440, False),
        (3840, 2160, False),
    ],
)
def test_resolution_rule(width: int, height: int, allowed: bool) -> None:
    assert ingest.resolution_allowed(width, height) is allowed
    assert (width * height <= 1920 * 1080) or not allowed
    if allowed:
        ingest.check_resolution(width, height)
    else:
        with pytest.raises(ingest.ResolutionExceeded) as caught:
            ingest.check_resolution(width, height)
        assert (caught.value.width, caught.value.height) == (width, height)


# ------------------------------------------------------------------------------------------ how streams end
@pytest.mark.parametrize(("protocol", "cause"), [("rtmp", "dropped"), ("rtsp", "eof"), ("rtmps", "dropped")])
def test_killed_publisher_cause(serve: Serve, small_clip: Path, protocol: str, cause: str) -> None:
    """RTMP(S): the connection fails (EIO); RTSP: the demuxer just ends — both are StreamEnded."""
    source = serve(protocol, small_clip)
    container = ingest.open_stream(source.url, TIMEOUT)
    try:
        frames = ingest.frames(container)
        assert len(_take(frames, 3)) == 3
        source.kill()
        with pytest.raises(ingest.StreamEnded) as caught:
            for _ in frames:
                pass
    finally:
        container.close()
    assert caught.value.cause == cause


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_frozen_publisher_is_a_stall(serve: Serve, small_clip: Path, protocol: str) -> None:
    """A publisher that hangs with its connection open is only noticed by the read timeout."""
    source = serve(protocol, small_clip)
    container = ingest.open_stream(source.url, (15.0, 2.0))
    try:
        frames = ingest.frames(container)
        assert len(_take(frames, 3)) == 3
        source.freeze()
        with pytest.raises(ingest.StreamEnded) as caught:
            for _ in frames:
                pass
    finally:
        container.close()
        source.thaw()
    assert caught.value.cause == "stalled"
    assert "stalled" in str(caught.value)


def test_stop_flag_ends_the_frames_quietly(serve: Serve, small_clip: Path) -> None:
    source = serve("rtmp", small_clip)
    container = ingest.open_stream(source.url, TIMEOUT)
    stop = threading.Event()
    seen = 0
    try:
        for _frame in ingest.frames(container, stop):  # returns, no StreamEnded
            seen += 1
            if seen == 3:
                stop.set()
    finally:
        container.close()
    assert seen == 3
    calls = iter([False, False, True])  # a callable works too
    again = serve("rtmp", small_clip)
    container = ingest.open_stream(again.url, TIMEOUT)
    try:
        assert len(list(ingest.frames(container, lambda: next(calls, True)))) >= 1
    finally:
        container.close()


@pytest.mark.parametrize("scheme", ["rtmp", "rtsp", "rtmps"])
def test_silent_peer_at_open_is_unreachable(scheme: str) -> None:
    """A server that accepts the connection and never answers: the open timeout ends the attempt."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)  # the kernel completes the handshake; nobody ever reads or writes
        port = server.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ingest.StreamUnreachable) as caught:
            ingest.open_stream(f"{scheme}://127.0.0.1:{port}/live/secretkey", (2.0, 2.0))
        elapsed = time.monotonic() - started
    assert "secretkey" not in str(caught.value)
    assert elapsed < 30, f"the open timeout did not bound the open ({elapsed:.1f} s)"  # not a hang


def test_resolution_change_mid_stream(serve: Serve) -> None:
    needs("ffmpeg")
    small = make_face_clip(*SMALL, fps=FPS, segments=(("face", 1),))
    large = make_face_clip(2560, 1440, fps=FPS, segments=(("face", 2),))
    clip = concat_clips(small, large)
    source = serve("rtmp", clip, loop=False)
    container = ingest.open_stream(source.url, TIMEOUT)  # accepted: it starts at 320x240
    seen: list[tuple[int, int]] = []
    try:
        with pytest.raises(ingest.ResolutionExceeded) as caught:
            for frame in ingest.frames(container):
                seen.append((frame.width, frame.height))
    finally:
        container.close()
    assert seen and set(seen) == {SMALL}
    assert (caught.value.width, caught.value.height) == (2560, 1440)


def test_audio_is_described_and_skipped(serve: Serve, small_clip: Path, tmp_path: Path) -> None:
    needs("ffmpeg")
    clip = tmp_path / "with-audio.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(small_clip), "-f", "lavfi", "-i",
         "sine=frequency=440:sample_rate=44100", "-ac", "2", "-c:v", "copy", "-c:a", "aac", "-shortest", str(clip)],
        check=True, timeout=120,
    )  # fmt: skip
    source = serve("rtmp", clip)
    container = ingest.open_stream(source.url, TIMEOUT)
    try:
        described = ingest.describe_sources(container)
        frames = _take(ingest.frames(container), 10)
    finally:
        container.close()
    by_type = {s["type"]: s for s in described}
    assert set(by_type) == {"video", "audio"}
    assert by_type["video"]["width"] == SMALL[0] and by_type["video"]["codec"] == "h264"
    audio = by_type["audio"]
    assert (audio["codec"], audio["sampleRate"], audio["channels"], audio["device"]) == ("aac", 44100, 2, "stream")
    assert audio["id"] != by_type["video"]["id"]
    assert all(f.luma.shape == (SMALL[1], SMALL[0]) for f in frames)


# --------------------------------------------------------------------------------------------- reconnecting
def test_policy_backoff() -> None:
    policy = ingest.ReconnectPolicy()
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    with pytest.raises(ValueError):
        ingest.ReconnectPolicy(initial=0)


def test_connect_with_retry_gives_up_after_the_window() -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/secretkey"  # nobody listens
    attempts: list[tuple[int, Any]] = []
    policy = ingest.ReconnectPolicy(window_seconds=1.5, initial=0.1, max_delay=0.4)
    with pytest.raises(ingest.StreamUnreachable) as caught:
        ingest.connect_with_retry(url, policy, on_attempt=lambda n, err: attempts.append((n, err)))
    assert "secretkey" not in str(caught.value)
    assert len(attempts) >= 3
    assert attempts[0] == (1, None)
    assert all(isinstance(err, ingest.StreamUnreachable) for _, err in attempts[1:])
    assert [n for n, _ in attempts] == list(range(1, len(attempts) + 1))


def test_connect_with_retry_reaches_a_publisher_that_comes_late(small_clip: Path) -> None:
    needs("ffmpeg")
    source = RtmpSource(small_clip, max_lifetime=60)
    timer = threading.Timer(1.0, source.start)  # the publisher appears a second after we start trying
    timer.start()
    try:
        container = ingest.connect_with_retry(
            source.url, ingest.ReconnectPolicy(window_seconds=30, initial=0.2, max_delay=0.5), timeout=TIMEOUT
        )
        assert container is not None
        try:
            assert len(_take(ingest.frames(container), 3)) == 3
        finally:
            container.close()
    finally:
        timer.join()
        source.stop()


def test_connect_with_retry_stops_on_the_flag() -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/k"
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert ingest.connect_with_retry(url, ingest.ReconnectPolicy(window_seconds=60, initial=0.2), stop) is None
    assert ingest.connect_with_retry(url, stop=lambda: True) is None  # set before the first attempt


def test_connect_with_retry_does_not_retry_a_rejection() -> None:
    opens: list[tuple[float, float]] = []

    def opener(uri: str, timeout: tuple[float, float]) -> Any:
        opens.append(timeout)
        raise ingest.ResolutionExceeded("stream resolution 2560x1440 is above the 1080p maximum", 2560, 1440)

    with pytest.raises(ingest.ResolutionExceeded):
        ingest.connect_with_retry("rtmp://h/a/k", ingest.ReconnectPolicy(window_seconds=5), opener=opener)
    assert len(opens) == 1


def test_connect_with_retry_cuts_the_open_timeout_to_the_window() -> None:
    opens: list[tuple[float, float]] = []

    def opener(uri: str, timeout: tuple[float, float]) -> Any:
        opens.append(timeout)
        raise ingest.StreamUnreachable("refused")

    policy = ingest.ReconnectPolicy(window_seconds=0.3, initial=0.1, max_delay=0.1)
    with pytest.raises(ingest.StreamUnreachable):
        ingest.connect_with_retry("rtmp://h/a/k", policy, timeout=(10.0, 5.0), opener=opener)
    assert opens and all(o == pytest.approx(ingest.MIN_ATTEMPT_OPEN_SECONDS) and r == 5.0 for o, r in opens)
