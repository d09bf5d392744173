"""Face crops rotated upright on the eye line, straight from a yuv420p frame's planes (numpy only).

Each face gives a square crop of side ``scale * max(w, h)`` around its box centre, rotated so that its
two eyes are level, resampled to ``size x size``. Gray crops come from the luma plane alone; RGB crops
also sample the two chroma planes (4:2:0, chroma sited as H.264 / MPEG-2 default: horizontally with the
even luma column, vertically between two luma rows) and convert BT.601 (limited range unless
``full_range``). Outside the frame the nearest edge pixel is repeated.

Downscaling is anti-aliased: when a crop covers ``k >= 2`` source pixels per output pixel, the region it
reads is first averaged over ``k x k`` blocks (exact area averaging for the integer part of the factor,
as :func:`analyzer.vision.resize_luma` does), then sampled bilinearly on the rotated grid.

Cost (one core, 64x64 crops): ~0.1 ms per face for faces up to ~100 px, more for very large faces (the
block averaging reads the whole region); RGB costs about twice gray.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .geometry import Box

Point = tuple[float, float]

# eye keypoints: [0] = the subject's right eye (image left), [1] = the subject's left eye (image right)
RIGHT_EYE, LEFT_EYE = 0, 1
_MIN_EYE_DISTANCE = 1.0  # px; closer eyes give no reliable angle: no rotation


class FaceLike(Protocol):
    """What alignment needs of a detection (e.g. :class:`analyzer.vision.Detection`)."""

    @property
    def box(self) -> Box: ...

    @property
    def keypoints(self) -> Sequence[Point] | None: ...


@dataclass(frozen=True, slots=True)
class Face:
    """A plain face for callers that have boxes and eyes but no detector object."""

    box: Box
    keypoints: Sequence[Point] | None = None


def eye_angle(keypoints: Sequence[Point] | None) -> float:
    """Angle (radians) of the line from the image-left eye to the image-right eye; 0 when unknown."""
    if keypoints is None or len(keypoints) < 2:
        return 0.0
    (x0, y0), (x1, y1) = keypoints[RIGHT_EYE], keypoints[LEFT_EYE]
    dx, dy = x1 - x0, y1 - y0
    if not (math.isfinite(dx) and math.isfinite(dy)) or math.hypot(dx, dy) < _MIN_EYE_DISTANCE:
        return 0.0
    return math.atan2(dy, dx)


def _grid(box: Box, angle: float, size: int, scale: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Source coordinates (luma pixel centres) of every output pixel, and the crop side in luma px."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * scale
    if not (math.isfinite(side) and side > 0):
        raise ValueError(f"face box {box} has no size")
    cx, cy = (x0 + x1) / 2.0 - 0.5, (y0 + y1) / 2.0 - 0.5  # box edges → pixel-centre coordinates
    t = ((np.arange(size, dtype=np.float64) + 0.5) * (side / size) - side / 2.0).astype(np.float32)
    a, b = t[None, :], t[:, None]  # a along the eye line (output x), b across it (output y)
    cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    xs = np.float32(cx) + a * cos - b * sin
    ys = np.float32(cy) + a * sin + b * cos
    return xs, ys, side


def _sample(planes: Sequence[np.ndarray], xs: np.ndarray, ys: np.ndarray, footprint: float) -> list[np.ndarray]:
    """Bilinear samples at (xs, ys) of same-sized planes, after ``k x k`` block averaging when ``footprint >= 2``.

    Returns one ``float32`` array shaped like ``xs`` per plane. Indices are clamped: outside the plane the
    nearest edge pixel is repeated.
    """
    h, w = planes[0].shape
    k = max(1, int(footprint))
    left = math.floor(float(xs.min())) - k
    top = math.floor(float(ys.min())) - k
    nx = (math.ceil(float(xs.max())) + 2 * k - left) // k * k
    ny = (math.ceil(float(ys.max())) + 2 * k - top) // k * k
    inside = left >= 0 and top >= 0 and left + nx <= w and top + ny <= h
    if not inside:
        rows = np.clip(np.arange(top, top + ny), 0, h - 1)[:, None]
        cols = np.clip(np.arange(left, left + nx), 0, w - 1)[None, :]
    images = []
    for plane in planes:
        region = plane[top : top + ny, left : left + nx] if inside else plane[rows, cols]
        if k > 1:
            sums = region.reshape(ny // k, k, nx).sum(axis=1, dtype=np.uint32)
            img = sums.reshape(ny // k, nx // k, k).sum(axis=2, dtype=np.uint32).astype(np.float32)
            img *= np.float32(1.0 / (k * k))
        else:
            img = region.astype(np.float32)
        images.append(img.ravel())
    gh, gw = ny // k, nx // k
    # source pixel centre x ↦ block coordinate (x - left - (k - 1) / 2) / k
    bx = ((xs - left - (k - 1) / 2.0) / k).astype(np.float32)
    by = ((ys - top - (k - 1) / 2.0) / k).astype(np.float32)
    fx0, fy0 = np.floor(bx), np.floor(by)
    fx, fy = bx - fx0, by - fy0
    # int32 indices: half the memory of intp, which keeps the temporaries of a 112x112 grid cheap
    ix0 = np.clip(fx0, 0, gw - 1).astype(np.int32)
    iy0 = np.clip(fy0, 0, gh - 1).astype(np.int32)
    dx = (ix0 < gw - 1).astype(np.int32)  # the right/lower neighbour, clamped at the edge
    dy = (iy0 < gh - 1).astype(np.int32) * np.int32(gw)
    i00 = iy0 * np.int32(gw) + ix0
    i01, i10 = i00 + dx, i00 + dy
    i11 = i10 + dx
    out = []
    for flat in images:
        a, b = flat.take(i00), flat.take(i01)
        top_row = a + (b - a) * fx
        a, b = flat.take(i10), flat.take(i11)
        bottom_row = a + (b - a) * fx
        out.append(top_row + (bottom_row - top_row) * fy)
    return out


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, *, full_range: bool = False) -> np.ndarray:
    """BT.601 Y'CbCr (float arrays, 0..255 code values) → RGB ``uint8[..., 3]``."""
    f = np.float32
    if full_range:
        yy, cb, cr = y.astype(f), (u - f(128.0)).astype(f), (v - f(128.0)).astype(f)
    else:
        yy = (y - f(16.0)) * f(255.0 / 219.0)
        cb = (u - f(128.0)) * f(255.0 / 224.0)
        cr = (v - f(128.0)) * f(255.0 / 224.0)
    rgb = np.empty((*yy.shape, 3), np.float32)
    rgb[..., 0] = yy + f(1.402) * cr
    rgb[..., 1] = yy - f(0.344136) * cb - f(0.714136) * cr
    rgb[..., 2] = yy + f(1.772) * cb
    np.rint(rgb, out=rgb)
    return np.clip(rgb, 0, 255, out=rgb).astype(np.uint8)


