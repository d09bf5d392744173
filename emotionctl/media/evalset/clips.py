"""Stream clips made from the labelled faces, with the ground truth of every frame (for tracking tests).

- :func:`make_crowd_clip`: a crowd (default 30 faces, 40–72 px tall at 1080p) over a slowly panning face-free
  picture, every face bobbing a little.
- :func:`make_crossing_clip`: two different faces moving horizontally past each other; the second passes in
  front of the first, hiding it briefly.
- :func:`make_occlusion_clip`: one face; an object (a slab of a face-free picture) slides in front of it,
  hides it completely for ``hidden_seconds`` (≤ 2 s), and slides away.

Each returns a :class:`SceneClip`: the H.264 mp4 (as :func:`emotionctl.media.clips.make_face_clip` makes them:
libx264, yuv420p, a keyframe a second, no B-frames, faststart) and, per frame, every face's identity, box,
expression and how much of its box is visible. Clips and their ground truth are cached in ``.cache/clips`` by
their parameters and the manifest, so each is encoded once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from emotionctl.media.clips import default_cache_dir

from . import compose
from .compose import BackgroundView, FaceSource
from .dataset import EvalSet
from .manifest import MANIFEST_PATH, Box, Expression, Pose

# Bump when the pictures or the encoding change: cached clips are then made again.
GENERATOR_VERSION = 1
CLIP_SEED = 20261202


@dataclass(frozen=True, slots=True)
class ClipFace:
    """One face in one frame: a stable ``identity`` (0, 1, ... per clip), its box, and the share of the box not
    covered by something drawn in front of it (1.0 = fully visible, 0.0 = hidden)."""

    identity: int
    box: Box
    visible: float
    expression: Expression
    pose: Pose
    photo_id: str
    face_index: int

    @property
    def hidden(self) -> bool:
        """Less than half of the face can be seen."""
        return self.visible < 0.5


@dataclass(frozen=True, slots=True)
class SceneClip:
    kind: str
    path: Path
    width: int
    height: int
    fps: int
    frames: tuple[tuple[ClipFace, ...], ...]  # per frame, in decode order

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps

    def identities(self) -> list[int]:
        return sorted({face.identity for frame in self.frames for face in frame})


# ---------------------------------------------------------------------------------------------- the clips
def make_crowd_clip(
    evalset: EvalSet,
    *,
    width: int = 1920,
    height: int = 1080,
    fps: int = 30,
    seconds: float = 6.0,
    faces: int = 30,
    directory: Path | str | None = None,
) -> SceneClip:
    """A crowd of ``faces`` faces (40–72 px tall at 1080p, scaled with the frame) that bob slightly."""
    _check_size(width, height, fps, seconds)
    rng = np.random.default_rng([CLIP_SEED, 1, faces])
    k = height / compose.REFERENCE_HEIGHT
    sources = _distinct_sources(evalset, faces, rng)
    heights = rng.uniform(40, 72, faces) * k
    cell_w = max(compose.CONTEXT_W * s.face.width / s.face.height * h for s, h in zip(sources, heights, strict=True))
    cell_h = compose.CONTEXT_H * float(heights.max())
    amplitude = 6 * k  # px of bobbing each way
    cell_w, cell_h = cell_w + 2 * amplitude + 4, cell_h + 2 * amplitude + 4
    cols, rows = int(width // cell_w), int(height // cell_h)
    if cols * rows < faces:
        raise ValueError(f"{faces} faces do not fit a {width}x{height} frame")
    cells = rng.choice(cols * rows, size=faces, replace=False)
    x_margin, y_margin = (width - cols * cell_w) / 2, (height - rows * cell_h) / 2
    tracks = []
    for identity, (cell, source, h) in enumerate(zip(cells, sources, heights, strict=True)):
        row, col = divmod(int(cell), cols)
        pw, ph = _patch_size(source, float(h))
        base_x = x_margin + col * cell_w + amplitude + 2 + rng.uniform(0, cell_w - pw - 2 * amplitude - 4)
        base_y = y_margin + row * cell_h + amplitude + 2 + rng.uniform(0, cell_h - ph - 2 * amplitude - 4)
        period, phase = rng.uniform(2.5, 5.0), rng.uniform(0, 2 * math.pi)
        tracks.append(
            _Track(
                identity, source, float(h), _bob(float(base_x), float(base_y), amplitude, float(period), float(phase))
            )
        )
    background = _background(evalset, rng)
    spec = {"kind": "crowd", "faces": faces}
    return _make("crowd", spec, evalset, tracks, [], background, width, height, fps, seconds, directory)


def make_crossing_clip(
    evalset: EvalSet,
    *,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seconds: float = 6.0,
    face_height: float | None = None,
    directory: Path | str | None = None,
) -> SceneClip:
    """Two different faces (the public-domain astronaut and Grace Hopper photos) crossing horizontally at the
    same height, in opposite directions; the second passes in front of the first mid-clip."""
    _check_size(width, height, fps, seconds)
    h = face_height if face_height is not None else 0.17 * height
    first = _source(evalset, "skimage-astronaut")
    second = _source(evalset, "matplotlib-grace-hopper")
    (w1, h1), (w2, h2) = _patch_size(first, h), _patch_size(second, h)
    top = height * 0.45 - max(h1, h2) / 2
    margin = 0.04 * width

    def left_to_right(t: float) -> tuple[float, float]:
        return margin + (width - 2 * margin - w1) * t / seconds, top

    def right_to_left(t: float) -> tuple[float, float]:
        return width - margin - w2 - (width - 2 * margin - w2) * t / seconds, top + 0.1 * h

    tracks = [_Track(0, first, h, left_to_right), _Track(1, second, h, right_to_left)]
    rng = np.random.default_rng([CLIP_SEED, 2])
    background = _background(evalset, rng)
    spec = {"kind": "crossing", "face_height": h}
    return _make("crossing", spec, evalset, tracks, [], background, width, height, fps, seconds, directory)


def make_occlusion_clip(
    evalset: EvalSet,
    *,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seconds: float = 8.0,
    hidden_seconds: float = 1.5,
    face_height: float | None = None,
    directory: Path | str | None = None,
) -> SceneClip:
    """One face drifting slowly; from ``seconds / 3`` an object slides in front of it (0.5 s), hides it fully for
    ``hidden_seconds`` (at most 2 s), then slides away (0.5 s)."""
    _check_size(width, height, fps, seconds)
    if not 0 < hidden_seconds <= 2.0:
        raise ValueError(f"hidden_seconds must be in (0, 2], not {hidden_seconds}")
    start, slide = seconds / 3, 0.5
    if start + 2 * slide + hidden_seconds > seconds:
        raise ValueError("the clip is too short for the occlusion")
    h = face_height if face_height is not None else 0.2 * height
    face = _source(evalset, "pyfeat-single-face")
    pw, ph = _patch_size(face, h)
    base_x, base_y = width * 0.45 - pw / 2, height * 0.5 - ph / 2
    amplitude = 0.02 * width

    def drift(t: float) -> tuple[float, float]:
        return base_x + amplitude * math.sin(2 * math.pi * t / seconds), base_y

    occluder_w, occluder_h = pw + 2 * amplitude + 0.2 * pw, min(float(height), ph * 1.6)
    covered_x = base_x - amplitude - 0.1 * pw  # where the occluder covers the face's whole sway
    occluder_y = base_y + ph / 2 - occluder_h / 2

    def occluder(t: float) -> tuple[float, float]:
        off_right = float(width) + 1
        if t < start:
            x = off_right
        elif t < start + slide:
            x = off_right + (covered_x - off_right) * (t - start) / slide
        elif t < start + slide + hidden_seconds:
            x = covered_x
        elif t < start + 2 * slide + hidden_seconds:
            x = covered_x + (-occluder_w - 1 - covered_x) * (t - start - slide - hidden_seconds) / slide
        else:
            x = -occluder_w - 1
        return x, occluder_y

    rng = np.random.default_rng([CLIP_SEED, 3])
    background = _background(evalset, rng)
    slab_view = BackgroundView("skimage-brick", 1.0, 0.5, 0.5, mirror=False)
    slab = compose.render_background(
        evalset.picture("skimage-brick").image, slab_view, max(2, round(occluder_w)), max(2, round(occluder_h))
    )
    tracks = [_Track(0, face, h, drift)]
    spec = {"kind": "occlusion", "hidden_seconds": hidden_seconds, "face_height": h}
    occluders = [_Occluder(slab, occluder)]
    return _make("occlusion", spec, evalset, tracks, occluders, background, width, height, fps, seconds, directory)


# ------------------------------------------------------------------------------------------------ internals
Trajectory = Callable[[float], tuple[float, float]]  # clip time -> top-left of the patch (frame px)


@dataclass(frozen=True)
class _Track:
    identity: int
    source: FaceSource
    face_height: float  # frame px
    where: Trajectory


@dataclass(frozen=True)
class _Occluder:
    pixels: np.ndarray  # RGB, fully opaque
    where: Trajectory


def _check_size(width: int, height: int, fps: int, seconds: float) -> None:
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ValueError(f"clip size must be even and at least 64x64, not {width}x{height}")
    if not 1 <= fps <= 120:
        raise ValueError(f"fps must be in [1, 120], not {fps}")
    if not 0 < seconds <= 120:
        raise ValueError(f"seconds must be in (0, 120], not {seconds}")


def _patch_size(source: FaceSource, face_height: float) -> tuple[float, float]:
    scale = face_height / source.face.height
    return compose.CONTEXT_W * source.face.width * scale, compose.CONTEXT_H * face_height


def _source(evalset: EvalSet, photo_id: str) -> FaceSource:
    photo = evalset.picture(photo_id)
    return FaceSource(photo.id, 0, photo.faces[0])


def _distinct_sources(evalset: EvalSet, count: int, rng: np.random.Generator) -> list[FaceSource]:
    """``count`` faces, all different where the set has enough (then repeats, in a shuffled order)."""
    pool = [s for s in evalset.scene_sources() if s.face.height >= 48]
    order = [int(i) for i in rng.permutation(len(pool))]
    return [pool[order[i % len(order)]] for i in range(count)]


def _bob(x: float, y: float, amplitude: float, period: float, phase: float) -> Trajectory:
    def where(t: float) -> tuple[float, float]:
        angle = 2 * math.pi * t / period + phase
        return x + amplitude * math.sin(angle), y + amplitude * 0.6 * math.cos(angle)

    return where


def _background(evalset: EvalSet, rng: np.random.Generator) -> tuple[str, float, float]:
    """A face-free picture (not a grey texture) and where the slow pan starts."""
    colourful = [p.id for p in evalset.face_free_pictures if p.image.std(axis=2).mean() > 8]
    picture_id = colourful[int(rng.integers(0, len(colourful)))]
    return picture_id, float(rng.uniform(0.2, 0.4)), float(rng.uniform(0.3, 0.7))


def _frames(
    evalset: EvalSet,
    tracks: Sequence[_Track],
    occluders: Sequence[_Occluder],
    background: tuple[str, float, float],
    width: int,
    height: int,
    fps: int,
    seconds: float,
) -> Iterator[tuple[np.ndarray, tuple[ClipFace, ...]]]:
    picture_id, start_x, centre_y = background
    picture = evalset.picture(picture_id).image
    photos = {t.source.photo_id: evalset.picture(t.source.photo_id).image for t in tracks}
    count = max(1, round(seconds * fps))
    for n in range(count):
        t = n / fps
        view = BackgroundView(picture_id, 1.3, start_x + 0.3 * t / seconds, centre_y, mirror=False)  # slow pan
        frame = compose.render_background(picture, view, width, height)
        layers: list[tuple[int, int, np.ndarray]] = []  # every drawn layer's top-left and alpha, in order
        boxes: list[Box] = []
        for track in tracks:
            left, top = track.where(t)
            pasted = compose.paste_face(
                frame, photos[track.source.photo_id], track.source.face, left, top, track.face_height
            )
            layers.append((pasted.left, pasted.top, pasted.alpha))
            boxes.append(pasted.box)
        for occluder in occluders:
            left, top = occluder.where(t)
            drawn = _draw_opaque(frame, occluder.pixels, round(left), round(top))
            if drawn is not None:
                layers.append(drawn)
        faces = tuple(
            ClipFace(
                identity=track.identity,
                box=box,
                visible=_visible(box, layers[i + 1 :]),
                expression=track.source.face.expression,
                pose=track.source.face.pose,
                photo_id=track.source.photo_id,
                face_index=track.source.face_index,
            )
            for i, (track, box) in enumerate(zip(tracks, boxes, strict=True))
        )
        yield frame, faces


def _draw_opaque(frame: np.ndarray, pixels: np.ndarray, left: int, top: int) -> tuple[int, int, np.ndarray] | None:
    fh, fw = frame.shape[:2]
    ph, pw = pixels.shape[:2]
    x0, y0, x1, y1 = max(0, left), max(0, top), min(fw, left + pw), min(fh, top + ph)
    if x0 >= x1 or y0 >= y1:
        return None
    frame[y0:y1, x0:x1] = pixels[y0 - top : y1 - top, x0 - left : x1 - left]
    return x0, y0, np.ones((y1 - y0, x1 - x0), dtype=np.float32)


def _visible(box: Box, layers: Sequence[tuple[int, int, np.ndarray]]) -> float:
    """The share of ``box`` that the ``layers`` drawn after it leave visible (alpha-weighted)."""
    x0, y0 = math.floor(box[0]), math.floor(box[1])
    x1, y1 = math.ceil(box[2]), math.ceil(box[3])
    if x1 <= x0 or y1 <= y0:
        return 1.0
    seen = np.ones((y1 - y0, x1 - x0), dtype=np.float32)
    for left, top, alpha in layers:
        h, w = alpha.shape
        ix0, iy0, ix1, iy1 = max(x0, left), max(y0, top), min(x1, left + w), min(y1, top + h)
        if ix0 < ix1 and iy0 < iy1:
            seen[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] *= 1 - alpha[iy0 - top : iy1 - top, ix0 - left : ix1 - left]
    return round(float(seen.mean()), 4)


def _make(
    kind: str,
    spec: dict[str, Any],
    evalset: EvalSet,
    tracks: Sequence[_Track],
    occluders: Sequence[_Occluder],
    background: tuple[str, float, float],
    width: int,
    height: int,
    fps: int,
    seconds: float,
    directory: Path | str | None,
) -> SceneClip:
    manifest_digest = hashlib.sha256(MANIFEST_PATH.read_bytes()).hexdigest()
    key = json.dumps([GENERATOR_VERSION, manifest_digest, spec, width, height, fps, seconds], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    folder = Path(directory) if directory is not None else default_cache_dir()
    path = folder / f"evalset-{kind}-{width}x{height}-{fps}fps-{digest}.mp4"
    truth_path = path.with_suffix(".json")
    if path.is_file() and truth_path.is_file():
        frames = _load_truth(truth_path)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        frames = _encode(
            path, _frames(evalset, tracks, occluders, background, width, height, fps, seconds), width, height, fps
        )
        _atomic_write(truth_path, json.dumps([[asdict(face) for face in frame] for frame in frames]).encode())
    return SceneClip(kind=kind, path=path, width=width, height=height, fps=fps, frames=frames)


def _encode(
    path: Path, frames: Iterator[tuple[np.ndarray, tuple[ClipFace, ...]]], width: int, height: int, fps: int
) -> tuple[tuple[ClipFace, ...], ...]:
    import av

    truth: list[tuple[ClipFace, ...]] = []
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".mp4", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        options = {"preset": "veryfast", "g": str(fps), "keyint_min": str(fps), "bf": "0", "sc_threshold": "0",
                   "x264-params": "sliced-threads=0"}  # fmt: skip
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream: Any = out.add_stream("libx264", rate=fps, options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.time_base = Fraction(1, fps)
            for i, (rgb, faces) in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                for packet in stream.encode(frame):
                    out.mux(packet)
                truth.append(faces)
            for packet in stream.encode():
                out.mux(packet)
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return tuple(truth)


def _load_truth(path: Path) -> tuple[tuple[ClipFace, ...], ...]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return tuple(tuple(ClipFace(**{**face, "box": tuple(face["box"])}) for face in frame) for frame in raw)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
