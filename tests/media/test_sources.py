"""The live sources, read by the analyzer's own ingest over real sockets: RTMP (ffmpeg -listen), RTSP (GStreamer's
RTSP server) and RTMPS (stunnel in front of RTMP). Opening, describing, decoding, the resolution rule, a
publisher killed mid-stream, an unreachable address, and the sources' own life cycle."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from analyzer import ingest
from media_support import FPS, PROTOCOLS, SMALL
from testsupport import needs

from emotionctl.media import LiveSource, RtmpSource, ToolMissing, listening, live_sources, require_tools

pytestmark = pytest.mark.media

Serve = Callable[..., LiveSource]
# A long read timeout: a publisher that dies must end the stream by itself, not through the stall timeout.
TIMEOUT = (15.0, 30.0)


def _read(container: Any, n: int, frames: Iterator[ingest.Frame] | None = None) -> list[ingest.Frame]:
    out: list[ingest.Frame] = []
    for frame in frames or ingest.frames(container):
        out.append(frame)
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_open_describe_and_decode(serve: Serve, small_clip: Path, protocol: str) -> None:
    source = serve(protocol, small_clip)
    assert source.url.startswith(f"{protocol}://127.0.0.1:")
    container = ingest.open_stream(source.url, TIMEOUT)
    try:
        assert ingest.describe_sources(container) == [
            {
                "id": "stream-0",
                "name": "video 0",
                "type": "video",
                "device": "stream",
                "codec": "h264",
                "width": SMALL[0],
                "height": SMALL[1],
                "fps": float(FPS),
            }
        ]
        frames = _read(container, 20)
    finally:
        container.close()
    assert len(frames) == 20
    assert all(f.luma.shape == (SMALL[1], SMALL[0]) and f.luma.dtype.name == "uint8" for f in frames)
    pts = [f.pts_seconds for f in frames if f.pts_seconds is not None]
    assert len(pts) >= 19 and pts == sorted(pts)
    # played in real time: 19 frame intervals of stream time took about as long on the wall clock
    assert frames[-1].received - frames[0].received > 0.5 * (pts[-1] - pts[0])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_trace_tells_when_each_frame_was_sent(serve: Serve, small_clip: Path, protocol: str) -> None:
    """trace=True (for latency measurements): every frame decoded after the open has a send time before it."""
    source = serve(protocol, small_clip, trace=True)
    container = ingest.open_stream(source.url, TIMEOUT)
    try:
        frames = _read(container, 20)
    finally:
        container.close()
    sent = [(source.sent_at(f.pts_seconds), f.received) for f in frames if f.pts_seconds is not None]
    assert len(sent) >= 19
    # Send times are stamped when this process reads the publisher's log line, on a reader thread that competes
    # with the decoding thread for the GIL: allow it to lag a little behind the frame it describes.
    assert all(at is not None and at <= received + 0.1 for at, received in sent), sent
    assert [at for at, _ in sent] == sorted(at for at, _ in sent)  # type: ignore[type-var]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_publisher_killed_mid_stream_ends_the_stream(serve: Serve, small_clip: Path, protocol: str) -> None:
    source = serve(protocol, small_clip)
    container = ingest.open_stream(source.url, TIMEOUT)
    try:
        frames = ingest.frames(container)
        assert len(_read(container, 5, frames)) == 5
        source.kill()
        killed = time.monotonic()
        with pytest.raises(ingest.StreamEnded):
            for _ in frames:
                pass
        ended = time.monotonic() - killed
    finally:
        container.close()
    # the end was seen from the connection itself, not by waiting for the read (stall) timeout
    assert ended < TIMEOUT[1] - 5, f"{protocol}: stream end noticed only after {ended:.1f} s"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreachable_address(protocol: str, small_clip: Path) -> None:
    needs("ffmpeg")
    port = live_sources.free_port()  # nothing listens there
    url = {
        "rtmp": "rtmp://127.0.0.1:{}/live/k",
        "rtsp": "rtsp://127.0.0.1:{}/live",
        "rtmps": "rtmps://127.0.0.1:{}/live/k",
    }
    with pytest.raises(ingest.StreamUnreachable) as caught:
        ingest.open_stream(url[protocol].format(port), (5.0, 5.0))
    assert "live/k" not in str(caught.value)  # the stream key is never repeated in errors


@pytest.mark.parametrize("protocol", ["rtmp", "rtsp"])
def test_above_1080p_is_refused_at_open(serve: Serve, qhd_clip: Path, protocol: str) -> None:
    source = serve(protocol, qhd_clip)
    with pytest.raises(ingest.ResolutionExceeded, match="2560x1440"):
        ingest.open_stream(source.url, TIMEOUT)


def test_rtmp_serves_one_client_unless_relisten(serve: Serve, small_clip: Path) -> None:
    once = serve("rtmp", small_clip)
    container = ingest.open_stream(once.url, TIMEOUT)
    assert len(_read(container, 3)) == 3
    container.close()
    with pytest.raises(ingest.StreamUnreachable):  # ffmpeg -listen served its one client and exited
        ingest.open_stream(once.url, (3.0, 3.0))

    again = serve("rtmp", small_clip, relisten=True)
    assert isinstance(again, RtmpSource)
    for _ in range(2):
        again.wait_ready(30)
        container = ingest.open_stream(again.url, TIMEOUT)
        assert len(_read(container, 3)) == 3
        container.close()
    # a crashed publisher comes back, as a restarted encoder would
    again.kill()
    again.wait_ready(30)
    container = ingest.open_stream(again.url, TIMEOUT)
    assert len(_read(container, 3)) == 3
    container.close()
    assert again.listeners >= 3


def test_rtsp_clip_plays_once_then_ends(serve: Serve, tmp_path: Path) -> None:
    from emotionctl.media.clips import make_face_clip

    clip = make_face_clip(*SMALL, fps=FPS, segments=(("face", 1),))
    source = serve("rtsp", clip)
    for _ in range(2):  # every client gets the whole clip from its start
        container = ingest.open_stream(source.url, TIMEOUT)
        with pytest.raises(ingest.StreamEnded):
            for _frame in ingest.frames(container):
                pass
        container.close()


def test_rtsp_loop_serves_a_repeated_copy(serve: Serve, small_clip: Path) -> None:
    source = serve("rtsp", small_clip, loop=True, max_lifetime=20)
    container = ingest.open_stream(source.url, TIMEOUT)
    try:
        assert container.duration is None or container.duration / 1e6 >= 20 - 1
        assert len(_read(container, 3)) == 3
    finally:
        container.close()


def test_sources_end_their_processes(small_clip: Path) -> None:
    needs("ffmpeg", "stunnel", "openssl")
    from emotionctl.media import RtmpsSource

    with RtmpsSource(small_clip, max_lifetime=60) as source:
        children = [c.process for c in source._children()]
        assert len(children) == 2 and all(p.poll() is None for p in children)
        cert = source.certificate
        assert cert.is_file()
    assert all(p.poll() is not None for p in children)  # reaped
    assert not cert.exists()
    assert not listening(source.port) and not listening(source.rtmp.port)
    source.stop()  # idempotent


def test_lifetime_guard_stops_a_forgotten_source(small_clip: Path) -> None:
    needs("ffmpeg")
    source = RtmpSource(small_clip, max_lifetime=2).start().wait_ready(30)
    process = source._children()[0].process
    deadline = time.monotonic() + 30
    # nobody calls stop(); the guard marks the source stopped, then ends its process
    while (source.running or process.poll() is None) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not source.running
    assert process.poll() is not None


def test_ffmpeg_ends_by_itself_without_its_parent(small_clip: Path) -> None:
    """The listener's own -timeout bounds it even if the Python process that started it died."""
    needs("ffmpeg")
    source = RtmpSource(small_clip, max_lifetime=2)
    source.start()
    try:
        source._guard.cancel()  # type: ignore[union-attr]  # as if this process had died
        source._children()[0].process.wait(30)
    finally:
        source.stop()


