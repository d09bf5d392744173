"""Face detectors for small faces and crowds, and a cheap re-locator of known faces.

- :class:`CenterFaceDetector`: CenterFace (anchor-free, stride 4) on the whole frame at a chosen working
  size; finds most faces from ~24 px tall at its input, some from ~15 px. The discovery detector.
- :class:`TiledFaceDetector`: BlazeFace full range on the letterboxed frame plus square tiles at finer
  scales (one batched call), merged with NMS; optionally spread over several calls (a tile budget).
- :class:`FaceRelocator`: BlazeFace short range on a square crop around each known face's last box
  (2x the box, resized to 128x128), many faces in one batched call: refined boxes + keypoints.

All take the luma plane ``uint8[H, W]`` and return :class:`analyzer.vision.Detection` in frame pixels,
``keypoints[0]`` = the subject's right eye (image left), ``keypoints[1]`` = the subject's left eye.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .expressions import session
from .vision import Box, Detection, FaceDetector, _iou, _weighted_nms, resize_luma

CENTERFACE_STRIDE = 32  # input sides must be multiples of this
_CENTERFACE_OUTPUTS = ("heatmap", "scale", "offset", "landmarks")

# Smallest face (labelled box height, px at the network input) CenterFace finds in >= 75 % of cases at
# CENTERFACE_DEFAULT_THRESHOLD, measured with emotionctl.media.detection_eval on the labelled evaluation set
# (1080p scenes of 45 real faces, 112 face-free frames): at 1920 (x1) 77 % of 24-32 px faces, 93 % of
# 32-48 px, no false face on face-free frames; at 1600 (x0.83) 47 %, at 1440 (x0.75) 31 %.
CENTERFACE_MIN_INPUT_FACE = 24.0
# Its heatmap threshold: 0.5 (CenterFace's demo) loses small faces (60 % of 24-32 px at 1920); 0.35 keeps
# face-free frames clean on its own; lower thresholds find more small faces but fire on non-faces (int8 model,
# 720p + 1080p scenes, 224 face-free frames: 0.25 -> 80 % of 24-32 px and 0.9 false faces per 100 face-free
# frames, 0.2 -> 83 % and 1.8). So the analyzer discovers at CENTERFACE_CONFIRMED_THRESHOLD and a new face
# scoring below CENTERFACE_DEFAULT_THRESHOLD becomes a track only when the re-locator (BlazeFace short range,
# another detector) finds a face on a crop around it (``FaceFinder(confirm_below=...)``): 0.2 + confirmation
# -> 82 % of 24-32 px, 96 % of 32-48, no false face.
CENTERFACE_DEFAULT_THRESHOLD = 0.35
CENTERFACE_CONFIRMED_THRESHOLD = 0.2
# The default working long side: faces from 24 px tall in a 1080p frame (issue 8's range).
CENTERFACE_DEFAULT_LONG_SIDE = 1920
# Memory: activations grow with the input (a 1920x1088 input peaks at ~330 MB over the loaded model); bigger
# inputs are run as overlapping regions of at most this many input pixels (~110 MB each), plus a coarse
# whole-frame pass at CENTERFACE_COARSE_LONG_SIDE (~26 ms) for faces bigger than the regions' overlap.
CENTERFACE_MAX_INPUT_PIXELS = 700_000
CENTERFACE_COARSE_LONG_SIDE = 640
CENTERFACE_REGION_OVERLAP = 0.12  # of the frame height: 130 px at 1080p


def _session(model_path: Path | str, threads: int, *, mem_pattern: bool = True) -> ort.InferenceSession:
    return session(model_path, threads, mem_pattern=mem_pattern)


def _check_luma(luma: np.ndarray, what: str) -> None:
    if luma.ndim != 2 or luma.dtype != np.uint8:
        raise ValueError(f"{what} wants uint8[H, W] luma, got {luma.dtype}{list(luma.shape)}")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.array(keep, np.intp)


def _to_detections(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, min_face: float, max_faces: int | None
) -> list[Detection]:
    out: list[Detection] = []
    for box, score, pts in zip(boxes, scores, points, strict=True):
        if box[3] - box[1] < min_face:
            continue
        out.append(
            Detection(
                box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                score=float(score),
                keypoints=tuple((float(x), float(y)) for x, y in pts),
            )
        )
        if max_faces is not None and len(out) >= max_faces:
            break
    return out


# -- CenterFace ------------------------------------------------------------------------------------------


class CenterFaceDetector:
    """CenterFace on onnxruntime: heatmap / scale / offset / 5 landmarks at stride 4, decoded + NMS in numpy.

    The frame is resized so its longer side is ``long_side`` pixels (``None``: the frame's own size),
    padded (black) up to multiples of 32. Faces of ~``CENTERFACE_MIN_INPUT_FACE`` px and more at that
    working size are found: :meth:`for_min_face` picks the working size from a minimum face height.
    Keypoints: right eye, left eye (subject's), nose, right and left mouth corner.
    Not thread-safe: use one instance per thread.
    """

    def __init__(
        self,
        model_path: Path | str,
        threads: int = 1,
        *,
        long_side: int | None = CENTERFACE_DEFAULT_LONG_SIDE,
        score_threshold: float = CENTERFACE_DEFAULT_THRESHOLD,
        nms_iou: float = 0.3,
        min_face_size: float = 0.0,
        max_faces: int | None = None,
        max_input_pixels: int | None = CENTERFACE_MAX_INPUT_PIXELS,
        coarse_long_side: int = CENTERFACE_COARSE_LONG_SIDE,
    ) -> None:
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
        if max_input_pixels is not None and max_input_pixels < 64 * 64:
            raise ValueError(f"max_input_pixels must be >= 4096 or None, got {max_input_pixels}")
        self.max_input_pixels = max_input_pixels
        self.coarse_long_side = coarse_long_side
        if long_side is not None and long_side < CENTERFACE_STRIDE:
            raise ValueError(f"long_side must be >= {CENTERFACE_STRIDE} or None, got {long_side}")
        self.long_side = long_side
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.min_face_size = float(min_face_size)
        self.max_faces = max_faces
        # Input sizes vary (regions, frame sizes): a memory pattern planned for one size only adds memory.
        self._session = _session(model_path, threads, mem_pattern=False)
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[1] != 3:
            raise ValueError(f"{model_path}: unexpected CenterFace input {[i.shape for i in inputs]}")
        self._input_name = inputs[0].name
        names = [o.name for o in self._session.get_outputs()]
        if sorted(names) != sorted(_CENTERFACE_OUTPUTS):
            raise ValueError(f"{model_path}: CenterFace outputs {names}, expected {list(_CENTERFACE_OUTPUTS)}")

    @staticmethod
    def working_long_side(frame_long_side: int, min_face: float, max_long_side: int = 1920) -> int:
        """The minimum-face knob: the working long side (a multiple of 32, at most ``max_long_side``) at
        which faces ``min_face`` px tall in the frame are ``CENTERFACE_MIN_INPUT_FACE`` px at the input.

        1080p: 24 px -> 1920 (the default), 32 -> 1440, 48 -> 960. Cost grows with the square of it
        (CPU, one thread: ~215 ms at 1920, ~170 at 1600, ~135 at 1440, ~95 at 1280, ~55 at 960).
        A smaller frame may be upscaled (720p, 16 px -> 1920)."""
        if min_face <= 0 or frame_long_side < 1:
            raise ValueError(f"min_face and frame_long_side must be > 0, got {min_face}, {frame_long_side}")
        wanted = frame_long_side * CENTERFACE_MIN_INPUT_FACE / min_face
        side = math.ceil(wanted / CENTERFACE_STRIDE) * CENTERFACE_STRIDE
        return int(max(CENTERFACE_STRIDE, min(side, max_long_side)))

    @classmethod
    def for_min_face(
        cls,
        model_path: Path | str,
        min_face: float,
        frame_long_side: int = 1920,
        threads: int = 1,
        *,
        score_threshold: float = CENTERFACE_DEFAULT_THRESHOLD,
        max_faces: int | None = None,
    ) -> CenterFaceDetector:
        """A detector whose working size finds faces from ``min_face`` px tall in frames of that long side."""
        side = cls.working_long_side(frame_long_side, min_face)
        return cls(model_path, threads, long_side=side, score_threshold=score_threshold, max_faces=max_faces)

    def input_geometry(self, h: int, w: int, min_face: float = 0.0) -> tuple[int, int, float]:
        """``(resized_h, resized_w, scale)`` for a frame; the network input is that padded to multiples of 32.

        With ``min_face`` (px in the frame) the working size is the one that finds faces of that height
        (:meth:`working_long_side`), else ``long_side``."""
        long_side = self.working_long_side(max(h, w), min_face) if min_face > 0 else self.long_side
        scale = 1.0 if long_side is None else long_side / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale)), scale

    def regions(self, h: int, w: int, min_face: float = 0.0) -> list[tuple[int, int, int, int]]:
        """The regions (frame pixels) one :meth:`detect` call runs at the working scale: the whole frame, or
        when its input would exceed ``max_input_pixels`` a grid of regions overlapping by
        ``CENTERFACE_REGION_OVERLAP`` of the frame height (faces up to that size lie whole in one region;
        bigger ones are the coarse pass's)."""
        out_h, out_w, scale = self.input_geometry(h, w, min_face)
        if self.max_input_pixels is None or out_h * out_w <= self.max_input_pixels:
            return [(0, 0, w, h)]
        overlap = math.ceil(h * CENTERFACE_REGION_OVERLAP)
        rows = cols = 1
        while True:
            rh, rw = (h + (rows - 1) * overlap) / rows, (w + (cols - 1) * overlap) / cols
            if rh * rw * scale * scale <= self.max_input_pixels or (rh <= overlap * 2 and rw <= overlap * 2):
                break
            if rw >= rh:
                cols += 1
            else:
                rows += 1
        xs = [round(c * (w - rw) / max(1, cols - 1)) for c in range(cols)] if cols > 1 else [0]
        ys = [round(r * (h - rh) / max(1, rows - 1)) for r in range(rows)] if rows > 1 else [0]
        return [(x, y, min(w, round(x + rw)), min(h, round(y + rh))) for y in ys for x in xs]

    def detect(
        self, luma: np.ndarray, min_face: float = 0.0, region: tuple[int, int, int, int] | None = None
    ) -> list[Detection]:
        """Faces in a ``uint8[H, W]`` luma plane, best score first; ``min_face`` (frame px, optional) sets the
        working size for faces from that height (else ``long_side``) and drops smaller ones.

        A frame whose working input exceeds ``max_input_pixels`` (memory: ~200 MB of activations for a
        1920x1088 input) is run as overlapping regions at the working scale plus one coarse pass of the
        whole frame at ``coarse_long_side`` (the faces bigger than the overlap), merged with NMS; a
        region's detection touching one of its inner edges is left to the neighbour or the coarse pass.

        ``region`` ``(x0, y0, x1, y1)`` (frame pixels) looks only there, at the scale the whole frame would
        get (same smallest face, cost in proportion to the region's area): discovery can be spread over
        several calls. A face cut by the region's edge is found cut (or not at all): overlap the regions
        by more than the largest face they must find."""
        _check_luma(luma, "CenterFaceDetector.detect()")
        h, w = luma.shape
        if h < 1 or w < 1:
            return []
        smallest = max(self.min_face_size, min_face)
        scale = self.input_geometry(h, w, min_face)[2]
        if region is not None:
            boxes, scores, points = self._detect_region(luma, region, scale)
            return _to_detections(boxes, scores, points, smallest, self.max_faces)
        regions = self.regions(h, w, min_face)
        if len(regions) == 1:
            return _to_detections(*self._part(luma, 0, regions, scale), smallest, self.max_faces)
        parts = [self._part(luma, i, regions, scale) for i in range(len(regions) + 1)]
        all_boxes = np.concatenate([p[0] for p in parts])
        all_scores = np.concatenate([p[1] for p in parts])
        all_points = np.concatenate([p[2] for p in parts])
        keep = nms(all_boxes, all_scores, self.nms_iou) if all_scores.size else np.zeros(0, np.intp)
        return _to_detections(all_boxes[keep], all_scores[keep], all_points[keep], smallest, self.max_faces)

    def discovery_parts(self, h: int, w: int, min_face: float = 0.0) -> int:
        """How many :meth:`detect_part` calls one :meth:`detect` of an ``h`` x ``w`` frame is made of: 1 when the
        frame is run whole, else the coarse pass and each region (1080p at 24 px: 5, each ~1/4 of the cost)."""
        regions = self.regions(h, w, min_face)
        return 1 if len(regions) == 1 else len(regions) + 1

    def detect_part(self, luma: np.ndarray, part: int, min_face: float = 0.0) -> list[Detection]:
        """Part ``part`` (0 ≤ part < :meth:`discovery_parts`) of :meth:`detect`: the coarse pass (0) or one region
        (a detection touching an inner edge of it is left to its neighbour or the coarse pass). Run on
        successive frames, the parts spread one discovery's cost; what they find together is what
        :meth:`detect` finds on one frame, less the NMS between parts (the caller merges the same face)."""
        _check_luma(luma, "CenterFaceDetector.detect_part()")
        h, w = luma.shape
        regions = self.regions(h, w, min_face)
        count = 1 if len(regions) == 1 else len(regions) + 1
        if not 0 <= part < count:
            raise ValueError(f"part must be in [0, {count}) for a {w}x{h} frame, got {part}")
        scale = self.input_geometry(h, w, min_face)[2]
        smallest = max(self.min_face_size, min_face)
        return _to_detections(*self._part(luma, part, regions, scale), smallest, self.max_faces)

    def parts_near(self, h: int, w: int, boxes: Sequence[Box], min_face: float = 0.0, reach: float = 3.0) -> list[int]:
        """The parts (:meth:`detect_part`) to look for faces last seen at ``boxes`` (frame pixels) that may have
        moved up to ``(reach - 1) / 2`` of their size: the coarse pass (~1/15 of a whole pass at 1080p), which
        finds any face taller than the regions' overlap wherever it went, and for a smaller face every region
        that meets its box grown ``reach`` times around its centre; the one part when the frame is run whole."""
        regions = self.regions(h, w, min_face)
        if len(regions) == 1:
            return [0]
        overlap = math.ceil(h * CENTERFACE_REGION_OVERLAP)
        parts = {0}
        for x0, y0, x1, y1 in boxes:
            if y1 - y0 >= overlap:
                continue  # a big face is the coarse pass's (a region leaves a face touching its inner edges)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            hw, hh = (x1 - x0) * reach / 2, (y1 - y0) * reach / 2
            parts.update(
                i + 1 for i, (rx0, ry0, rx1, ry1) in enumerate(regions)
                if rx0 < cx + hw and cx - hw < rx1 and ry0 < cy + hh and cy - hh < ry1
            )
        return sorted(parts)

    def _part(
        self, luma: np.ndarray, part: int, regions: list[tuple[int, int, int, int]], scale: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores, keypoints of one part: the whole frame when ``regions`` is one region, else the coarse
        pass (part 0) or region ``part - 1`` without its detections touching an inner edge."""
        h, w = luma.shape
        if len(regions) == 1:
            return self._detect_region(luma, regions[0], scale)
        if part == 0:
            return self._detect_region(luma, (0, 0, w, h), self.coarse_long_side / max(h, w))
        x0, y0, x1, y1 = regions[part - 1]
        boxes, scores, points = self._detect_region(luma, (x0, y0, x1, y1), scale)
        inner = np.ones(len(scores), bool)
        edge = 2.0
        if x0 > 0:
            inner &= boxes[:, 0] > x0 + edge
        if y0 > 0:
            inner &= boxes[:, 1] > y0 + edge
        if x1 < w:
            inner &= boxes[:, 2] < x1 - edge
        if y1 < h:
            inner &= boxes[:, 3] < y1 - edge
        return boxes[inner], scores[inner], points[inner]

    def _detect_region(
        self, luma: np.ndarray, region: tuple[int, int, int, int], scale: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores (best first), keypoints in frame pixels of one region run at ``scale``."""
        h, w = luma.shape
        x0, y0 = max(0, int(region[0])), max(0, int(region[1]))
        x1, y1 = min(w, int(region[2])), min(h, int(region[3]))
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"region {region} is empty or outside the {w}x{h} frame")
        if (x0, y0, x1, y1) != (0, 0, w, h):
            luma = luma[y0:y1, x0:x1]
            h, w = luma.shape
        out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
        small, (used_h, used_w) = resize_luma(luma, out_h, out_w)
        in_h = math.ceil(out_h / CENTERFACE_STRIDE) * CENTERFACE_STRIDE
        in_w = math.ceil(out_w / CENTERFACE_STRIDE) * CENTERFACE_STRIDE
        x = np.zeros((1, 3, in_h, in_w), np.float32)  # RGB 0..255, grey replicated; padding black
        x[0, :, :out_h, :out_w] = small
        heatmap, scale_map, offset, landmarks = self._session.run(list(_CENTERFACE_OUTPUTS), {self._input_name: x})
        boxes, scores, points = decode_centerface(
            heatmap[0, 0], scale_map[0], offset[0], landmarks[0], self.score_threshold, self.nms_iou
        )
        factor = np.array([used_w / out_w, used_h / out_h])
        origin = np.array([x0, y0], np.float64)
        boxes = (boxes.reshape(-1, 2, 2) * factor + origin).reshape(-1, 4)
        points = points * factor + origin
        return boxes, scores, points


def decode_centerface(
    heatmap: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    landmarks: np.ndarray,
    threshold: float,
    nms_iou: float,
    stride: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CenterFace's maps (``[h, w]``, ``[2, h, w]``, ``[2, h, w]``, ``[10, h, w]``) → boxes ``[K, 4]``,
    scores ``[K]`` (best first) and keypoints ``[K, 5, 2]`` in input pixels, after NMS.

    Per cell above the threshold: centre = (cell + offset + 0.5) * stride, size = exp(scale) * stride
    (channel 0 = height, 1 = width); landmark j = box corner + (x_j, y_j) * box size, with the maps giving
    (y, x) pairs. The box is not clipped to the input (a face at the border keeps its true extent).
    """
    ys, xs = np.nonzero(heatmap > threshold)
    if ys.size == 0:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
    scores = heatmap[ys, xs].astype(np.float64)
    box_h = np.exp(scale[0, ys, xs].astype(np.float64)) * stride
    box_w = np.exp(scale[1, ys, xs].astype(np.float64)) * stride
    cy = (ys + offset[0, ys, xs] + 0.5) * stride
    cx = (xs + offset[1, ys, xs] + 0.5) * stride
    x0 = cx - box_w / 2
    y0 = cy - box_h / 2
    boxes = np.stack([x0, y0, x0 + box_w, y0 + box_h], axis=1)
    lm = landmarks[:, ys, xs].astype(np.float64).T.reshape(-1, 5, 2)  # (y, x) pairs
    points = np.stack([x0[:, None] + lm[:, :, 1] * box_w[:, None], y0[:, None] + lm[:, :, 0] * box_h[:, None]], axis=2)
    keep = nms(boxes, scores, nms_iou)
    return boxes[keep], scores[keep], points[keep]


# -- tiles and crops for BlazeFace ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """A square region of the frame (may extend past its edges) that becomes one detector input."""

    left: int
    top: int
    side: int


def _fill_input(luma: np.ndarray, window: Window, size: int, out: np.ndarray) -> None:
    """Resize ``window`` of ``luma`` into ``out`` ``float32[C, size, size]`` scaled to -1..1 (the grey in each of
    the ``C`` channels); the parts of the window outside the frame are black (-1), like BlazeFace's letterbox bars."""
    out[0].fill(-1.0)
    _fill_grey(luma, window, size, out[0])
    out[1:] = out[:1]


def _fill_batch(luma: np.ndarray, windows: Sequence[Window], size: int, channels: int) -> np.ndarray:
    """``float32[N, channels, size, size]``: :func:`_fill_input` of each window, with the black fill and the grey
    copied to the other channels done once for the whole batch."""
    batch = np.full((len(windows), channels, size, size), -1.0, np.float32)
    for i, window in enumerate(windows):
        _fill_grey(luma, window, size, batch[i, 0])
    batch[:, 1:] = batch[:, :1]
    return batch


def _fill_grey(luma: np.ndarray, window: Window, size: int, out: np.ndarray) -> None:
    """The visible part of ``window`` resized into ``out`` ``float32[size, size]`` (already black: -1)."""
    h, w = luma.shape
    x0, y0 = max(window.left, 0), max(window.top, 0)
    x1, y1 = min(window.left + window.side, w), min(window.top + window.side, h)
    if x1 <= x0 or y1 <= y0:
        return
    f = size / window.side
    # target rectangle of the visible part, in input pixels
    tx0, ty0 = round((x0 - window.left) * f), round((y0 - window.top) * f)
    tx1, ty1 = round((x1 - window.left) * f), round((y1 - window.top) * f)
    if tx1 <= tx0 or ty1 <= ty0:
        return
    small, _ = resize_luma(luma[y0:y1, x0:x1], ty1 - ty0, tx1 - tx0)
    region = out[ty0:ty1, tx0:tx1]
    np.multiply(small, np.float32(2.0 / 255.0), out=region)
    region -= np.float32(1.0)


def _to_frame(window: Window, size: int, boxes: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = window.side / size
    origin = np.array([window.left, window.top], np.float64)
    return (boxes.reshape(-1, 2, 2) * f + origin).reshape(-1, 4), points * f + origin


# A re-located face needs this score: real faces score ~0.8-0.95 on their crop, while the textured background a
# face has just left scores up to ~0.6 and would keep the departed face alive.
RELOCATION_THRESHOLD = 0.7


class FaceRelocator:
    """Re-locates known faces: BlazeFace short range on a square crop (``crop_scale`` x the box's longer
    side, centred on the box) resized to 128x128; all faces of a frame in one batched call.

    For each prior box, the detection in its crop that overlaps the prior most (IoU >= ``min_iou``) is
    returned in frame pixels, else None (the face left the crop, turned away or is occluded).
    """

    def __init__(
        self,
        model_path: Path | str,
        threads: int = 1,
        *,
        crop_scale: float = 2.0,
        score_threshold: float = RELOCATION_THRESHOLD,
        min_iou: float = 0.2,
    ) -> None:
        if crop_scale < 1.0:
            raise ValueError(f"crop_scale must be >= 1, got {crop_scale}")
        self.crop_scale = crop_scale
        self.min_iou = min_iou
        self._detector = FaceDetector(model_path, threads, score_threshold=score_threshold)
        self.input_size = self._detector.input_size

    def window(self, box: Box) -> Window:
        x0, y0, x1, y1 = box
        side = max(1, round(max(x1 - x0, y1 - y0) * self.crop_scale))
        return Window(round((x0 + x1) / 2 - side / 2), round((y0 + y1) / 2 - side / 2), side)

    def relocate(self, luma: np.ndarray, box: Box) -> Detection | None:
        """The face near ``box`` (frame pixels) in this frame, or None."""
        return self.relocate_many(luma, [box])[0]

    def relocate_many(self, luma: np.ndarray, boxes: Sequence[Box]) -> list[Detection | None]:
        """One result per prior box (same order); one detector call for all of them."""
        _check_luma(luma, "FaceRelocator.relocate_many()")
        if not boxes:
            return []
        for box in boxes:
            if not (box[2] > box[0] and box[3] > box[1]) or not all(math.isfinite(v) for v in box):
                raise ValueError(f"prior box {box} is empty or not finite")
        size = self.input_size
        windows = [self.window(box) for box in boxes]
        batch = _fill_batch(luma, windows, size, self._detector.channels)
        results: list[Detection | None] = []
        for box, window, (det_boxes, scores, points) in zip(
            boxes, windows, self._detector.run_batch(batch), strict=True
        ):
            if scores.size == 0:
                results.append(None)
                continue
            frame_boxes, frame_points = _to_frame(window, size, det_boxes, points)
            overlap = _iou(np.asarray(box, np.float64), frame_boxes)
            best = int(np.argmax(overlap))
            if overlap[best] < self.min_iou:
                results.append(None)
                continue
            b = frame_boxes[best]
            results.append(
                Detection(
                    box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                    score=float(scores[best]),
                    keypoints=tuple((float(x), float(y)) for x, y in frame_points[best]),
                )
            )
        return results


def tile_windows(h: int, w: int, side: int, overlap: float) -> list[Window]:
    """Square windows of ``side`` px covering an ``h x w`` frame, neighbours overlapping by ``overlap``
    (a fraction of ``side``); edge windows are shifted inside the frame when the frame is larger."""
    if side < 1 or not 0.0 <= overlap < 1.0:
        raise ValueError(f"bad tiling: side {side}, overlap {overlap}")

    def starts(length: int) -> list[int]:
        if length <= side:
            return [(length - side) // 2]
        step = side * (1.0 - overlap)
        count = math.ceil((length - side) / step) + 1
        return [round(i * (length - side) / (count - 1)) for i in range(count)]

    return [Window(x, y, side) for y in starts(h) for x in starts(w)]


class TiledFaceDetector:
    """BlazeFace full range on the whole frame (letterboxed, for big faces) plus square tiles at finer
    scales, merged with weighted NMS.

    ``tile_sides`` are tile sides as fractions of the frame height (e.g. ``(0.5, 0.25)``); each level's
    tiles overlap by ``overlap``. A tile's detections whose centre lies in its overlap band next to an
    interior tile edge are dropped (the neighbouring tile sees that face whole). ``tiles_per_call``
    bounds the tiles run per :meth:`detect` call: the next call continues where this one stopped, so
    discovery can be spread over several frames (None: all tiles every call).
    """

    def __init__(
        self,
        model_path: Path | str,
        threads: int = 1,
        *,
        tile_sides: Sequence[float] = (0.5, 0.25),
        overlap: float = 0.25,
        tiles_per_call: int | None = None,
        score_threshold: float = 0.5,
        nms_iou: float = 0.3,
        min_face_size: float = 0.0,
        max_faces: int | None = None,
    ) -> None:
        if tiles_per_call is not None and tiles_per_call < 1:
            raise ValueError(f"tiles_per_call must be >= 1 or None, got {tiles_per_call}")
        self.tile_sides = tuple(tile_sides)
        self.overlap = overlap
        self.tiles_per_call = tiles_per_call
        self.nms_iou = nms_iou
        self.min_face_size = float(min_face_size)
        self.max_faces = max_faces
        self._detector = FaceDetector(model_path, threads, score_threshold=score_threshold, nms_iou=nms_iou)
        self.input_size = self._detector.input_size
        self._cursor = 0
        self._plan: tuple[tuple[int, int], list[Window]] | None = None

    def windows(self, h: int, w: int) -> list[Window]:
        """All tiles for a frame size, coarse levels first."""
        if self._plan is None or self._plan[0] != (h, w):
            tiles: list[Window] = []
            for fraction in self.tile_sides:
                side = max(1, round(h * fraction))
                tiles.extend(tile_windows(h, w, side, self.overlap))
            self._plan = ((h, w), tiles)
            self._cursor = 0
        return self._plan[1]

    def detect(self, luma: np.ndarray) -> list[Detection]:
        """Faces found in this call (the whole frame + this call's tiles), best score first."""
        _check_luma(luma, "TiledFaceDetector.detect()")
        h, w = luma.shape
        if h < 1 or w < 1:
            return []
        tiles = self.windows(h, w)
        if self.tiles_per_call is None or self.tiles_per_call >= len(tiles):
            chosen = tiles
        else:
            chosen = [tiles[(self._cursor + i) % len(tiles)] for i in range(self.tiles_per_call)]
            self._cursor = (self._cursor + self.tiles_per_call) % len(tiles)
        whole = self._detector.detect(luma)
        all_boxes = [np.array([d.box for d in whole], np.float64).reshape(-1, 4)]
        all_scores = [np.array([d.score for d in whole], np.float64)]
        all_points = [np.array([d.keypoints for d in whole], np.float64).reshape(-1, 6, 2)]
        size = self.input_size
        batch = _fill_batch(luma, chosen, size, self._detector.channels)
        for window, (boxes, scores, points) in zip(chosen, self._detector.run_batch(batch), strict=True):
            if scores.size == 0:
                continue
            frame_boxes, frame_points = _to_frame(window, size, boxes, points)
            margin = window.side * self.overlap / 2
            cx = (frame_boxes[:, 0] + frame_boxes[:, 2]) / 2
            cy = (frame_boxes[:, 1] + frame_boxes[:, 3]) / 2
            inner = np.ones(len(scores), bool)
            if window.left > 0:
                inner &= cx >= window.left + margin
            if window.top > 0:
                inner &= cy >= window.top + margin
            if window.left + window.side < w:
                inner &= cx < window.left + window.side - margin
            if window.top + window.side < h:
                inner &= cy < window.top + window.side - margin
            all_boxes.append(frame_boxes[inner])
            all_scores.append(scores[inner])
            all_points.append(frame_points[inner])
        boxes = np.concatenate(all_boxes)
        if boxes.shape[0] == 0:
            return []
        merged = _weighted_nms(boxes, np.concatenate(all_scores), np.concatenate(all_points), self.nms_iou)
        return _to_detections(*merged, self.min_face_size, self.max_faces)
