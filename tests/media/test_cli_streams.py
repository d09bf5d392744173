"""``probe`` and ``emotionctl probe`` / ``emotionctl analyze`` end to end on real live streams."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from analyzer import cli, ingest
from analyzer import probe as probe_mod
from media_support import FPS, SMALL

from emotionctl.media import LiveSource, live_sources

pytestmark = pytest.mark.media

Serve = Callable[..., LiveSource]


def emotionctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emotionctl", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("protocol", ["rtmp", "rtsp", "rtmps"])
def test_probe_accepts_a_live_stream(serve: Serve, small_clip: Path, protocol: str) -> None:
    source = serve(protocol, small_clip)
    result = probe_mod.probe(source.url, timeout=(15.0, 15.0))
    assert result["accepted"] is True and result["reason"] is None
    assert [(s["type"], s["codec"], s["width"], s["height"], s["fps"]) for s in result["sources"]] == [
        ("video", "h264", *SMALL, float(FPS))
    ]
    assert 0 < result["openSeconds"] <= result["firstFrameSeconds"]
    if protocol != "rtsp":
        assert sources_key(source) not in result["uri"]  # the stream key is redacted


def sources_key(source: LiveSource) -> str:
    return source.url.rsplit("/", 1)[1]


def test_probe_rejects_above_1080p(serve: Serve, qhd_clip: Path) -> None:
    source = serve("rtmp", qhd_clip)
    result = probe_mod.probe(source.url, timeout=(15.0, 15.0))
    assert result["accepted"] is False and "2560x1440" in result["reason"]


def test_probe_of_an_unreachable_stream_raises() -> None:
    with pytest.raises(ingest.StreamUnreachable):
        probe_mod.probe(f"rtmp://127.0.0.1:{live_sources.free_port()}/live/k", timeout=(5.0, 5.0))


def test_emotionctl_probe(serve: Serve, small_clip: Path, qhd_clip: Path) -> None:
    ok = emotionctl("probe", serve("rtmps", small_clip).url)
    assert ok.returncode == cli.ExitCode.OK, ok.stderr
    body = json.loads(ok.stdout)
    assert body["accepted"] is True and body["sources"][0]["width"] == SMALL[0]

    big = emotionctl("probe", serve("rtsp", qhd_clip).url)
    assert big.returncode == cli.ExitCode.REJECTED, big.stderr
    body = json.loads(big.stdout)
    assert body["accepted"] is False and "1080p" in body["reason"]

    url = f"rtmp://127.0.0.1:{live_sources.free_port()}/live/secret-key"
    gone = emotionctl("probe", url, "--open-timeout", "3")
    assert gone.returncode == cli.ExitCode.UNREACHABLE
    body = json.loads(gone.stdout)
    assert body["accepted"] is False and body["reason"]
    assert "secret-key" not in gone.stdout + gone.stderr


def _runs(seconds: list[dict[str, Any]]) -> list[tuple[bool, list[dict[str, Any]]]]:
    """Consecutive seconds grouped by whether a face was seen."""
    return [(face, list(group)) for face, group in itertools.groupby(seconds, key=lambda s: s["detectedFaces"] > 0)]


@pytest.mark.parametrize("protocol", ["rtmp"])
def test_emotionctl_analyze_a_live_face_stream(serve: Serve, face_clip: Path, model_dir: Path, protocol: str) -> None:
    """The default clip (face 4 s, empty 3 s, face 4 s) analysed live for 10 s with the real models."""
    source = serve(protocol, face_clip, loop=True)
    done = emotionctl("analyze", source.url, "--seconds", "10", "--models", str(model_dir))
    assert done.returncode == cli.ExitCode.OK, done.stderr
    seconds = [json.loads(line) for line in done.stdout.splitlines()]
    assert [s["t"] for s in seconds] == list(range(10))

    runs = _runs(seconds)
    assert [face for face, _ in runs] == [True, False, True], [s["detectedFaces"] for s in seconds]
    assert 1 <= len(runs[1][1]) <= 4  # the 3 s without a face (seconds at its edges may hold a face)
    for face, group in runs:
        for second in group:
            if not face:
                assert second["faces"] == [] and all(e["people"] == 0 for e in second["emotions"].values())
                continue
            assert second["detectedFaces"] == 1
            emotions = second["emotions"]
            assert max(emotions, key=lambda name: emotions[name]["quantity"]) == "happiness", second
            assert emotions["happiness"]["intensity"] > 0.5
            assert [f["emotion"] for f in second["faces"]] == ["happiness"]
        # one person, one track id for as long as the face stays in view (after 3 s away it is a new sighting)
        assert len({f["track"] for second in group for f in second["faces"]}) == (1 if face else 0)