def test_readiness_does_not_connect(serve: Serve, small_clip: Path) -> None:
    source = serve("rtmp", small_clip)
    for _ in range(20):
        source.wait_ready(5)  # would use up ffmpeg's single client if it connected
    container = ingest.open_stream(source.url, TIMEOUT)
    assert len(_read(container, 2)) == 2
    container.close()


def test_listening_reads_the_socket_table() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert not listening(port)  # bound, not listening
        sock.listen()
        assert listening(port)
    assert not listening(port)


def test_require_tools_names_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(live_sources.TOOLS, "nothing", live_sources._Tool(("pkg-a", "pkg-b"), lambda: False))
    monkeypatch.setattr(live_sources, "_present", {})
    with pytest.raises(ToolMissing, match=r"missing nothing: .*apt-get install pkg-a pkg-b"):
        require_tools("nothing")
    with pytest.raises(ValueError, match="unknown tool"):
        require_tools("vlc")


def test_the_rtsp_server_runs_on_the_system_python() -> None:
    needs("gst-rtsp-server")
    out = subprocess.run(
        [live_sources.SYSTEM_PYTHON, str(live_sources.RTSP_SERVER_SCRIPT), "--help"],
        capture_output=True, text=True, timeout=30, env=live_sources._system_env(), check=True,
    )  # fmt: skip
    assert "--lifetime" in out.stdout
    assert "VIRTUAL_ENV" not in live_sources._system_env() and "PYTHONPATH" not in live_sources._system_env()
    assert os.access(live_sources.RTSP_SERVER_SCRIPT, os.R_OK)
