"""The synthesised face clips: format, determinism and caching, and what the real detector sees in them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from media_support import FPS, SEGMENTS, SMALL
from testsupport import needs

from emotionctl.media import clips
from emotionctl.media.clips import make_face_clip, segment_at, timeline

pytestmark = pytest.mark.media


def test_clip_format_for_live_sources(small_clip: Path) -> None:
    with av.open(str(small_clip)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        assert (ctx.name, ctx.width, ctx.height, ctx.pix_fmt) == ("h264", *SMALL, "yuv420p")
        assert stream.average_rate == FPS
        assert len(container.streams.audio) == 0
        keyframes, n = [], 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.is_keyframe:
                assert packet.pts is not None and packet.time_base is not None
                keyframes.append(float(packet.pts * packet.time_base))
            n += 1
    assert n == sum(seconds for _, seconds in SEGMENTS) * FPS
    assert keyframes == [float(k) for k in range(len(keyframes))]  # one a second, the first at 0
    head = small_clip.read_bytes()[:65536]
    assert 0 <= head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head  # faststart: index first


def test_clip_remuxes_into_flv_without_reencoding(small_clip: Path, tmp_path: Path) -> None:
    needs("ffmpeg")
    out = tmp_path / "clip.flv"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(small_clip), "-c", "copy", "-f", "flv", str(out)],
        check=True,
        timeout=60,
    )
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == sum(s for _, s in SEGMENTS) * FPS


def test_cached_by_parameters_and_deterministic(tmp_path: Path) -> None:
    first = make_face_clip(96, 64, fps=5, segments=(("face", 1), ("empty", 1)), directory=tmp_path)
    stamp = first.stat().st_mtime_ns
    again = make_face_clip(96, 64, fps=5, segments=(("face", 1), ("empty", 1)), directory=tmp_path)
    assert again == first and again.stat().st_mtime_ns == stamp  # not encoded again
    other = make_face_clip(96, 64, fps=5, segments=(("face", 2),), directory=tmp_path)
    assert other != first
    first.unlink()
    remade = make_face_clip(96, 64, fps=5, segments=(("face", 1), ("empty", 1)), directory=tmp_path)
    with av.open(str(remade)) as a, av.open(str(other)) as b:
        assert a.streams.video[0].frames == 10 and b.streams.video[0].frames == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([remade.name, other.name])  # no temp files left


def test_decoded_frames_are_the_same_every_time(tmp_path: Path) -> None:
    one = make_face_clip(128, 96, fps=5, segments=(("face", 1),), directory=tmp_path / "a")
    two = make_face_clip(128, 96, fps=5, segments=(("face", 1),), directory=tmp_path / "b")
    with av.open(str(one)) as a, av.open(str(two)) as b:
        for fa, fb in zip(a.decode(video=0), b.decode(video=0), strict=True):
            assert np.array_equal(fa.to_ndarray(format="gray"), fb.to_ndarray(format="gray"))


def test_default_cache_is_in_the_repository() -> None:
    assert clips.default_cache_dir() == Path(__file__).resolve().parents[2] / ".cache" / "clips"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 641}, "even"),
        ({"width": 32, "height": 32}, "at least"),
        ({"fps": 0}, "fps"),
        ({"segments": (("smile", 1),)}, "kind"),
        ({"segments": (("face", 0),)}, "> 0"),
        ({"segments": ()}, "at least one"),
        ({"width": 1920, "height": 200}, "elongated"),
    ],
)
def test_bad_parameters_are_clear_errors(kwargs: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        make_face_clip(directory=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_timeline() -> None:
    assert [(s.kind, s.start, s.end) for s in timeline(SEGMENTS)] == [("face", 0, 4), ("empty", 4, 6), ("face", 6, 8)]
    assert [segment_at(SEGMENTS, t) for t in (0, 3.9, 4, 5.99, 6, 8)] == [
        "face",
        "face",
        "empty",
        "empty",
        "face",
        None,
    ]


@pytest.mark.parametrize("size", [SMALL, (640, 360)])
def test_the_real_detector_sees_one_happy_face_only_in_face_segments(model_dir: Path, size: tuple[int, int]) -> None:
    from analyzer.vision import crop_faces, load_models

    detector, classifier = load_models(model_dir)
    clip = make_face_clip(*size, fps=FPS, segments=SEGMENTS)
    sizes: list[float] = []
    centres: list[float] = []
    emotions: list[int] = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            if i % 3:
                continue
            luma = frame.to_ndarray(format="gray")
            faces = detector.detect(luma)
            assert frame.pts is not None and stream.time_base is not None
            kind = segment_at(SEGMENTS, float(frame.pts * stream.time_base))
            if kind == "empty":
                assert faces == [], f"a face in the empty segment at frame {i}"
                continue
            assert len(faces) == 1, f"frame {i}: {len(faces)} faces"
            box = faces[0].box
            sizes.append((box[2] - box[0]) / max(size))
            centres.append((box[0] + box[2]) / 2 / size[0])
            emotions.append(int(classifier.classify(crop_faces(luma, [box]))[0].argmax()))
    assert min(sizes) >= 0.25  # well above the detector's ~9 % floor
    assert max(sizes) - min(sizes) > 0.05  # the face changes size
    assert max(centres) - min(centres) > 0.1  # and moves across the frame
    assert set(emotions) == {3}  # happiness
