"""Measure face-discovery detectors: recall per face-size bucket, false faces on face-free frames, CPU cost.

    python -m emotionctl.media.detection_eval [--quick] [--core N]

:func:`compare_discovery` runs every candidate (:func:`discovery_candidates`) over labelled scenes and
:func:`format_table` prints the comparison. The scenes are any ``Scene`` list (e.g. from the evaluation
set); :func:`synthetic_scenes` composes quick ones from the public-domain photos in scikit-image
(the astronaut, the cameraman) pasted at controlled sizes into 1080p frames, and face-free frames from
its other photos. Face size = the height of the labelled face box (brows to chin, BlazeFace-like), in
pixels of a 1080p frame.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from analyzer import model_files
from analyzer.detectors import (
    CENTERFACE_CONFIRMED_THRESHOLD,
    CENTERFACE_DEFAULT_THRESHOLD,
    CenterFaceDetector,
    FaceRelocator,
    TiledFaceDetector,
)
from analyzer.vision import Box, Detection, FaceDetector, iou_matrix, resize_luma

SIZE_BUCKETS: tuple[tuple[float, float], ...] = ((16, 24), (24, 32), (32, 48), (48, 96), (96, math.inf))
MATCH_IOU = 0.3  # a detection matches a labelled face at IoU >= this (box conventions differ per detector)

Detect = Callable[[np.ndarray], list[Detection]]


@dataclass(frozen=True)
class Scene:
    """A luma frame and the labelled face boxes in it (none for face-free frames)."""

    frame: np.ndarray
    faces: tuple[Box, ...]
    name: str = ""
    sources: tuple[str, ...] = ()  # per face: which photo it came from


def bucket_label(bucket: tuple[float, float]) -> str:
    lo, hi = bucket
    return f">={lo:g}" if math.isinf(hi) else f"{lo:g}-{hi:g}"


# -- synthetic scenes ----------------------------------------------------------------------------------


def _luma(rgb: np.ndarray) -> np.ndarray:
    y = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    out, _ = resize_luma(img, h, w)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class FacePhoto:
    """A photo with one labelled face box (x0, y0, x1, y1) in its pixels."""

    name: str
    luma: np.ndarray
    face: Box


def face_photos() -> list[FacePhoto]:
    """The public-domain face photos shipped in scikit-image (faces boxed by eye: brows to chin)."""
    from skimage import data

    astronaut = _luma(data.astronaut())
    box = (175.0, 71.0, 277.0, 173.0)
    mirrored = (512.0 - box[2], box[1], 512.0 - box[0], box[3])
    return [
        FacePhoto("astronaut", astronaut, box),
        FacePhoto("astronaut-mirrored", np.ascontiguousarray(astronaut[:, ::-1]), mirrored),
        FacePhoto("astronaut-dark", (astronaut * 0.55).astype(np.uint8), box),
        FacePhoto("cameraman", data.camera(), (204.0, 121.0, 268.0, 195.0)),  # turned ~60 deg, a hard face
    ]


def face_free_photos() -> list[np.ndarray]:
    """scikit-image photos without a human face (a cat is one of them: it must not count as a face)."""
    from skimage import data

    return [
        _luma(data.coffee()),
        _luma(data.chelsea()),
        _luma(data.rocket()),
        _luma(data.hubble_deep_field()),
        data.brick(),
        data.grass(),
        data.gravel(),
        data.page(),
        data.text(),
        data.moon(),
        data.coins(),
        _luma(data.stereo_motorcycle()[0]),
        data.horse().astype(np.uint8) * 255,
    ]


def background_frame(rng: np.random.Generator, photos: Sequence[np.ndarray], h: int, w: int) -> np.ndarray:
    """A face-free frame: a random crop of a face-free photo, scaled up to fill the frame, plus sensor noise."""
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape
    crop_h = int(rng.integers(max(8, ph // 2), ph + 1))
    crop_w = min(pw, max(8, round(crop_h * w / h)))
    y0 = int(rng.integers(0, ph - crop_h + 1))
    x0 = int(rng.integers(0, pw - crop_w + 1))
    frame = _resize(photo[y0 : y0 + crop_h, x0 : x0 + crop_w], h, w)
    if rng.random() < 0.5:
        frame = np.ascontiguousarray(frame[:, ::-1])
    noise = rng.normal(0.0, 3.0, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def paste_face(frame: np.ndarray, photo: FacePhoto, face_h: float, cx: float, cy: float, context: float = 2.4) -> Box:
    """Paste a square patch (``context`` x the face box) of the photo so the face is ``face_h`` tall and
    centred at (cx, cy); returns the face box in frame pixels."""
    x0, y0, x1, y1 = photo.face
    side = max(x1 - x0, y1 - y0) * context
    fcx, fcy = (x0 + x1) / 2, (y0 + y1) / 2
    ph, pw = photo.luma.shape
    left, top = max(0, round(fcx - side / 2)), max(0, round(fcy - side / 2))
    right, bottom = min(pw, round(fcx + side / 2)), min(ph, round(fcy + side / 2))
    f = face_h / (y1 - y0)
    out_w, out_h = max(1, round((right - left) * f)), max(1, round((bottom - top) * f))
    patch = _resize(photo.luma[top:bottom, left:right], out_h, out_w)
    fx, fy = round(cx - (fcx - left) * f), round(cy - (fcy - top) * f)  # patch origin in the frame
    h, w = frame.shape
    sx0, sy0 = max(0, -fx), max(0, -fy)
    sx1, sy1 = min(out_w, w - fx), min(out_h, h - fy)
    if sx1 > sx0 and sy1 > sy0:
        frame[fy + sy0 : fy + sy1, fx + sx0 : fx + sx1] = patch[sy0:sy1, sx0:sx1]
    return (
        fx + (x0 - left) * f,
        fy + (y0 - top) * f,
        fx + (x1 - left) * f,
        fy + (y1 - top) * f,
    )


DEFAULT_FACE_SIZES = (18, 22, 26, 30, 36, 44, 64, 90, 130, 250, 500)


def synthetic_scenes(
    *,
    height: int = 1080,
    width: int = 1920,
    face_sizes: Sequence[int] = DEFAULT_FACE_SIZES,
    faces_per_frame: int = 24,
    frames_per_size: int = 2,
    face_free_frames: int = 40,
    seed: int = 0,
) -> list[Scene]:
    """Frames with faces of each size (as many as fit, at most ``faces_per_frame``, up to 50), placed on a
    jittered grid over random face-free backgrounds, then ``face_free_frames`` face-free frames."""
    rng = np.random.default_rng(seed)
    photos = face_photos()
    backgrounds = face_free_photos()
    scenes: list[Scene] = []
    for size in face_sizes:
        cell = size * 2.6  # the pasted patch is 2.4x the face
        cols, rows = max(1, int(width // cell)), max(1, int(height // cell))
        count = min(faces_per_frame, 50, cols * rows)
        for k in range(frames_per_size):
            frame = background_frame(rng, backgrounds, height, width)
            cells = rng.permutation(cols * rows)[:count]
            faces: list[Box] = []
            names: list[str] = []
            for c in cells:
                col, row = divmod(int(c), rows)
                jitter = (cell - size * 2.4) / 2
                cx = (col + 0.5) * (width / cols) + rng.uniform(-jitter, jitter)
                cy = (row + 0.5) * (height / rows) + rng.uniform(-jitter, jitter)
                if count == 1:  # one big face: anywhere it fits, sometimes cut by the border
                    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.4, 0.6) * height
                photo = photos[int(rng.integers(len(photos)))]
                faces.append(paste_face(frame, photo, size, cx, cy))
                names.append(photo.name)
            scenes.append(Scene(frame, tuple(faces), f"faces{size}px-{k}", tuple(names)))
    for k in range(face_free_frames):
        scenes.append(Scene(background_frame(rng, backgrounds, height, width), (), f"face-free-{k}"))
    return scenes


# -- evaluation ------------------------------------------------------------------------------------------


def match(faces: Sequence[Box], detections: Sequence[Detection], min_iou: float = MATCH_IOU) -> tuple[list[int], int]:
    """Greedy one-to-one matching by IoU: per labelled face the index of its detection (-1: missed),
    and the number of detections matching no face (false faces)."""
    found = [-1] * len(faces)
    if not faces or not detections:
        return found, len(detections)
    iou = iou_matrix(np.asarray(faces, np.float64), np.asarray([d.box for d in detections], np.float64))
    used: set[int] = set()
    for flat in np.argsort(-iou, axis=None):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < min_iou:
            break
        if found[i] == -1 and j not in used:
            found[i] = j
            used.add(j)
    return found, len(detections) - len(used)


@dataclass
class DiscoveryResult:
    """One candidate's figures over a scene set."""

    name: str
    found: dict[str, int] = field(default_factory=dict)  # per size bucket
    total: dict[str, int] = field(default_factory=dict)
    found_by_source: dict[str, int] = field(default_factory=dict)
    total_by_source: dict[str, int] = field(default_factory=dict)
    false_on_face_free: int = 0
    face_free_frames: int = 0
    false_on_face_frames: int = 0
    face_frames: int = 0
    ms: list[float] = field(default_factory=list)  # wall time per frame
    cpu_ms: list[float] = field(default_factory=list)  # CPU time of the calling thread per frame
    smallest_found: float = math.inf  # face height in frame px

    def recall(self, bucket: str) -> float:
        return self.found.get(bucket, 0) / self.total[bucket] if self.total.get(bucket) else math.nan

    def recall_at_least(self, lo: float) -> float:
        keys = [bucket_label(b) for b in SIZE_BUCKETS if b[0] >= lo]
        total = sum(self.total.get(k, 0) for k in keys)
        return sum(self.found.get(k, 0) for k in keys) / total if total else math.nan

    @property
    def ms_median(self) -> float:
        return statistics.median(self.ms) if self.ms else math.nan

    @property
    def cpu_ms_median(self) -> float:
        return statistics.median(self.cpu_ms) if self.cpu_ms else math.nan

    @property
    def false_per_100_face_free(self) -> float:
        return 100.0 * self.false_on_face_free / self.face_free_frames if self.face_free_frames else math.nan