def _check_planes(luma: np.ndarray, chroma: tuple[np.ndarray, np.ndarray] | None) -> None:
    if luma.ndim != 2 or luma.dtype != np.uint8:
        raise ValueError(f"luma must be uint8[H, W], got {luma.dtype}{list(luma.shape)}")
    if chroma is None:
        return
    want = ((luma.shape[0] + 1) // 2, (luma.shape[1] + 1) // 2)
    for name, plane in zip("UV", chroma, strict=True):
        if plane.ndim != 2 or plane.dtype != np.uint8 or plane.shape != want:
            raise ValueError(f"chroma {name} must be uint8{list(want)} (yuv420p), got {plane.dtype}{list(plane.shape)}")


def align_faces(
    luma: np.ndarray,
    faces: Sequence[FaceLike],
    size: int,
    scale: float,
    *,
    chroma: tuple[np.ndarray, np.ndarray] | None = None,
    rotate: bool = True,
    full_range: bool = False,
) -> np.ndarray:
    """Upright square crops of the faces: gray ``uint8[N, size, size]``, or RGB ``uint8[N, size, size, 3]``
    when ``chroma`` (the U and V planes of yuv420p, ``uint8[ceil(H/2), ceil(W/2)]``) is given.

    ``rotate=False`` (or a face without keypoints) keeps the crop axis-aligned.
    """
    _check_planes(luma, chroma)
    if size < 1 or not scale > 0:
        raise ValueError(f"size must be >= 1 and scale > 0, got {size}, {scale}")
    n = len(faces)
    out = np.empty((n, size, size, 3) if chroma is not None else (n, size, size), np.uint8)
    for i, face in enumerate(faces):
        angle = eye_angle(face.keypoints) if rotate else 0.0
        xs, ys, side = _grid(face.box, angle, size, scale)
        footprint = side / size
        (y,) = _sample((luma,), xs, ys, footprint)
        if chroma is None:
            np.rint(y, out=y)
            out[i] = np.clip(y, 0, 255, out=y)
            continue
        # luma pixel centre (x, y) → chroma sample coordinates (left-sited horizontally, centred vertically)
        u, v = _sample(chroma, xs / 2.0, (ys + 0.5) / 2.0 - 0.5, footprint / 2.0)
        out[i] = yuv_to_rgb(y, u, v, full_range=full_range)
    return out
