"""Synthetic scenes composed from the labelled faces, with exact ground truth.

A face is cut out of its photo with some context around its box (hair, ears, a bit of neck), scaled so its
box has the wanted height, and laid onto a face-free picture with a soft edge (a superellipse alpha that is
opaque over the whole face box and fades out towards the patch border). The ground-truth box is the labelled
box carried through exactly the same scale and offset, so it lands where the face was pasted.

Layouts are drawn in 1080p units (a 1920x1080 frame) from a seeded generator and rendered at 1080p or 720p by
scaling everything by ``height / 1080``: the same scene at both sizes, with 720p face heights 2/3 of the
1080p ones (the size buckets are always named by the 1080p height).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .manifest import Box, Expression, LabelledFace, Pose

REFERENCE_WIDTH, REFERENCE_HEIGHT = 1920, 1080
FRAME_HEIGHTS = (720, 1080)

#: Face-height buckets in pixels at 1080p: ``(name, low, high)``, low inclusive, high exclusive.
BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("16-24", 16, 24),
    ("24-32", 24, 32),
    ("32-48", 32, 48),
    ("48-96", 48, 96),
    ("96+", 96, math.inf),
)
BUCKET_NAMES: tuple[str, ...] = tuple(name for name, _, _ in BUCKETS)
# Heights drawn for the open-ended top bucket (1080p px).
_TOP_BUCKET_RANGE = (96.0, 200.0)

# The pasted patch around a face box, in box widths / heights (centred on the box).
CONTEXT_W, CONTEXT_H = 1.6, 1.5
# Alpha: opaque while the superellipse radius is below FADE_START (the box's corners sit at ~0.78), zero at 1.
_FADE_START, _SUPERELLIPSE = 0.8, 4.0
# A source face is not scaled up by more than this (a blown-up face is not a face of that size).
MAX_UPSCALE = 1.5


def bucket_of(face_height: float, frame_height: int) -> str:
    """The bucket name of a face ``face_height`` px tall in a frame ``frame_height`` px tall (1080p-equivalent)."""
    at_1080 = face_height * REFERENCE_HEIGHT / frame_height
    for name, low, high in BUCKETS:
        if low <= at_1080 < high:
            return name
    return "<16"


@dataclass(frozen=True, slots=True)
class FaceSource:
    """A labelled face available for composing: photo id, face index in the photo, the face."""

    photo_id: str
    face_index: int
    face: LabelledFace


@dataclass(frozen=True, slots=True)
class Placement:
    """One face in a layout: its source, the top-left corner of its patch and its box height (1080p units)."""

    source: FaceSource
    left: float
    top: float
    face_height: float

    def patch_size(self) -> tuple[float, float]:
        """Patch width, height in 1080p units."""
        scale = self.face_height / self.source.face.height
        return CONTEXT_W * self.source.face.width * scale, CONTEXT_H * self.source.face.height * scale


@dataclass(frozen=True, slots=True)
class BackgroundView:
    """A face-free picture seen through the frame: ``zoom`` ≥ 1 over "cover" scaling, the view's centre as a
    fraction of the free range (0..1 each way), mirrored or not."""

    picture_id: str
    zoom: float
    centre_x: float
    centre_y: float
    mirror: bool


@dataclass(frozen=True, slots=True)
class WholePhoto:
    """A whole labelled photo shown in the frame: scaled by ``scale`` (at 1080p), its top-left at (``left``,
    ``top``) in 1080p units. Only faces entirely inside the frame are in its ground truth (the layout keeps
    them all inside)."""

    photo_id: str
    faces: tuple[LabelledFace, ...]
    photo_width: int
    photo_height: int
    scale: float
    left: float
    top: float


@dataclass(frozen=True, slots=True)
class Layout:
    id: str
    kind: str  # photo | single | group5 | crowd30 | crowd50 | face-free
    bucket: str | None
    background: BackgroundView
    placements: tuple[Placement, ...]
    photo: WholePhoto | None = None


@dataclass(frozen=True, slots=True)
class SceneFace:
    """A face's ground truth in a rendered frame."""

    box: Box
    pose: Pose
    expression: Expression
    bucket: str  # by its 1080p-equivalent height
    photo_id: str
    face_index: int


