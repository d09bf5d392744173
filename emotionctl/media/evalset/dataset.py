"""The labelled evaluation set: real photos with hand-labelled faces, synthetic scenes made from them, face-free
frames, all with ground truth. See ``README.md`` beside this file for what is in it and how it was labelled.

    from emotionctl.media.evalset import build_evalset, rgb_to_luma

    ev = build_evalset()                       # fetch + extract once (pinned packages), then fast
    for photo in ev.photos:                    # real photos
        photo.image, photo.faces               # RGB uint8 [H, W, 3]; LabelledFace(box, pose, expression)
    for sample in ev.expression_faces():       # faces whose expression is known (not "unclear")
        sample.photo.image, sample.face.box, sample.face.expression
    for scene in ev.scenes(1080):              # or 720: synthetic frames with ground truth
        rgb, faces = scene.render()            # faces: SceneFace(box, pose, expression, bucket, ...)
    for frame in ev.face_free(720):            # frames with no face at all (false-positive counting)
        rgb = frame.render()
    luma = rgb_to_luma(rgb)                    # BT.601 Y, as the H.264 decoder hands the analyzer
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import compose
from .compose import FaceSource, Layout, SceneFace
from .fetch import build_pictures, default_cache_dir, read_png
from .manifest import EXPRESSIONS, POSES, LabelledFace, Manifest, PictureEntry, Provenance, load_manifest

log = logging.getLogger(__name__)

#: The seed of every synthetic layout (change it and every scene changes).
SCENE_SEED = 20261201


class Picture:
    """A manifest picture (a photo with faces, or a face-free one) whose pixels load on first use."""

    def __init__(self, entry: PictureEntry, path: Path) -> None:
        self.entry = entry
        self.path = path

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def faces(self) -> tuple[LabelledFace, ...]:
        return self.entry.faces

    @property
    def provenance(self) -> Provenance:
        return self.entry.provenance

    @property
    def width(self) -> int:
        return self.entry.width

    @property
    def height(self) -> int:
        return self.entry.height

    @functools.cached_property
    def image(self) -> np.ndarray:
        """RGB uint8 ``[H, W, 3]`` (read-only)."""
        rgb = read_png(self.path)
        if rgb.shape[:2] != (self.height, self.width):
            raise ValueError(f"{self.path}: {rgb.shape[1]}x{rgb.shape[0]}, not {self.width}x{self.height}: rebuild")
        rgb.flags.writeable = False
        return rgb

    def __repr__(self) -> str:
        return f"Picture({self.id!r}, {self.width}x{self.height}, {len(self.faces)} faces)"


@dataclass(frozen=True, slots=True)
class ExpressionSample:
    """A face with a known expression: ``photo.image`` cropped at ``face.box`` is what a classifier sees."""

    photo: Picture
    face_index: int
    face: LabelledFace


@dataclass(frozen=True)
class Scene:
    """A synthetic frame (``width`` x ``height``) and the ground truth of every face in it."""

    id: str
    kind: str  # photo | single | group5 | crowd30 | crowd50 | face-free
    bucket: str | None  # the size bucket it was drawn for (faces' own buckets are on each SceneFace)
    width: int
    height: int
    layout: Layout = field(repr=False)
    evalset: EvalSet = field(repr=False)

    def render(self) -> tuple[np.ndarray, list[SceneFace]]:
        """RGB uint8 ``[height, width, 3]`` and the faces' ground truth (deterministic)."""
        return self.evalset.render(self.layout, self.height)


