"""Expression classifiers on the labelled evaluation set: accuracy, per-class recall and confusion per
classifier and ensemble; aligned vs unaligned crops; crop scales; luma range; colour; cost per face.

    python bench/expressions.py [--scales 1.0,1.1,1.25,1.4,1.6] [--core N] [--scenes]

Every labelled photo face of ``emotionctl.media.evalset`` whose expression is known is seen the way the
analyzer sees it: the photo becomes BT.601 limited-range yuv420p planes (what the H.264 decoder hands
over), the eyes come from BlazeFace run on the region around the face, and :func:`analyzer.align.align_faces`
makes the crops. Boxes: the hand-labelled box ("hand") and BlazeFace's box ("blazeface"). ``--scenes``
also scores the synthetic 1080p scenes per face-size bucket (the same faces, small).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from analyzer.align import Face, align_faces
from analyzer.expressions import (
    EMOTIONS,
    MODEL_SPECS,
    EnsembleClassifier,
    Evaluation,
    ExpressionClassifier,
    OnnxExpressionClassifier,
    evaluate_predictions,
    load_classifier,
)
from analyzer.geometry import Box
from analyzer.modelbuild import build
from analyzer.vision import Detection, FaceDetector, load_models


@dataclass
class Planes:
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray


@dataclass
class Sample:
    planes: Planes
    hand: Box
    detection: Detection | None  # BlazeFace on the region around the face; None when it missed
    label: str
    bucket: str = ""


def yuv420p(rgb: np.ndarray) -> Planes:
    """BT.601 limited-range Y'CbCr 4:2:0 of an RGB photo (chroma: mean of each 2x2 block), like FFmpeg's."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    x = rgb[:h, :w].astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    q = lambda c: np.clip(np.rint(c), 0, 255).astype(np.uint8)  # noqa: E731
    return Planes(q(y), q(sub(u)), q(sub(v)))


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def locate(detector: FaceDetector, y: np.ndarray, box: Box) -> Detection | None:
    """BlazeFace on a square region 2.5x the box around it (as a tracker re-locates a known face)."""
    side = 2.5 * max(box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    n = max(1, round(side))
    h, w = y.shape
    rows = np.clip(np.arange(top, top + n), 0, h - 1)
    cols = np.clip(np.arange(left, left + n), 0, w - 1)
    region = np.ascontiguousarray(y[rows[:, None], cols[None, :]])
    best, best_iou = None, 0.3
    for d in detector.detect(region):
        shifted: Box = (d.box[0] + left, d.box[1] + top, d.box[2] + left, d.box[3] + top)
        iou = _iou(shifted, box)
        if iou > best_iou and d.keypoints is not None:
            kps = tuple((px + left, py + top) for px, py in d.keypoints)
            best, best_iou = Detection(shifted, d.score, kps), iou
    return best


def photo_samples(ev: object, detector: FaceDetector) -> list[Sample]:
    samples, planes_of = [], {}
    for s in ev.expression_faces():  # type: ignore[attr-defined]
        if s.photo.id not in planes_of:
            planes_of[s.photo.id] = yuv420p(s.photo.image)
        planes = planes_of[s.photo.id]
        box = tuple(float(v) for v in s.face.box)
        samples.append(Sample(planes, box, locate(detector, planes.y, box), s.face.expression))  # type: ignore[arg-type]
    return samples


def scene_samples(ev: object, detector: FaceDetector) -> list[Sample]:
    samples = []
    for scene in ev.scenes(1080):  # type: ignore[attr-defined]
        if scene.kind not in ("single", "group5"):
            continue
        rgb, faces = scene.render()
        planes = yuv420p(rgb)
        for f in faces:
            if f.expression == "unclear":
                continue
            box = tuple(float(v) for v in f.box)
            samples.append(Sample(planes, box, locate(detector, planes.y, box), f.expression, f.bucket))  # type: ignore[arg-type]
    return samples


# ------------------------------------------------------------------------------------------------ crops
@dataclass(frozen=True)
class Variant:
    box: str  # "hand" | "blazeface"
    aligned: bool
    scale: float
    luma: str = "limited"  # "limited" (the decoder's Y as is) | "full" (expanded to 0..255)
    colour: str = "gray"  # for RGB models: "rgb" (from the chroma planes) | "gray"

    def __str__(self) -> str:
        return f"{self.box:9} {'aligned' if self.aligned else 'plain':7} x{self.scale:<4} {self.luma:7} {self.colour:4}"


def _expand(crops: np.ndarray) -> np.ndarray:
    return np.clip(np.rint((crops.astype(np.float32) - 16.0) * (255.0 / 219.0)), 0, 255).astype(np.uint8)


def crops_for(samples: Sequence[Sample], variant: Variant, size: int) -> np.ndarray:
    out = []
    for s in samples:
        det = s.detection
        box = det.box if (variant.box == "blazeface" and det is not None) else s.hand
        keypoints = det.keypoints if (variant.aligned and det is not None) else None
        face = Face(box, keypoints)
        chroma = (s.planes.u, s.planes.v) if variant.colour == "rgb" else None
        full = variant.luma == "full"
        crop = align_faces(s.planes.y, [face], size, variant.scale, chroma=chroma, full_range=full)
        if variant.colour == "gray" and full:
            crop = _expand(crop)
        out.append(crop[0])
    return np.stack(out)


SHIPPED = (
    "mini_xception",
    "human_emotion",
    "faceapi",
    "ensemble:mini_xception+human_emotion",
    "ensemble:mini_xception+faceapi",
    "ensemble",
)


def shipped_crops(samples: Sequence[Sample], classifier: ExpressionClassifier, *, gray: bool = False) -> np.ndarray:
    """What the runtime would hand ``classifier``: BlazeFace box and eyes, its size, scale and colour
    (``gray``: luma only, as when the pipeline passes no chroma planes)."""
    out = []
    for s in samples:
        face = Face(s.detection.box, s.detection.keypoints) if s.detection else Face(s.hand)
        chroma = (s.planes.u, s.planes.v) if classifier.colour == "rgb" and not gray else None
        out.append(align_faces(s.planes.y, [face], classifier.size, classifier.crop_scale, chroma=chroma)[0])
    return np.stack(out)


def _fmt(ev: Evaluation) -> str:
    recalls = " ".join(
        "  -  " if np.isnan(ev.per_class_recall[e]) else f"{ev.per_class_recall[e]:5.0%}" for e in EMOTIONS
    )
    return f"{ev.accuracy:6.1%}  {recalls}"


def _ms_per_face(fn: Callable[[], object], faces: int, reps: int = 30) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3 / faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1.0,1.1,1.25,1.4,1.6")
    parser.add_argument("--core", type=int, default=None, help="CPU to pin to (default: the last allowed one)")
    parser.add_argument("--scenes", action="store_true", help="also score the 1080p scenes per size bucket")
    parser.add_argument("--no-sweep", action="store_true", help="only the shipped classifiers (and costs)")
    args = parser.parse_args()
    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    scales = [float(s) for s in args.scales.split(",")]

    from emotionctl.media.evalset import build_evalset

    build()
    ev = build_evalset()
    detector, _ = load_models(threads=1)
    samples = photo_samples(ev, detector)
    labels = [s.label for s in samples]
    missed = sum(s.detection is None for s in samples)
    counts = {e: labels.count(e) for e in EMOTIONS}
    print(f"{len(samples)} labelled photo faces ({missed} without BlazeFace eyes: crops not rotated); {counts}")
    models = {name: load_classifier(name) for name in MODEL_SPECS}
    header = f"{'classifier':14} {'box':9} {'crop':7} {'scale':5} {'luma':7} {'col':4} {'acc':>6}  " + " ".join(
        f"{e[:5]:>5}" for e in EMOTIONS
    )

    best: dict[str, Variant] = {}
    if not args.no_sweep:
        # 1. every classifier, every box/alignment/scale (decoder luma as is; face-api in colour)
        print("\n== sweep (recall per class)\n" + header)
        results: dict[tuple[str, Variant], tuple[Evaluation, np.ndarray]] = {}
        for name, model in models.items():
            assert isinstance(model, OnnxExpressionClassifier)
            colour = "rgb" if model.colour == "rgb" else "gray"
            for box, aligned, scale in itertools.product(("hand", "blazeface"), (False, True), scales):
                variant = Variant(box, aligned, scale, colour=colour)
                probs = model.classify(crops_for(samples, variant, model.size))
                results[(name, variant)] = (evaluate_predictions(probs, labels), probs)
                print(f"{name:14} {variant} {_fmt(results[(name, variant)][0])}")

        # 2. luma range and colour at each model's best aligned BlazeFace setting
        print("\n== luma range / colour at each model's best aligned blazeface scale\n" + header)
        for name, model in models.items():
            cands = [(r[0].accuracy, v.scale, v) for (n, v), r in results.items() if n == name and v.box == "blazeface"]
            cands = [c for c in cands if c[2].aligned]
            _, _, variant = max(cands, key=lambda c: (c[0], -abs(c[1] - 1.25)))
            options = [variant, Variant(variant.box, True, variant.scale, "full", variant.colour)]
            if model.colour == "rgb":
                options.append(Variant(variant.box, True, variant.scale, "limited", "gray"))
            for opt in options:
                if (name, opt) not in results:
                    probs = model.classify(crops_for(samples, opt, model.size))
                    results[(name, opt)] = (evaluate_predictions(probs, labels), probs)
                print(f"{name:14} {opt} {_fmt(results[(name, opt)][0])}")
            best[name] = max(options, key=lambda o: results[(name, o)][0].accuracy)

        # 3. ensembles (equal weights) of the members at their best settings
        print("\n== ensembles (mean of the members' probabilities at their best settings)")
        for k in (2, 3):
            for combo in itertools.combinations(models, k):
                probs = np.mean([results[(n, best[n])][1] for n in combo], axis=0)
                print(f"{'+'.join(combo):40} {_fmt(evaluate_predictions(probs, labels))}")

        # 4. confusion matrices at the best settings
        for name in models:
            print(f"\n== {name} at {best[name]}\n{results[(name, best[name])][0].table()}")
        probs = np.mean([results[(n, best[n])][1] for n in models], axis=0)
        print(f"\n== ensemble of all three\n{evaluate_predictions(probs, labels).table()}")

    # 5. the classifiers as shipped: load_classifier(name), one crop per face at the classifier's own size,
    # colour and crop scale (BlazeFace box, aligned), exactly the runtime path
    print("\n== as shipped (load_classifier; BlazeFace box, aligned, the classifier's own crop)")
    shipped = {name: load_classifier(name) for name in SHIPPED}
    for name, classifier in shipped.items():
        probs = classifier.classify(shipped_crops(samples, classifier))
        print(f"{name:40} {_fmt(evaluate_predictions(probs, labels))}")
        if classifier.colour == "rgb":
            probs = classifier.classify(shipped_crops(samples, classifier, gray=True))
            print(f"{name + ' (luma only)':40} {_fmt(evaluate_predictions(probs, labels))}")

    # 6. cost per face (one core, onnxruntime 1 thread), classifier and crop
    print("\n== cost per face (ms, median; pinned core, 1 thread)")
    y = samples[0].planes
    face = Face(samples[0].hand, samples[0].detection.keypoints if samples[0].detection else None)
    for name, model in {**models, "ensemble": EnsembleClassifier(list(models.values()))}.items():
        colour = model.colour
        chroma = (y.u, y.v) if colour == "rgb" else None
        one = align_faces(y.y, [face], model.size, model.crop_scale, chroma=chroma)
        ten = np.repeat(one, 10, axis=0)
        crop_ms = _ms_per_face(
            lambda m=model, c=chroma: align_faces(y.y, [face] * 10, m.size, m.crop_scale, chroma=c), 10
        )
        one_ms = _ms_per_face(lambda m=model, c=one: m.classify(c), 1)
        ten_ms = _ms_per_face(lambda m=model, c=ten: m.classify(c), 10)
        print(
            f"{name:14} {model.size}x{model.size} {colour:4}  classify 1 face {one_ms:.2f}"
            f"  10 faces {ten_ms:.2f}/face  align {crop_ms:.3f}/face"
        )

    if args.scenes:
        print("\n== 1080p scenes (single + group5 faces), accuracy per size bucket (1080p face height)")
        scene = scene_samples(ev, detector)
        scene_labels = [s.label for s in scene]
        buckets = sorted({s.bucket for s in scene}, key=lambda b: float(b.split("-")[0].rstrip("+")))
        missed = sum(s.detection is None for s in scene)
        counts = {e: scene_labels.count(e) for e in EMOTIONS}
        print(f"{len(scene)} faces ({missed} without BlazeFace eyes); {counts}")
        print(f"{'classifier':40} {'all':>6}  " + " ".join(f"{b:>7}" for b in buckets))

        def row(name: str, probs: np.ndarray) -> None:
            cells = []
            for bucket in buckets:
                idx = [i for i, s in enumerate(scene) if s.bucket == bucket]
                cells.append(f"{evaluate_predictions(probs[idx], [scene_labels[i] for i in idx]).accuracy:7.1%}")
            print(f"{name:40} {evaluate_predictions(probs, scene_labels).accuracy:6.1%}  " + " ".join(cells))

        scene_probs: dict[str, np.ndarray] = {}
        if best:
            for name, model in models.items():
                variant = best[name]
                scene_probs[name] = model.classify(crops_for(scene, variant, model.size))
                row(f"{name} {'aligned' if variant.aligned else 'plain'} x{variant.scale}", scene_probs[name])
                plain = Variant(variant.box, False, variant.scale, variant.luma, variant.colour)
                row(f"{name} plain x{variant.scale}", model.classify(crops_for(scene, plain, model.size)))
            for k in (2, 3):
                for combo in itertools.combinations(models, k):
                    row("+".join(combo), np.mean([scene_probs[n] for n in combo], axis=0))
        print("as shipped:")
        for name, classifier in shipped.items():
            row(name, classifier.classify(shipped_crops(scene, classifier)))
            if classifier.colour == "rgb":
                row(name + " (luma only)", classifier.classify(shipped_crops(scene, classifier, gray=True)))
        if best:
            ensemble = np.mean([scene_probs[n] for n in models], axis=0)
            print(f"\n== scenes, ensemble of all three\n{evaluate_predictions(ensemble, scene_labels).table()}")
            for name in models:
                print(f"\n== scenes, {name}\n{evaluate_predictions(scene_probs[name], scene_labels).table()}")


if __name__ == "__main__":
    main()