def _new_result(name: str) -> DiscoveryResult:
    result = DiscoveryResult(name)
    for bucket in SIZE_BUCKETS:
        result.total[bucket_label(bucket)] = 0
        result.found[bucket_label(bucket)] = 0
    return result


def _score(result: DiscoveryResult, detect: Detect, scene: Scene, scale_to_1080: bool) -> None:
    t0, c0 = time.perf_counter(), time.thread_time()
    detections = detect(scene.frame)
    result.cpu_ms.append((time.thread_time() - c0) * 1e3)
    result.ms.append((time.perf_counter() - t0) * 1e3)
    found, false = match(scene.faces, detections)
    if scene.faces:
        result.face_frames += 1
        result.false_on_face_frames += false
    else:
        result.face_free_frames += 1
        result.false_on_face_free += false
    to_1080 = 1080.0 / scene.frame.shape[0] if scale_to_1080 else 1.0
    sources = scene.sources or ("",) * len(scene.faces)
    for box, hit, source in zip(scene.faces, found, sources, strict=True):
        height = (box[3] - box[1]) * to_1080
        for bucket in SIZE_BUCKETS:
            if bucket[0] <= height < bucket[1]:
                key = bucket_label(bucket)
                result.total[key] += 1
                result.found[key] += hit >= 0
        result.total_by_source[source] = result.total_by_source.get(source, 0) + 1
        result.found_by_source[source] = result.found_by_source.get(source, 0) + (hit >= 0)
        if hit >= 0:
            result.smallest_found = min(result.smallest_found, height)