# ------------------------------------------------------------------------------------------------- layouts
def scene_layouts(sources: Sequence[FaceSource], background_ids: Sequence[str], seed: int) -> list[Layout]:
    """The evaluation scenes: single faces, groups of 5, crowds of 30 and of 50, per size bucket."""
    plan: list[tuple[str, int, tuple[str, float, float], int]] = []  # kind, faces, bucket, how many scenes
    for bucket in BUCKETS:
        plan.append(("single", 1, bucket, 12))
        plan.append(("group5", 5, bucket, 6))
    for bucket in BUCKETS[:4]:
        plan.append(("crowd30", 30, bucket, 2))
    for bucket in BUCKETS[:3]:
        plan.append(("crowd50", 50, bucket, 2))
    layouts: list[Layout] = []
    for index, (kind, count, bucket, scenes) in enumerate(plan):
        for n in range(scenes):
            rng = np.random.default_rng([seed, index, n])
            layout_id = f"{kind}-{bucket[0]}-{n:02d}"
            background = _background_view(rng, background_ids)
            placements = _place(rng, sources, count, bucket, kind)
            layouts.append(Layout(layout_id, kind, bucket[0], background, placements))
    return layouts


def photo_layouts(
    photos: Sequence[tuple[str, int, int, tuple[LabelledFace, ...]]], background_ids: Sequence[str], seed: int
) -> list[Layout]:
    """Every labelled photo (id, width, height, faces) whole, scaled so that its median face is as tall as the
    middle of each size bucket (20, 28, 40, 72, 128 px at 1080p), at a seeded place on a face-free picture.
    A photo whose faces would not all fit the frame at that scale is left out of that bucket."""
    targets = {"16-24": 20.0, "24-32": 28.0, "32-48": 40.0, "48-96": 72.0, "96+": 128.0}
    layouts: list[Layout] = []
    for index, (photo_id, width, height, faces) in enumerate(photos):
        median = float(np.median([f.height for f in faces]))
        x0 = min(f.box[0] for f in faces)
        y0 = min(f.box[1] for f in faces)
        x1 = max(f.box[2] for f in faces)
        y1 = max(f.box[3] for f in faces)
        for bucket, target in targets.items():
            rng = np.random.default_rng([seed, 104729, index, int(target)])
            scale = target / median
            if scale > MAX_UPSCALE:
                continue  # not blown up beyond what the photo holds
            # the faces' union box must fit the frame; the rest of the photo may be cut at the frame's border
            span_w, span_h = (x1 - x0) * scale, (y1 - y0) * scale
            if span_w > REFERENCE_WIDTH - 8 or span_h > REFERENCE_HEIGHT - 8:
                continue
            photo_w, photo_h = width * scale, height * scale
            # where the photo's top-left may go so that the faces stay 4 px inside the frame
            lo_x, hi_x = 4 - x0 * scale, REFERENCE_WIDTH - 4 - x1 * scale
            lo_y, hi_y = 4 - y0 * scale, REFERENCE_HEIGHT - 4 - y1 * scale
            # prefer the whole photo inside the frame when it fits
            if photo_w <= REFERENCE_WIDTH:
                lo_x, hi_x = max(lo_x, 0.0), min(hi_x, REFERENCE_WIDTH - photo_w)
            if photo_h <= REFERENCE_HEIGHT:
                lo_y, hi_y = max(lo_y, 0.0), min(hi_y, REFERENCE_HEIGHT - photo_h)
            left, top = float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))
            whole = WholePhoto(photo_id, faces, width, height, scale, left, top)
            background = _background_view(rng, background_ids)
            layouts.append(Layout(f"photo-{bucket}-{photo_id}", "photo", bucket, background, (), whole))
    return layouts


