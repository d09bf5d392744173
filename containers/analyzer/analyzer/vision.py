"""Faces and emotions on the luma plane of a frame: BlazeFace (full range) and mini-XCEPTION on onnxruntime.

Everything works on the Y (luma) plane of the decoded frame as ``uint8[H, W]``; the frame is never
converted to RGB (both models see grayscale: an RGB detector gets it replicated to three channels, a detector made
for grey input, as the short-range re-locator is, gets one channel).

Cost on one core at 1080p with one face (bench/vision.py): ~0.5 ms letterbox + ~2.2 ms detector +
~0.5 ms crop and classify, ~4 ms in all.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from . import expressions, model_files
from .geometry import Box

log = logging.getLogger(__name__)

__all__ = ["Detection", "EmotionClassifier", "FaceDetector", "crop_faces", "load_models", "resize_luma"]


_RAW_SCORE_LIMIT = 80.0  # MediaPipe clips logits at 100; 80 keeps exp() in float32 range


@dataclass(frozen=True, slots=True)
class Detection:
    """One face in input-frame pixels.

    ``box`` is ``(x0, y0, x1, y1)``; it may extend past the frame edges for a face cut by the border
    (:func:`crop_faces` pads). ``keypoints`` are BlazeFace's six points: right eye, left eye, nose tip,
    mouth centre, right ear tragion, left ear tragion (subject's left/right).
    """

    box: Box
    score: float
    keypoints: tuple[tuple[float, float], ...] | None = None


def _session(model_path: Path | str, threads: int) -> ort.InferenceSession:
    return expressions.session(model_path, threads)


# -- resizing ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _bilinear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights to resample ``src`` samples to ``dst`` (pixel centres aligned, edges clamped)."""
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    pos = np.clip(pos, 0.0, src - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, src - 1)
    frac = (pos - lo).astype(np.float32)
    return lo, hi, frac


def _bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Separable bilinear resize of a float32 2-D array."""
    h, w = img.shape
    if (h, w) == (out_h, out_w):
        return img
    y0, y1, fy = _bilinear_taps(h, out_h)
    x0, x1, fx = _bilinear_taps(w, out_w)
    rows = img[y0] + (img[y1] - img[y0]) * fy[:, None]
    return rows[:, x0] + (rows[:, x1] - rows[:, x0]) * fx[None, :]


def resize_luma(img: np.ndarray, out_h: int, out_w: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize ``uint8[H, W]`` to ``float32[out_h, out_w]`` (values 0..255), anti-aliased.

    Downscaling first averages ``k x k`` blocks (exact area averaging for the integer part of the
    factor, cheap: two reshaped sums), then resamples the remaining factor (< 2) bilinearly. When
    ``H``/``W`` is not a multiple of ``k`` the last ``< k`` rows/columns are left out.

    Returns the image and the source extent ``(used_h, used_w)`` that maps onto ``[0, out_h) x [0, out_w)``.
    """
    h, w = img.shape
    k = max(1, min(h // out_h, w // out_w))
    if k == 1:
        return _bilinear(img.astype(np.float32), out_h, out_w), (float(h), float(w))
    hk, wk = h // k, w // k
    # Row blocks then column blocks; uint16/uint32 sums cannot overflow for k <= 257.
    stack = img[: hk * k, : wk * k].reshape(hk, k, wk * k)
    rows = stack.sum(axis=1, dtype=np.uint16) if k <= 257 else stack.sum(axis=1, dtype=np.uint32)
    blocks = rows.reshape(hk, wk, k).sum(axis=2, dtype=np.uint32).astype(np.float32)
    blocks *= np.float32(1.0 / (k * k))
    return _bilinear(blocks, out_h, out_w), (float(hk * k), float(wk * k))


# -- face detector -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Letterbox:
    """Where a frame of a given size lands in the square detector input."""

    out_h: int
    out_w: int
    pad_y: int
    pad_x: int


# BlazeFace anchor layouts, keyed by (input side, anchor count): (stride, anchors per cell) per feature map.
# MediaPipe's SsdAnchorsCalculator with fixed anchor size: layers of one stride share a grid, so
# short range (strides 8, 16, 16, 16; 2 anchors per layer) is 16x16x2 + 8x8x6 = 896 anchors.
BLAZEFACE_ANCHOR_LAYOUTS: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {
    (192, 2304): ((4, 1),),  # full range: 48x48x1
    (128, 896): ((8, 2), (16, 6)),  # short range
}


# Inputs per onnxruntime call in FaceDetector.run_batch: memory grows with the batch (50 crops of 128x128:
# +150 MB), the cost per input does not fall beyond a few.
BLAZEFACE_MAX_BATCH = 8


def blazeface_anchors(size: int, count: int) -> np.ndarray:
    """SSD anchor centres ``float32[count, 2]`` (x, y) in input pixels, in the model's output order."""
    layout = BLAZEFACE_ANCHOR_LAYOUTS.get((size, count))
    if layout is None:
        raise ValueError(f"unknown BlazeFace variant: {size}x{size} input with {count} anchors")
    parts = []
    for stride, per_cell in layout:
        cells = size // stride
        centres = (np.arange(cells, dtype=np.float32) + 0.5) * stride
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)  # row-major cells
        parts.append(np.repeat(grid, per_cell, axis=0))  # each cell's anchors are consecutive
    return np.concatenate(parts)


class FaceDetector:
    """MediaPipe BlazeFace on onnxruntime, with SSD decoding and weighted NMS in numpy.

    Any BlazeFace variant: the anchor layout follows from the model's input side and anchor count
    (:data:`BLAZEFACE_ANCHOR_LAYOUTS`): full range (192x192), short range (128x128).

    :meth:`detect` letterboxes the whole frame into the input, so with full range faces narrower than
    ~9 % of the frame's longer side (~170 px at 1080p, ~100 px at 720p) are not found: the model needs
    ~17 input pixels per face. :meth:`run_batch` runs prepared inputs (tiles, crops) in one call.
    Not thread-safe (one reused input buffer): use one instance per thread.
    """

    def __init__(
        self,
        model_path: Path | str,
        threads: int = 1,
        *,
        score_threshold: float = 0.5,
        min_face_size: float = 0.0,
        nms_iou: float = 0.3,
        max_faces: int | None = None,
    ) -> None:
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
        self.score_threshold = score_threshold
        self.min_face_size = float(min_face_size)
        self.nms_iou = nms_iou
        self.max_faces = max_faces
        self._logit_threshold = math.log(score_threshold / (1.0 - score_threshold))
        self._session = _session(model_path, threads)
        inp = self._session.get_inputs()[0]
        _, channels, size_h, size_w = inp.shape
        if channels not in (1, 3) or size_h != size_w or not isinstance(size_h, int):
            raise ValueError(f"{model_path}: unexpected detector input {inp.shape}")
        self._input_name = inp.name
        self.input_size: int = size_h
        # 3: the grey picture in the three RGB channels; 1: a model made for grey input (modelbuild.tflite_onnx)
        self.channels: int = channels
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        self._regressors = next(n for n, s in outputs.items() if s[-1] == 16)
        self._classificators = next(n for n, s in outputs.items() if s[-1] == 1)
        self._anchors = blazeface_anchors(self.input_size, outputs[self._regressors][1])
        self._input = np.full((1, channels, size_h, size_w), -1.0, np.float32)  # letterbox bars: black
        self._letterbox: tuple[tuple[int, int], _Letterbox] | None = None
        self.detect(np.zeros((size_h, size_w), np.uint8))  # warm-up: first run allocates and plans

    def _geometry(self, h: int, w: int) -> _Letterbox:
        if self._letterbox is not None and self._letterbox[0] == (h, w):
            return self._letterbox[1]
        size = self.input_size
        scale = min(size / w, size / h)
        out_w = min(size, max(1, round(w * scale)))
        out_h = min(size, max(1, round(h * scale)))
        geo = _Letterbox(out_h, out_w, (size - out_h) // 2, (size - out_w) // 2)
        self._input.fill(-1.0)  # bars of the new geometry
        self._letterbox = ((h, w), geo)
        return geo

    def _prepare(self, luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fill the input tensor; returns (offset, factor): frame px = (input px - offset) * factor, as (x, y)."""
        h, w = luma.shape
        geo = self._geometry(h, w)
        small, (used_h, used_w) = resize_luma(luma, geo.out_h, geo.out_w)
        region = self._input[0, 0, geo.pad_y : geo.pad_y + geo.out_h, geo.pad_x : geo.pad_x + geo.out_w]
        np.multiply(small, np.float32(2.0 / 255.0), out=region)
        region -= np.float32(1.0)
        self._input[0, 1:] = self._input[0, :1]
        return np.array([geo.pad_x, geo.pad_y], np.float64), np.array([used_w / geo.out_w, used_h / geo.out_h])

    def detect(self, luma: np.ndarray, min_face: float = 0.0) -> list[Detection]:
        """Faces in a ``uint8[H, W]`` luma plane, best score first; none smaller than ``min_face`` px."""
        if luma.ndim != 2 or luma.dtype != np.uint8:
            raise ValueError(f"detect() wants uint8[H, W] luma, got {luma.dtype}{list(luma.shape)}")
        if luma.shape[0] < 1 or luma.shape[1] < 1:
            return []
        offset, factor = self._prepare(luma)
        ((boxes, scores, points),) = self.run_batch(self._input)
        # input pixels -> frame pixels
        boxes = ((boxes.reshape(-1, 2, 2) - offset) * factor).reshape(-1, 4)
        points = (points - offset) * factor
        return self._detections(boxes, scores, points, min_face)

    def _detections(
        self, boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, min_face: float = 0.0
    ) -> list[Detection]:
        """Frame-pixel arrays (best first) → :class:`Detection` list, with min size and max faces applied."""
        out: list[Detection] = []
        for box, score, pts in zip(boxes, scores, points, strict=True):
            if min(box[2] - box[0], box[3] - box[1]) < max(self.min_face_size, min_face):
                continue
            out.append(
                Detection(
                    box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                    score=float(score),
                    keypoints=tuple((float(x), float(y)) for x, y in pts),
                )
            )
            if self.max_faces is not None and len(out) >= self.max_faces:
                break
        return out

    def run_batch(self, inputs: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Run ``float32[N, C, S, S]`` inputs (values -1..1; ``C`` = :attr:`channels`), ``BLAZEFACE_MAX_BATCH`` per
        call; per input, after weighted NMS and in input pixels: boxes ``[K, 4]`` (x0, y0, x1, y1), scores ``[K]``
        (best first), keypoints ``[K, 6, 2]``."""
        want = (self.channels, self.input_size, self.input_size)
        if inputs.ndim != 4 or inputs.shape[1:] != want:
            raise ValueError(f"run_batch() wants float32[N, {', '.join(map(str, want))}], got {inputs.shape}")
        if inputs.shape[0] == 0:
            return []
        out = []
        for start in range(0, inputs.shape[0], BLAZEFACE_MAX_BATCH):
            chunk = inputs[start : start + BLAZEFACE_MAX_BATCH].astype(np.float32, copy=False)
            regressors, logits = self._session.run([self._regressors, self._classificators], {self._input_name: chunk})
            out.extend(self._decode(regressors, logits))
        return out

    def _decode(self, regressors: np.ndarray, logits: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        empty = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2)))
        # the candidates of the whole batch at once: a crop around a face has a few, most anchors none
        image, anchor = np.nonzero(logits[:, :, 0] >= self._logit_threshold)
        if image.size == 0:
            return [empty] * len(logits)
        all_raw = regressors[image, anchor].astype(np.float64)
        all_scores = 1.0 / (
            1.0 + np.exp(-np.clip(logits[image, anchor, 0].astype(np.float64), -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT))
        )
        bounds = np.searchsorted(image, np.arange(len(logits) + 1))
        out = []
        for i in range(len(logits)):
            start, stop = bounds[i], bounds[i + 1]
            if start == stop:
                out.append(empty)
                continue
            keep = anchor[start:stop]
            raw = all_raw[start:stop]
            scores = all_scores[start:stop]
            anchors = self._anchors[keep].astype(np.float64)
            centre = raw[:, 0:2] + anchors
            half = raw[:, 2:4] / 2.0
            boxes = np.concatenate([centre - half, centre + half], axis=1)  # input pixels
            points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
            out.append(_weighted_nms(boxes, scores, points, self.nms_iou))
        return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``iou[i, j]`` of boxes ``a[i]`` and ``b[j]`` (``[K, 4]`` and ``[M, 4]``, x0 y0 x1 y1); 0 where the union is
    empty."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The IoU of one box with each of ``boxes``."""
    return iou_matrix(box[None, :], boxes)[0]


def _weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: each cluster (IoU > threshold with its best box) becomes the
    score-weighted mean of its boxes and keypoints, with the best box's score.

    The overlaps of all pairs are computed once (a crop has a few dozen candidates at most); the clusters are
    then taken best first from the boxes not yet in one."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores, points = boxes[order], scores[order], points[order]
    overlaps = iou_matrix(boxes, boxes) > iou_threshold
    free = np.ones(len(scores), bool)  # not yet in a cluster; the first free box is the best of the rest
    out_boxes, out_scores, out_points = [], [], []
    best = 0
    while best < len(scores):
        members = np.flatnonzero(overlaps[best] & free)
        if members.size == 0:
            members = np.array([best])
        weights = scores[members][:, None]
        total = weights.sum()
        out_boxes.append((boxes[members] * weights).sum(axis=0) / total)
        out_points.append((points[members] * weights[:, :, None]).sum(axis=0) / total)
        out_scores.append(scores[best])
        free[members] = False
        free[best] = False
        rest = np.flatnonzero(free[best:])
        best = best + int(rest[0]) if rest.size else len(scores)
    return np.array(out_boxes), np.array(out_scores), np.array(out_points)


# -- crops ----------------------------------------------------------------------------------------------


def crop_faces(luma: np.ndarray, boxes: Sequence[Box] | np.ndarray, scale: float = 1.25, size: int = 64) -> np.ndarray:
    """Square crops ``uint8[N, size, size]`` around each box's centre, side ``max(w, h) * scale``.

    Parts of a crop outside the frame repeat the nearest edge pixel. Area averaging for the integer
    part of the downscale, bilinear for the rest (see :func:`resize_luma`).
    """
    if luma.ndim != 2:
        raise ValueError(f"crop_faces() wants a 2-D luma plane, got shape {luma.shape}")
    n = len(boxes)
    out = np.empty((n, size, size), np.uint8)
    h, w = luma.shape
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        side = max(x1 - x0, y1 - y0) * scale
        length = max(1, round(side))
        left = round((x0 + x1) / 2.0 - length / 2.0)
        top = round((y0 + y1) / 2.0 - length / 2.0)
        if left >= 0 and top >= 0 and left + length <= w and top + length <= h:
            window = luma[top : top + length, left : left + length]
        else:  # at the border: clamp indices (edge replication)
            rows = np.clip(np.arange(top, top + length), 0, h - 1)
            cols = np.clip(np.arange(left, left + length), 0, w - 1)
            window = luma[rows[:, None], cols[None, :]]
        resized, _ = resize_luma(window, size, size)
        np.clip(np.rint(resized), 0, 255, out=resized)
        out[i] = resized.astype(np.uint8)
    return out


# -- emotion classifier ----------------------------------------------------------------------------------


class EmotionClassifier(expressions.OnnxExpressionClassifier):
    """mini-XCEPTION (FER2013): ``uint8[N, 64, 64]`` crops → ``float32[N, 7]`` in ``EMOTIONS`` order.

    The ``mini_xception`` model of :mod:`analyzer.expressions` (which has the other classifiers and
    ensembles), with the constructor the pipeline has always used.
    """

    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        spec = expressions.MODEL_SPECS["mini_xception"]
        super().__init__(
            "mini_xception",
            model_path,
            expressions.FER_LABELS,
            size=spec.size,
            colour=spec.colour,
            crop_scale=spec.crop_scale,
            threads=threads,
        )


def load_models(
    model_dir: Path | None = None, threads: int = 1, **detector_options: Any
) -> tuple[FaceDetector, EmotionClassifier]:
    """Both models from a verified model directory (default :func:`analyzer.model_files.default_model_dir`)."""
    files = model_files.load_manifest(model_dir)
    log.info("loading models from %s", files.directory)
    detector = FaceDetector(files.face_detector, threads, **detector_options)
    return detector, EmotionClassifier(files.emotion_classifier, threads)
