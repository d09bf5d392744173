"""Test clips synthesised from a real photo: a smiling face that moves and zooms, and stretches with no face.

The face is scikit-image's ``astronaut()`` photo (Eileen Collins, public domain), cropped around her face
and pasted onto a textured colour background. The detector misses faces smaller than ~9 % of the frame's
long side, so the face box is kept between :data:`FACE_MIN` and :data:`FACE_MAX` of the long side.

Clips are H.264 (libx264, yuv420p, one keyframe a second by default, no B-frames) in a faststart mp4 that
``ffmpeg -c copy`` remuxes into FLV as is. They are deterministic and cached by their parameters in
``<repo>/.cache/clips`` (written atomically), so tests and demos encode each clip once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

SegmentKind = Literal["face", "empty"]
DEFAULT_SEGMENTS: tuple[tuple[SegmentKind, float], ...] = (("face", 4), ("empty", 3), ("face", 4))

# Bump when the pictures or the encoding change: cached clips are then made again.
GENERATOR_VERSION = 1

# The astronaut's face box in the 512x512 photo (x0, y0, x1, y1), as the detector finds it.
PHOTO_FACE = (175.0, 71.0, 277.0, 173.0)
# The pasted patch is this many face sizes wide, centred on the face (hair, ears and chin included).
PATCH_FACES = 1.6
# The face box's side, as a fraction of the frame's long side (the detector needs > ~0.09).
FACE_MIN, FACE_MAX = 0.26, 0.34


@dataclass(frozen=True, slots=True)
class Segment:
    kind: SegmentKind
    start: float  # seconds from the start of the clip
    end: float


def timeline(segments: Iterable[tuple[str, float]] = DEFAULT_SEGMENTS) -> list[Segment]:
    """The segments with their start and end times in the clip."""
    out: list[Segment] = []
    t = 0.0
    for kind, seconds in _normalise(segments):
        out.append(Segment(kind, t, t + seconds))
        t += seconds
    return out


def segment_at(segments: Iterable[tuple[str, float]], t: float) -> SegmentKind | None:
    """The kind of segment playing at clip time ``t`` (None past the end)."""
    for segment in timeline(segments):
        if segment.start <= t < segment.end:
            return segment.kind
    return None


def default_cache_dir() -> Path:
    """``<repo>/.cache/clips`` for a source checkout, else ``~/.cache/emotion-stream/clips``."""
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file():
        return repo / ".cache" / "clips"
    return Path.home() / ".cache" / "emotion-stream" / "clips"


def make_face_clip(
    width: int = 640,
    height: int = 360,
    fps: int = 15,
    segments: Sequence[tuple[str, float]] = DEFAULT_SEGMENTS,
    directory: Path | str | None = None,
    *,
    preset: str = "ultrafast",
    tune: str | None = "zerolatency",
    keyframe_seconds: float = 1.0,
    bit_rate: int | None = None,
    grain: int = 0,
) -> Path:
    """The path of a cached clip with these parameters, encoding it first if needed.

    ``segments``: ``("face", seconds)`` shows the face moving (pan) and changing size smoothly; ``("empty",
    seconds)`` shows the background alone. ``preset``/``tune``/``bit_rate``/``keyframe_seconds`` are the
    libx264 settings (the defaults are a live encoder's: ultrafast, zerolatency, CRF); ``grain`` adds
    deterministic sensor-like noise of that amplitude (grey levels) to every frame.
    """
    spec = _Spec(
        width=int(width),
        height=int(height),
        fps=int(fps),
        segments=tuple(_normalise(segments)),
        preset=preset,
        tune=tune,
        keyframe_seconds=float(keyframe_seconds),
        bit_rate=int(bit_rate) if bit_rate else None,
        grain=int(grain),
    )
    spec.validate()
    folder = Path(directory) if directory is not None else default_cache_dir()
    path = folder / spec.file_name()
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".mp4", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        log.info("encoding test clip %s", path.name)
        _encode(spec, tmp)
        tmp.chmod(0o644)  # mkstemp makes it private; the cache is shared by tests, benches and tools
        os.replace(tmp, path)  # atomic: readers never see a partial clip
    finally:
        tmp.unlink(missing_ok=True)
    return path


def concat_clips(*clips: Path | str, directory: Path | str | None = None) -> Path:
    """One MPEG-TS playing ``clips`` one after the other, H.264 as is (``ffmpeg -f concat -c copy``), cached next
    to the clips (or in ``directory``). The parameter sets travel in-band, so the clips may differ in size: a
    stream whose resolution changes mid-way (e.g. 320x240 then 2560x1440), which :class:`RtmpSource` serves
    as is (``-c copy`` into FLV). Needs the ``ffmpeg`` program."""
    paths = [Path(c).resolve() for c in clips]
    if len(paths) < 2:
        raise ValueError("concat_clips needs at least two clips")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"no clip at {path}")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("concat_clips needs ffmpeg: apt-get install ffmpeg")
    key = json.dumps([GENERATOR_VERSION, *(str(p) for p in paths), *(p.stat().st_size for p in paths)])
    folder = Path(directory) if directory is not None else paths[0].parent
    out = folder / f"concat-{hashlib.sha256(key.encode()).hexdigest()[:12]}.ts"
    if out.is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".concat-", dir=folder) as work:
        parts = []
        for i, path in enumerate(paths):  # Annex B (in-band SPS/PPS) parts first, so the sizes may change
            part = Path(work) / f"{i}.ts"
            _ffmpeg(ffmpeg, "-i", str(path), "-c", "copy", "-bsf:v", "h264_mp4toannexb", part)
            parts.append(part)
        listing = Path(work) / "list.txt"
        listing.write_text("".join(f"file '{part.name}'\n" for part in parts), encoding="utf-8")
        tmp = Path(work) / "out.ts"
        _ffmpeg(ffmpeg, "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", tmp)
        tmp.chmod(0o644)
        os.replace(tmp, out)  # same file system: atomic
    return out


def _ffmpeg(ffmpeg: str, *args: str | Path) -> None:
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    result = subprocess.run(command, capture_output=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {result.stderr.decode(errors='replace')[-500:]}")


# ----------------------------------------------------------------------------------------------- internals
def _normalise(segments: Iterable[tuple[str, float]]) -> list[tuple[SegmentKind, float]]:
    out: list[tuple[SegmentKind, float]] = []
    for kind, seconds in segments:
        if kind not in ("face", "empty"):
            raise ValueError(f"segment kind must be 'face' or 'empty', not {kind!r}")
        if not seconds > 0:
            raise ValueError(f"segment length must be > 0 seconds, not {seconds!r}")
        out.append((kind, float(seconds)))  # type: ignore[arg-type]  # checked just above
    if not out:
        raise ValueError("a clip needs at least one segment")
    return out


@dataclass(frozen=True, slots=True)
class _Spec:
    width: int
    height: int
    fps: int
    segments: tuple[tuple[SegmentKind, float], ...]
    preset: str
    tune: str | None
    keyframe_seconds: float
    bit_rate: int | None
    grain: int

    def validate(self) -> None:
        if self.width < 64 or self.height < 64 or self.width % 2 or self.height % 2:
            raise ValueError(f"clip size must be even and at least 64x64, not {self.width}x{self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps must be in [1, 120], not {self.fps}")
        if _face_range(self.width, self.height)[1] < 0.25 * max(self.width, self.height):
            raise ValueError(f"{self.width}x{self.height} is too elongated to show a face big enough to detect")
        if self.keyframe_seconds <= 0:
            raise ValueError("keyframe_seconds must be > 0")

    def file_name(self) -> str:
        key = json.dumps([GENERATOR_VERSION, *(getattr(self, f) for f in self.__slots__)], sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return f"face-{self.width}x{self.height}-{self.fps}fps-{digest}.mp4"


def _face_range(width: int, height: int) -> tuple[float, float]:
    """Smallest and largest face side (px) such that the patch fits the frame's short side."""
    long_side, short_side = max(width, height), min(width, height)
    largest = min(FACE_MAX * long_side, 0.98 * short_side / PATCH_FACES)
    return min(FACE_MIN * long_side, largest), largest


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGB uint8 resized with swscale (bicubic), through PyAV."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    interpolation: Any = "BICUBIC"
    return frame.reformat(width=width, height=height, interpolation=interpolation).to_ndarray()


def _face_patch() -> np.ndarray:
    from skimage import data

    photo = np.asarray(data.astronaut(), dtype=np.uint8)
    x0, y0, x1, y1 = PHOTO_FACE
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = PATCH_FACES * (x1 - x0) / 2
    top, left = round(cy - half), round(cx - half)
    side = round(2 * half)
    return photo[top : top + side, left : left + side].copy()


def _background(width: int, height: int, margin: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth, muted colour texture (a wall, a room) larger than the frame by ``margin`` on each side."""
    w, h = width + 2 * margin, height + 2 * margin
    shape = (max(2, h // 32), max(2, w // 32))
    light = rng.uniform(70, 160, (*shape, 1))
    colour = rng.uniform(-14, 14, (*shape, 3)) + np.array([10.0, 4.0, -8.0])  # warm, like indoor light
    coarse = np.clip(light + colour, 0, 255).astype(np.uint8)
    return _resize(coarse, w - w % 2, h - h % 2)


def _frames(spec: _Spec) -> Iterable[np.ndarray]:
    """RGB frames of the clip, deterministic."""
    rng = np.random.default_rng(20240601)
    margin = max(8, min(spec.width, spec.height) // 40)
    background = _background(spec.width, spec.height, margin, rng)
    patch = _face_patch()
    face_lo, face_hi = _face_range(spec.width, spec.height)
    scaled: dict[int, np.ndarray] = {}
    n = 0
    for kind, seconds in spec.segments:
        for _ in range(round(seconds * spec.fps)):
            t = n / spec.fps
            n += 1
            # the camera drifts slowly over the background
            dx = round(margin * (1 + math.sin(0.4 * t)))
            dy = round(margin * (1 + math.sin(0.3 * t + 1.0)))
            frame = background[dy : dy + spec.height, dx : dx + spec.width].copy()
            if kind == "face":
                face = face_lo + (face_hi - face_lo) * (0.5 + 0.5 * math.sin(2 * math.pi * t / 5.0))
                side = max(2, round(face * PATCH_FACES / 2) * 2)
                image = scaled.get(side)
                if image is None:
                    image = scaled[side] = _resize(patch, side, side)
                # pan across the frame and bob a little; the patch always stays inside it
                left = round((spec.width - side) * (0.5 + 0.42 * math.sin(2 * math.pi * t / 7.0)))
                top = round((spec.height - side) * (0.5 + 0.35 * math.sin(2 * math.pi * t / 4.3 + 0.5)))
                frame[top : top + side, left : left + side] = image
            if spec.grain:
                noise = rng.integers(-spec.grain, spec.grain + 1, size=frame.shape[:2], dtype=np.int16)
                frame = np.clip(frame.astype(np.int16) + noise[:, :, None], 0, 255).astype(np.uint8)
            yield frame


def _encode(spec: _Spec, path: Path) -> None:
    import av

    gop = max(1, round(spec.keyframe_seconds * spec.fps))
    # One slice per frame (no sliced threads): FFmpeg's RTSP client splits a multi-slice keyframe that
    # GStreamer's rtph264pay fragments into two frames.
    options = {
        "preset": spec.preset,
        "g": str(gop),
        "keyint_min": str(gop),
        "bf": "0",
        "sc_threshold": "0",
        "x264-params": "sliced-threads=0",
    }
    if spec.tune:
        options["tune"] = spec.tune
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream: Any = out.add_stream("libx264", rate=spec.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, spec.fps)
        if spec.bit_rate:
            stream.bit_rate = spec.bit_rate
            options |= {"maxrate": str(spec.bit_rate), "bufsize": str(2 * spec.bit_rate)}
            stream.options = options
        for i, rgb in enumerate(_frames(spec)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, spec.fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