def paste_photo(
    frame: np.ndarray, photo: np.ndarray, left: float, top: float, scale: float
) -> tuple[float, float, int, int]:
    """Paste ``photo`` scaled by ``scale`` into ``frame`` at (``left``, ``top``), cut at the frame's border.
    Returns the exact x and y scale applied and the integer top-left."""
    from PIL import Image

    ph, pw = photo.shape[:2]
    out_w, out_h = max(1, round(pw * scale)), max(1, round(ph * scale))
    px, py = round(left), round(top)
    fh, fw = frame.shape[:2]
    x0, y0, x1, y1 = max(0, px), max(0, py), min(fw, px + out_w), min(fh, py + out_h)
    if x0 < x1 and y0 < y1:
        image = Image.fromarray(photo).resize((out_w, out_h), Image.Resampling.LANCZOS)
        frame[y0:y1, x0:x1] = np.asarray(image)[y0 - py : y1 - py, x0 - px : x1 - px]
    return out_w / pw, out_h / ph, px, py


def face_free_layouts(background_ids: Sequence[str], seed: int, per_picture: int = 8) -> list[Layout]:
    """Face-free frames: every face-free picture whole (cover) and zoomed, shifted, mirrored views of it."""
    layouts: list[Layout] = []
    for index, picture_id in enumerate(background_ids):
        rng = np.random.default_rng([seed, 7919, index])
        for n in range(per_picture):
            if n == 0:
                view = BackgroundView(picture_id, 1.0, 0.5, 0.5, mirror=False)
            else:
                view = BackgroundView(
                    picture_id,
                    zoom=float(rng.uniform(1.2, 3.0)),
                    centre_x=float(rng.uniform(0, 1)),
                    centre_y=float(rng.uniform(0, 1)),
                    mirror=bool(rng.integers(0, 2)),
                )
            layouts.append(Layout(f"face-free-{picture_id}-{n}", "face-free", None, view, ()))
    return layouts


def _background_view(rng: np.random.Generator, background_ids: Sequence[str]) -> BackgroundView:
    return BackgroundView(
        picture_id=background_ids[int(rng.integers(0, len(background_ids)))],
        zoom=float(rng.uniform(1.0, 1.8)),
        centre_x=float(rng.uniform(0, 1)),
        centre_y=float(rng.uniform(0, 1)),
        mirror=bool(rng.integers(0, 2)),
    )