def evaluate(name: str, detect: Detect, scenes: Iterable[Scene], *, scale_to_1080: bool = True) -> DiscoveryResult:
    """Run ``detect`` on every scene: recall per bucket (face heights scaled to a 1080p frame; faces under
    16 px count in no bucket), false faces, and the time per frame: wall and CPU time of the calling thread
    (with one onnxruntime thread all inference runs on the caller's thread, so CPU time is the cost even
    on a busy machine)."""
    result = _new_result(name)
    for scene in scenes:
        _score(result, detect, scene, scale_to_1080)
    return result


def confirmed_discovery(detector: CenterFaceDetector, relocator: FaceRelocator, confirm_below: float) -> Detect:
    """A discovery detector whose faces scoring below ``confirm_below`` count only when the re-locator finds a
    face on a crop around them: the face finder's first frame (``FaceFinder(confirm_below=...)``)."""
    from analyzer.finder import FaceFinder

    def detect(luma: np.ndarray) -> list[Detection]:
        finder = FaceFinder(detector, relocator, min_face=0.0, confirm_below=confirm_below)
        return [Detection(f.box, f.score, f.keypoints) for f in finder.find(luma, 0.0)]

    return detect


def discovery_candidates(model_dir: Path | None = None, *, quick: bool = False) -> dict[str, Detect]:
    """The discovery settings compared (one onnxruntime thread each): the float and int8 CenterFace at several
    working sizes and thresholds, low thresholds with the re-locator's confirmation, BlazeFace tilings."""
    files = model_files.load_manifest(model_dir)
    candidates: dict[str, Detect] = {
        "blazeface-full 192 (today)": FaceDetector(files.face_detector).detect,
    }
    sides = (960, 1280, 1920) if quick else (640, 960, 1280, 1440, 1600, 1920)
    for side in sides:
        for threshold in (0.35, 0.5):
            candidates[f"centerface {side} t{threshold}"] = CenterFaceDetector(
                files.path("centerface"), long_side=side, score_threshold=threshold
            ).detect
    relocator = FaceRelocator(files.path("face_relocator"))
    low = CenterFaceDetector(files.path("centerface"), long_side=1920, score_threshold=CENTERFACE_CONFIRMED_THRESHOLD)
    candidates[f"centerface 1920 t{CENTERFACE_CONFIRMED_THRESHOLD} + confirm"] = confirmed_discovery(
        low, relocator, CENTERFACE_DEFAULT_THRESHOLD
    )
    for side in (960, 1440, 1920) if not quick else (960, 1920):
        candidates[f"int8 {side} t0.35"] = CenterFaceDetector(
            files.path("centerface_int8"), long_side=side, score_threshold=0.35
        ).detect
    for threshold in (0.25, 0.2):
        low8 = CenterFaceDetector(files.path("centerface_int8"), long_side=1920, score_threshold=threshold)
        candidates[f"int8 1920 t{threshold}"] = low8.detect
        candidates[f"int8 1920 t{threshold} + confirm <0.35"] = confirmed_discovery(
            low8, relocator, CENTERFACE_DEFAULT_THRESHOLD
        )
    tilings: list[tuple[str, tuple[float, ...]]] = [("tiled 1/2+1/4", (0.5, 0.25))]
    if not quick:
        tilings.append(("tiled 1/2+1/4+1/6", (0.5, 0.25, 1 / 6)))
    for label, sides_h in tilings:
        for threshold in (0.5, 0.65):
            candidates[f"{label} t{threshold}"] = TiledFaceDetector(
                files.face_detector, tile_sides=sides_h, score_threshold=threshold
            ).detect
    return candidates