class EvalSet:
    """The evaluation set, built by :func:`build_evalset`."""

    def __init__(self, manifest: Manifest, paths: dict[str, Path], cache_dir: Path) -> None:
        self.manifest = manifest
        self.cache_dir = cache_dir
        self.photos: tuple[Picture, ...] = tuple(Picture(e, paths[e.id]) for e in manifest.photos)
        self.face_free_pictures: tuple[Picture, ...] = tuple(Picture(e, paths[e.id]) for e in manifest.face_free)
        self._by_id = {p.id: p for p in self.photos + self.face_free_pictures}

    def picture(self, picture_id: str) -> Picture:
        try:
            return self._by_id[picture_id]
        except KeyError:
            raise KeyError(f"no picture {picture_id!r} in the evaluation set") from None

    # ----------------------------------------------------------------------------------------- faces
    def faces(self) -> list[tuple[Picture, int, LabelledFace]]:
        """Every labelled face of every photo: (photo, index in the photo, face)."""
        return [(p, i, f) for p in self.photos for i, f in enumerate(p.faces)]

    def expression_faces(self, *, licence_clear_only: bool = False) -> list[ExpressionSample]:
        """The faces whose expression was labelled (not ``unclear``), for classifier accuracy."""
        return [
            ExpressionSample(p, i, f)
            for p, i, f in self.faces()
            if f.expression != "unclear" and (p.provenance.licence_clear or not licence_clear_only)
        ]

    def scene_sources(self) -> list[FaceSource]:
        """The faces the synthetic scenes are made of: frontal and turned ones (profiles are left out: the
        product's detection range is frontal to ~45°)."""
        return [FaceSource(p.id, i, f) for p, i, f in self.faces() if f.pose in ("frontal", "turned")]

    # ---------------------------------------------------------------------------------------- scenes
    @functools.cached_property
    def _scene_layouts(self) -> list[Layout]:
        backgrounds = [p.id for p in self.face_free_pictures]
        photos = [(p.id, p.width, p.height, p.faces) for p in self.photos]
        return compose.photo_layouts(photos, backgrounds, SCENE_SEED) + compose.scene_layouts(
            self.scene_sources(), backgrounds, SCENE_SEED
        )

    @functools.cached_property
    def _face_free_layouts(self) -> list[Layout]:
        return compose.face_free_layouts([p.id for p in self.face_free_pictures], SCENE_SEED)

    def scenes(self, height: int = 1080) -> list[Scene]:
        """The scenes at 720p or 1080p (the same layouts at both), rendered on demand: every labelled photo whole,
        scaled so its faces fall in each size bucket (kind ``photo``), then faces composed one by one (kinds
        ``single``, ``group5``, ``crowd30``, ``crowd50``)."""
        width = _width_for(height)
        return [Scene(lay.id, lay.kind, lay.bucket, width, height, lay, self) for lay in self._scene_layouts]

    def face_free(self, height: int = 1080) -> list[Scene]:
        """Frames with no face (face-free pictures whole, zoomed, shifted, mirrored), rendered on demand."""
        width = _width_for(height)
        return [Scene(lay.id, lay.kind, None, width, height, lay, self) for lay in self._face_free_layouts]

    def render(self, layout: Layout, height: int) -> tuple[np.ndarray, list[SceneFace]]:
        photos = {pl.source.photo_id: self.picture(pl.source.photo_id).image for pl in layout.placements}
        if layout.photo is not None:
            photos[layout.photo.photo_id] = self.picture(layout.photo.photo_id).image
        background = {layout.background.picture_id: self.picture(layout.background.picture_id).image}
        return compose.render_layout(layout, height, photos, background)

    # --------------------------------------------------------------------------------------- summary
    def summary(self) -> Summary:
        """Counts: photos, faces, expressions per class, poses, scene faces per size bucket (1080p)."""
        faces = [f for _, _, f in self.faces()]
        expressions: Counter[str] = Counter(f.expression for f in faces)
        scene_buckets: Counter[str] = Counter()
        for layout in self._scene_layouts:
            for placement in layout.placements:
                scene_buckets[compose.bucket_of(placement.face_height, compose.REFERENCE_HEIGHT)] += 1
            if layout.photo is not None:
                for face in layout.photo.faces:
                    scene_buckets[compose.bucket_of(face.height * layout.photo.scale, compose.REFERENCE_HEIGHT)] += 1
        return Summary(
            photos=len(self.photos),
            photo_faces=len(faces),
            photos_licence_unclear=sum(not p.provenance.licence_clear for p in self.photos),
            expressions={name: expressions.get(name, 0) for name in (*EXPRESSIONS, "unclear")},
            poses={name: sum(f.pose == name for f in faces) for name in POSES},
            photo_face_buckets_1080=dict(Counter(_photo_bucket(p, f) for p, _, f in self.faces())),
            scenes=len(self._scene_layouts),
            scene_faces=sum(scene_buckets.values()),
            scene_face_buckets_1080={name: scene_buckets.get(name, 0) for name in ("<16", *compose.BUCKET_NAMES)},
            scene_kinds=dict(Counter(lay.kind for lay in self._scene_layouts)),
            face_free_pictures=len(self.face_free_pictures),
            face_free_frames=len(self._face_free_layouts),
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """What the evaluation set holds (``emotionctl media evalset`` prints it)."""

    photos: int
    photo_faces: int
    photos_licence_unclear: int
    expressions: dict[str, int]  # every class and "unclear"
    poses: dict[str, int]
    photo_face_buckets_1080: dict[str, int]  # each photo fitted into a 1920x1080 frame
    scenes: int  # per frame size
    scene_faces: int
    scene_face_buckets_1080: dict[str, int]  # "<16": smaller faces of a photo whose median face is 16-24 px
    scene_kinds: dict[str, int]
    face_free_pictures: int
    face_free_frames: int


def _photo_bucket(photo: Picture, face: LabelledFace) -> str:
    """The bucket a photo's face falls in when the photo is shown fitted into a 1920x1080 frame."""
    scale = min(compose.REFERENCE_WIDTH / photo.width, compose.REFERENCE_HEIGHT / photo.height)
    return compose.bucket_of(face.height * scale, compose.REFERENCE_HEIGHT)


def _width_for(height: int) -> int:
    if height not in compose.FRAME_HEIGHTS:
        raise ValueError(f"scene height must be one of {compose.FRAME_HEIGHTS}, not {height}")
    return round(compose.REFERENCE_WIDTH * height / compose.REFERENCE_HEIGHT)


def build_evalset(cache_dir: Path | str | None = None) -> EvalSet:
    """The evaluation set, fetching and extracting its pinned packages on first use (idempotent; a cached set
    loads in well under a second — pixels are read lazily)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    manifest = load_manifest()
    paths = build_pictures(manifest, folder)
    return EvalSet(manifest, paths, folder)


# ---------------------------------------------------------------------------------------------------- luma
_LUMA = np.array([65.481, 128.553, 24.966], dtype=np.float32) / np.float32(255.0)
_FULL_RANGE_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def rgb_to_luma(rgb: np.ndarray, *, full_range: bool = False) -> np.ndarray:
    """BT.601 luma of an RGB uint8 image, as uint8 ``[H, W]``.

    By default limited ("TV") range, Y = 16 + 219·(0.299 R + 0.587 G + 0.114 B)/255: what FFmpeg's encoder
    stores for an RGB source (yuv420p, BT.601) and so what the decoder's Y plane gives the analyzer.
    ``full_range=True`` gives 0..255 (0.299 R + 0.587 G + 0.114 B).
    """
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"rgb_to_luma wants uint8 [H, W, 3], not {image.dtype} {image.shape}")
    weights, offset = (_FULL_RANGE_LUMA, 0.0) if full_range else (_LUMA, 16.0)
    y = image.astype(np.float32) @ weights + np.float32(offset)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def crop_box(image: np.ndarray, box: Sequence[float], scale: float = 1.0) -> np.ndarray:
    """The pixels of ``box`` (enlarged ``scale`` times about its centre), clipped to the image."""
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    h, w = image.shape[:2]
    left, top = max(0, round(cx - hw)), max(0, round(cy - hh))
    right, bottom = min(w, round(cx + hw)), min(h, round(cy + hh))
    return image[top:bottom, left:right]
