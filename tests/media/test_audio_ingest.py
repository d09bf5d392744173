"""The audio side of ingest on real encoded streams: AAC, MP3 and Opus at several rates and layouts come out as
16 kHz mono float32 chunks, contiguous on the stream's clock, with the video frames still all there; a stream
without audio gives no chunk."""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import testsupport
from analyzer import ingest

pytestmark = pytest.mark.media


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    testsupport.needs("ffmpeg")


def _clip(tmp: Path, codec: str, rate: int, layout: str, container: str, seconds: float = 4.0) -> Path:
    out = tmp / f"a-{codec}-{rate}-{layout}.{container}"
    audio = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration={seconds}"]
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc=size=160x120:rate=10:duration={seconds}", *audio, "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", "-c:a", codec, "-ar", str(rate), "-af", f"aformat=channel_layouts={layout}",
         "-shortest", str(out)],
        check=True, capture_output=True, timeout=120,
    )
    return out


@pytest.mark.parametrize(
    ("codec", "rate", "layout", "container"),
    [("aac", 44100, "stereo", "flv"), ("libmp3lame", 48000, "mono", "flv"), ("libopus", 48000, "5.1", "mkv"),
     ("aac", 22050, "mono", "mp4")],
)
def test_audio_tracks_become_contiguous_16k_mono_chunks(tmp_path: Path, codec: str, rate: int, layout: str,
                                                        container: str) -> None:
    clip = _clip(tmp_path, codec, rate, layout, container)
    chunks: list[ingest.AudioChunk] = []
    container_ = ingest.open_stream(str(clip))
    sources = ingest.describe_sources(container_)
    audio_source = next(s for s in sources if s["type"] == "audio")
    assert audio_source["sampleRate"] == rate
    frames = 0
    started = time.time()
    with pytest.raises(ingest.StreamEnded):
        for _ in ingest.frames(container_, audio=chunks.append):
            frames += 1
    container_.close()
    assert frames == 40
    assert all(c.samples.dtype == np.float32 and c.samples.ndim == 1 for c in chunks)
    total = sum(len(c.samples) for c in chunks) / ingest.AUDIO_RATE
    assert total == pytest.approx(4.0, abs=0.15)
    # contiguous on the stream clock (a file is read faster than real time: the clock is the pts, not arrival)
    for a, b in itertools.pairwise(chunks):
        assert b.wall == pytest.approx(a.wall + len(a.samples) / ingest.AUDIO_RATE, abs=0.002)
    assert started - 1 <= chunks[0].wall <= time.time()
    # the tone is there at the right level (no channel lost or summed into clipping)
    level = np.sqrt(np.mean(np.concatenate([c.samples for c in chunks]) ** 2))
    assert 0.05 < level < 1.0


def test_a_stream_without_audio_gives_no_chunk(tmp_path: Path) -> None:
    out = tmp_path / "v.flv"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=10:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(out)], check=True, capture_output=True, timeout=60)
    chunks: list[ingest.AudioChunk] = []
    container = ingest.open_stream(str(out))
    with pytest.raises(ingest.StreamEnded):
        for _ in ingest.frames(container, audio=chunks.append):
            pass
    container.close()
    assert chunks == []