def compare_discovery(
    model_dir: Path | None = None,
    scenes: Iterable[Scene] | None = None,
    candidates: dict[str, Detect] | None = None,
) -> list[DiscoveryResult]:
    """Every candidate over the scenes (default: :func:`synthetic_scenes`); one result per candidate.

    ``scenes`` may be a generator (e.g. :func:`scenes_from_evalset`): each frame is made once and given to
    every candidate in turn."""
    scenes = scenes if scenes is not None else synthetic_scenes()
    candidates = candidates if candidates is not None else discovery_candidates(model_dir)
    results = {name: _new_result(name) for name in candidates}
    for scene in scenes:
        for name, detect in candidates.items():
            _score(results[name], detect, scene, True)
    return list(results.values())


def _studio_luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range luma (16..235), the Y plane a decoded H.264 frame gives the analyzer."""
    y = 16.0 + rgb[..., :3].astype(np.float32) @ (np.array([65.481, 128.553, 24.966], np.float32) / 255.0)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def scenes_from_evalset(evalset: Any, height: int = 1080, *, face_free: bool = True) -> Iterator[Scene]:
    """The labelled evaluation set's scenes (``emotionctl.media.evalset.EvalSet``: ``scenes(height)`` and
    ``face_free(height)``, each ``render() -> (rgb, faces with .box and .pose)``) as luma :class:`Scene`s,
    rendered one at a time. A face's source is its pose (frontal / turned), for a recall per pose."""
    sets = [evalset.scenes(height)] + ([evalset.face_free(height)] if face_free else [])
    for scenes in sets:
        for scene in scenes:
            rgb, faces = scene.render()
            yield Scene(
                _studio_luma(rgb),
                tuple((float(f.box[0]), float(f.box[1]), float(f.box[2]), float(f.box[3])) for f in faces),
                f"{scene.kind}:{scene.id}",
                tuple(str(f.pose) for f in faces),
            )


