"""Per-frame cost of the vision stage (detector + crop + classifier) on one pinned core.

    python bench/vision.py [--frames 200] [--core N]

A real face (``skimage.data.astronaut()``, scaled so the face is ~300 px high at 1080p) is pasted
into a 1080p and a 720p luma frame; each analysed frame runs FaceDetector.detect, crop_faces and
EmotionClassifier.classify exactly as the pipeline does. Prints p50/p95 in ms per stage and in total.
Builds the models first if needed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from analyzer.modelbuild import build
from analyzer.vision import crop_faces, load_models
from emotion_shared.emotions import EMOTIONS
from skimage import data, transform


def _luma_face(side: int) -> np.ndarray:
    rgb = data.astronaut().astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    scaled = transform.resize(luma, (side, side), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _frame(h: int, w: int, side: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    frame = rng.integers(60, 120, size=(h, w), dtype=np.uint8)
    top, left = (h - side) // 2, (w - side) // 3
    frame[top : top + side, left : left + side] = _luma_face(side)
    return frame


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--core", type=int, default=None, help="CPU to pin to (default: the last allowed one)")
    args = parser.parse_args()

    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    build()
    detector, classifier = load_models(threads=1)
    print(f"pinned to core {core}; onnxruntime 1 thread; {args.frames} frames per size")
    print(f"{'frame':>10} {'face px':>8} {'detect p50/p95':>16} {'crop+classify p50/p95':>22} {'total p50/p95':>16}")
    # astronaut's face is ~20% of the photo's side: ~300 px faces at 1080p, ~200 px at 720p
    for h, w, side in ((1080, 1920, 1080), (720, 1280, 720)):
        frame = _frame(h, w, side)
        det_ms: list[float] = []
        cls_ms: list[float] = []
        total_ms: list[float] = []
        label = "-"
        for _ in range(args.frames):
            t0 = time.perf_counter()
            faces = detector.detect(frame)
            t1 = time.perf_counter()
            probs = classifier.classify(crop_faces(frame, [f.box for f in faces]))
            t2 = time.perf_counter()
            det_ms.append((t1 - t0) * 1e3)
            cls_ms.append((t2 - t1) * 1e3)
            total_ms.append((t2 - t0) * 1e3)
            if len(faces) == 1:
                label = EMOTIONS[int(probs[0].argmax())]
        face_px = round(faces[0].box[3] - faces[0].box[1]) if faces else 0
        print(
            f"{w:>5}x{h:<4} {face_px:>8} {_pct(det_ms, 50):>7.2f}/{_pct(det_ms, 95):<7.2f}  "
            f"{_pct(cls_ms, 50):>10.2f}/{_pct(cls_ms, 95):<10.2f} "
            f"{statistics.median(total_ms):>7.2f}/{_pct(total_ms, 95):<7.2f}  faces={len(faces)} {label}"
        )


if __name__ == "__main__":
    main()