def _place(
    rng: np.random.Generator,
    sources: Sequence[FaceSource],
    count: int,
    bucket: tuple[str, float, float],
    kind: str,
) -> tuple[Placement, ...]:
    low, high = bucket[1], bucket[2]
    if math.isinf(high):
        low, high = _TOP_BUCKET_RANGE
    heights = rng.uniform(low, high, count)
    chosen: list[FaceSource] = []
    for h in heights:
        usable = [s for s in sources if s.face.height * MAX_UPSCALE >= h]
        if not usable:
            raise ValueError(f"no labelled face is big enough for a {h:.0f} px face")
        chosen.append(usable[int(rng.integers(0, len(usable)))])
    sizes = [Placement(s, 0, 0, float(h)).patch_size() for s, h in zip(chosen, heights, strict=True)]
    if count == 1:
        w, h = sizes[0]
        left = rng.uniform(0, REFERENCE_WIDTH - w)
        top = rng.uniform(0, REFERENCE_HEIGHT - h)
        return (Placement(chosen[0], float(left), float(top), float(heights[0])),)
    # a grid of cells as big as the largest patch: patches never overlap, each jitters inside its cell
    gap = 4.0
    cell_w = max(w for w, _ in sizes) + gap
    cell_h = max(h for _, h in sizes) + gap
    cols, rows = int(REFERENCE_WIDTH // cell_w), int(REFERENCE_HEIGHT // cell_h)
    if cols * rows < count:
        raise ValueError(f"{count} faces of {bucket[0]} px do not fit a {REFERENCE_WIDTH}x{REFERENCE_HEIGHT} frame")
    if kind == "group5" and cols >= count:  # a group photo: one row, side by side
        row = int(rng.integers(0, rows))
        first = int(rng.integers(0, cols - count + 1))
        cells = [(row, first + i) for i in range(count)]
    else:
        picks = rng.choice(cols * rows, size=count, replace=False)
        cells = [(int(p) // cols, int(p) % cols) for p in picks]
    # centre the grid in the frame
    x_margin = (REFERENCE_WIDTH - cols * cell_w) / 2
    y_margin = (REFERENCE_HEIGHT - rows * cell_h) / 2
    out = []
    for (row, col), source, height, (w, h) in zip(cells, chosen, heights, sizes, strict=True):
        left = x_margin + col * cell_w + rng.uniform(0, max(0.0, cell_w - gap - w))
        top = y_margin + row * cell_h + rng.uniform(0, max(0.0, cell_h - gap - h))
        out.append(Placement(source, float(left), float(top), float(height)))
    return tuple(out)


# ------------------------------------------------------------------------------------------------ rendering
def render_background(picture: np.ndarray, view: BackgroundView, width: int, height: int) -> np.ndarray:
    """``picture`` scaled to cover a ``width`` x ``height`` frame (times ``view.zoom``), cropped at the view."""
    from PIL import Image

    ph, pw = picture.shape[:2]
    scale = max(width / pw, height / ph) * view.zoom
    # the source rectangle the frame shows
    src_w, src_h = min(float(pw), width / scale), min(float(ph), height / scale)  # min: float rounding
    x0 = max(0.0, (pw - src_w) * view.centre_x)
    y0 = max(0.0, (ph - src_h) * view.centre_y)
    image = Image.fromarray(picture)
    out = image.resize((width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + src_w, y0 + src_h))
    if view.mirror:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out, dtype=np.uint8).copy()


@dataclass(frozen=True, slots=True)
class Pasted:
    """Where a patch went: the face box in the frame, the patch's top-left pixel and its alpha ``[h, w]``."""

    box: Box
    left: int
    top: int
    alpha: np.ndarray


def paste_face(
    frame: np.ndarray,
    photo: np.ndarray,
    face: LabelledFace,
    left: float,
    top: float,
    face_height: float,
) -> Pasted:
    """Paste ``face`` of ``photo`` into ``frame`` (in place): its patch's top-left at (``left``, ``top``) and its
    box ``face_height`` px tall, in frame pixels. Returns the face box in the frame and the patch's alpha. The
    patch must fit the frame."""
    from PIL import Image

    x0, y0, x1, y1 = face.box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = CONTEXT_W * (x1 - x0) / 2, CONTEXT_H * (y1 - y0) / 2
    scale = face_height / (y1 - y0)
    pw, ph = max(2, round(2 * half_w * scale)), max(2, round(2 * half_h * scale))
    px, py = round(left), round(top)
    fh, fw = frame.shape[:2]
    if 0 < px + pw - fw <= 2:  # rounding at 720p may push a patch at the border a pixel out
        px = fw - pw
    if 0 < py + ph - fh <= 2:
        py = fh - ph
    if px < 0 or py < 0 or px + pw > fw or py + ph > fh:
        raise ValueError(f"a {pw}x{ph} patch at ({px}, {py}) does not fit the {fw}x{fh} frame")
    # the source rectangle, padded by edge replication where it leaves the photo
    sx0, sy0, sx1, sy1 = cx - half_w, cy - half_h, cx + half_w, cy + half_h
    ix0, iy0 = math.floor(sx0) - 1, math.floor(sy0) - 1
    ix1, iy1 = math.ceil(sx1) + 1, math.ceil(sy1) + 1
    hh, ww = photo.shape[:2]
    region = photo[max(0, iy0) : min(hh, iy1), max(0, ix0) : min(ww, ix1)]
    pads = ((max(0, -iy0), max(0, iy1 - hh)), (max(0, -ix0), max(0, ix1 - ww)), (0, 0))
    if any(p for pair in pads for p in pair):
        region = np.pad(region, pads, mode="edge")
    image = Image.fromarray(np.ascontiguousarray(region))
    patch = image.resize((pw, ph), Image.Resampling.LANCZOS, box=(sx0 - ix0, sy0 - iy0, sx1 - ix0, sy1 - iy0))
    alpha = _soft_mask(pw, ph)[:, :, None]
    target = frame[py : py + ph, px : px + pw].astype(np.float32)
    blended = alpha * np.asarray(patch, dtype=np.float32) + (1 - alpha) * target
    frame[py : py + ph, px : px + pw] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    kx, ky = pw / (sx1 - sx0), ph / (sy1 - sy0)  # the exact scale the resize applied on each axis
    box = (px + (x0 - sx0) * kx, py + (y0 - sy0) * ky, px + (x1 - sx0) * kx, py + (y1 - sy0) * ky)
    return Pasted(box=box, left=px, top=py, alpha=alpha[:, :, 0])


_MASKS: dict[tuple[int, int], np.ndarray] = {}


def _soft_mask(width: int, height: int) -> np.ndarray:
    mask = _MASKS.get((width, height))
    if mask is None:
        u = (np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1
        v = (np.arange(height, dtype=np.float32) + 0.5) / height * 2 - 1
        p = _SUPERELLIPSE
        r = (np.abs(u)[None, :] ** p + np.abs(v)[:, None] ** p) ** (1 / p)
        mask = np.clip((1 - r) / (1 - _FADE_START), 0, 1).astype(np.float32)
        if len(_MASKS) < 4096:
            _MASKS[(width, height)] = mask
    return mask


def render_layout(
    layout: Layout,
    height: int,
    photos: dict[str, np.ndarray],
    backgrounds: dict[str, np.ndarray],
) -> tuple[np.ndarray, list[SceneFace]]:
    """The RGB frame of ``layout`` at ``height`` (720 or 1080) and the ground truth of its faces."""
    if height not in FRAME_HEIGHTS:
        raise ValueError(f"scene height must be one of {FRAME_HEIGHTS}, not {height}")
    k = height / REFERENCE_HEIGHT
    width = round(REFERENCE_WIDTH * k)
    frame = render_background(backgrounds[layout.background.picture_id], layout.background, width, height)
    faces: list[SceneFace] = []
    whole = layout.photo
    if whole is not None:
        sx, sy, px, py = paste_photo(frame, photos[whole.photo_id], whole.left * k, whole.top * k, whole.scale * k)
        for index, face in enumerate(whole.faces):
            box = (px + face.box[0] * sx, py + face.box[1] * sy, px + face.box[2] * sx, py + face.box[3] * sy)
            if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
                raise ValueError(f"{layout.id}: face {index} left the frame")  # the layout prevents it
            faces.append(
                SceneFace(
                    box=box,
                    pose=face.pose,
                    expression=face.expression,
                    bucket=bucket_of(box[3] - box[1], height),
                    photo_id=whole.photo_id,
                    face_index=index,
                )
            )
    for placement in layout.placements:
        source = placement.source
        box = paste_face(
            frame,
            photos[source.photo_id],
            source.face,
            placement.left * k,
            placement.top * k,
            placement.face_height * k,
        ).box
        faces.append(
            SceneFace(
                box=box,
                pose=source.face.pose,
                expression=source.face.expression,
                bucket=bucket_of(box[3] - box[1], height),
                photo_id=source.photo_id,
                face_index=source.face_index,
            )
        )
    return frame, faces