def format_table(results: Sequence[DiscoveryResult]) -> str:
    labels = [bucket_label(b) for b in SIZE_BUCKETS]
    head = f"{'detector':<26}" + "".join(f"{lab + ' px':>10}" for lab in labels)
    head += f"{'>=32':>7}{'false/100ff':>12}{'false(face fr)':>15}{'min px':>8}{'CPU ms':>8}{'wall ms':>9}"
    lines = [head]
    for r in results:
        row = f"{r.name:<26}"
        for lab in labels:
            row += f"{r.recall(lab) * 100:>9.0f}%" if r.total.get(lab) else f"{'-':>10}"
        row += f"{r.recall_at_least(32) * 100:>6.0f}%"
        row += f"{r.false_per_100_face_free:>12.1f}{r.false_on_face_frames:>15d}"
        row += f"{r.smallest_found:>8.0f}{r.cpu_ms_median:>8.1f}{r.ms_median:>9.1f}"
        lines.append(row)
    if results:
        r = results[0]
        counts = ", ".join(f"{lab}: {r.total.get(lab, 0)}" for lab in labels)
        lines.append(f"faces per bucket ({counts}); {r.face_frames} face frames, {r.face_free_frames} face-free frames")
    return "\n".join(lines)


def format_by_source(results: Sequence[DiscoveryResult]) -> str:
    if not results:
        return ""
    sources = sorted(results[0].total_by_source)
    lines = [f"{'detector':<26}" + "".join(f"{s[:18]:>20}" for s in sources)]
    for r in results:
        lines.append(
            f"{r.name:<26}"
            + "".join(f"{r.found_by_source.get(s, 0) / max(1, r.total_by_source[s]) * 100:>19.0f}%" for s in sources)
        )
    return "\n".join(lines)


# -- re-location ------------------------------------------------------------------------------------------


@dataclass
class RelocationResult:
    """The re-locator at one face size: priors shifted/scaled like a face moving between analyses."""

    face_px: int
    faces: int = 0
    relocated: int = 0  # a detection came back
    ious: list[float] = field(default_factory=list)  # relocated box vs the true box
    prior_ious: list[float] = field(default_factory=list)  # the prior it started from vs the true box
    ms_per_face: float = math.nan  # CPU time; all faces of a frame in one batched call

    @property
    def hit_rate(self) -> float:
        return sum(i >= 0.5 for i in self.ious) / self.faces if self.faces else math.nan


def evaluate_relocator(
    relocate_many: Callable[[np.ndarray, Sequence[Box]], Sequence[Detection | None]],
    face_sizes: Sequence[int] = (24, 32, 48, 64, 100, 160, 250, 400),
    *,
    motion: float = 0.15,
    frames: int = 2,
    seed: int = 1,
    height: int = 1080,
    width: int = 1920,
) -> list[RelocationResult]:
    """For each face size: faces pasted into 1080p frames; each prior box is the true box shifted by up
    to ``motion`` x its size and scaled by up to 1 +/- ``motion``; the re-located box is compared with the
    true one (IoU; a hit is IoU >= 0.5)."""
    rng = np.random.default_rng(seed)
    photos = face_photos()
    backgrounds = face_free_photos()
    results = []
    for size in face_sizes:
        result = RelocationResult(size)
        elapsed = 0.0
        for _ in range(frames):
            frame = background_frame(rng, backgrounds, height, width)
            cell = size * 2.6
            cols, rows = max(1, int(width // cell)), max(1, int(height // cell))
            count = min(20, cols * rows)
            truths: list[Box] = []
            for c in rng.permutation(cols * rows)[:count]:
                col, row = divmod(int(c), rows)
                cx, cy = (col + 0.5) * (width / cols), (row + 0.5) * (height / rows)
                truths.append(paste_face(frame, photos[int(rng.integers(len(photos)))], size, cx, cy))
            priors = [_perturbed(rng, box, motion) for box in truths]
            c0 = time.thread_time()
            found = relocate_many(frame, priors)
            elapsed += time.thread_time() - c0
            truth_arr = np.asarray(truths, np.float64)
            for k, det in enumerate(found):
                result.faces += 1
                result.prior_ious.append(float(iou_matrix(truth_arr[k : k + 1], np.asarray([priors[k]]))[0, 0]))
                if det is None:
                    result.ious.append(0.0)
                    continue
                result.relocated += 1
                result.ious.append(float(iou_matrix(truth_arr[k : k + 1], np.asarray([det.box]))[0, 0]))
        result.ms_per_face = elapsed * 1e3 / max(1, result.faces)
        results.append(result)
    return results


def _perturbed(rng: np.random.Generator, box: Box, motion: float) -> Box:
    x0, y0, x1, y1 = box
    side = y1 - y0
    dx, dy = rng.uniform(-motion, motion, 2) * side
    f = 1.0 + rng.uniform(-motion, motion)
    cx, cy, half_w, half_h = (x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy, (x1 - x0) * f / 2, side * f / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def evaluate_relocator_on_scenes(
    relocate_many: Callable[[np.ndarray, Sequence[Box]], Sequence[Detection | None]],
    scenes: Iterable[Scene],
    *,
    motion: float = 0.15,
    seed: int = 1,
) -> list[RelocationResult]:
    """The re-locator on labelled scenes (e.g. :func:`scenes_from_evalset`): every labelled face's box,
    shifted/scaled by up to ``motion``, is the prior; results per size bucket (``face_px`` = the bucket's
    lower bound, 1080p-equivalent)."""
    rng = np.random.default_rng(seed)
    by_bucket = {bucket: RelocationResult(int(bucket[0])) for bucket in SIZE_BUCKETS}
    elapsed = dict.fromkeys(SIZE_BUCKETS, 0.0)
    for scene in scenes:
        if not scene.faces:
            continue
        priors = [_perturbed(rng, box, motion) for box in scene.faces]
        c0 = time.thread_time()
        found = relocate_many(scene.frame, priors)
        per_face = (time.thread_time() - c0) / len(priors)
        to_1080 = 1080.0 / scene.frame.shape[0]
        for truth, prior, det in zip(scene.faces, priors, found, strict=True):
            height = (truth[3] - truth[1]) * to_1080
            bucket = next((b for b in SIZE_BUCKETS if b[0] <= height < b[1]), None)
            if bucket is None:
                continue
            result = by_bucket[bucket]
            elapsed[bucket] += per_face
            result.faces += 1
            truth_arr = np.asarray([truth], np.float64)
            result.prior_ious.append(float(iou_matrix(truth_arr, np.asarray([prior]))[0, 0]))
            if det is None:
                result.ious.append(0.0)
                continue
            result.relocated += 1
            result.ious.append(float(iou_matrix(truth_arr, np.asarray([det.box]))[0, 0]))
    for bucket, result in by_bucket.items():
        result.ms_per_face = elapsed[bucket] * 1e3 / max(1, result.faces)
    return [r for r in by_bucket.values() if r.faces]


def format_relocation(results: Sequence[RelocationResult]) -> str:
    head = f"{'face px':>8}{'faces':>7}{'returned':>10}{'IoU>=0.5':>10}{'median IoU':>12}{'prior IoU':>11}"
    lines = [head + f"{'ms/face':>9}"]
    for r in results:
        lines.append(
            f"{r.face_px:>8}{r.faces:>7}{r.relocated / max(1, r.faces) * 100:>9.0f}%{r.hit_rate * 100:>9.0f}%"
            f"{statistics.median(r.ious):>12.2f}{statistics.median(r.prior_ious):>11.2f}{r.ms_per_face:>9.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer candidates and frames")
    parser.add_argument("--core", type=int, default=None, help="CPU to pin to (default: the last allowed one)")
    parser.add_argument("--face-free", type=int, default=40, help="face-free frames")
    parser.add_argument("--relocator", action="store_true", help="measure the re-locator only")
    args = parser.parse_args(argv)
    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    if args.relocator:
        relocator = FaceRelocator(model_files.load_manifest().path("face_relocator"))
        print(f"pinned to core {core}; onnxruntime 1 thread; BlazeFace short range on 2x crops, 128x128")
        print(format_relocation(evaluate_relocator(relocator.relocate_many)))
        return 0
    scenes = synthetic_scenes(
        frames_per_size=1 if args.quick else 2, face_free_frames=10 if args.quick else args.face_free
    )
    results = compare_discovery(scenes=scenes, candidates=discovery_candidates(quick=args.quick))
    print(f"pinned to core {core}; onnxruntime 1 thread; 1920x1080 frames")
    print(format_table(results))
    print("\nrecall per face photo (all sizes):")
    print(format_by_source(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
