#!/usr/bin/env python
"""bench/quality — what the analyzer sees and gets right, old pipeline next to the new one, on the labelled set.

    .venv/bin/python bench/quality.py [--quick] [--core N] [--skip-curve]

The labelled evaluation set (``emotionctl.media.evalset``: hand-labelled photos from pinned packages, 720p and
1080p scenes composed from them at controlled face sizes, face-free frames, stream clips with per-frame ground
truth) is scored with the rules of ``emotionctl.media.scoring`` (a face is found when a box's centre lies in
its labelled box and the sizes agree within 2x; buckets are face heights at 1080p). Profile faces are outside
the product's range: not counted, and not false when found.

1. **Detection** per face-size bucket (16–24, 24–32, 32–48, 48–96, ≥ 96 px at 1080p), on every 1080p and
   720p scene (together, then each frame size alone): recall, false faces in scenes, false faces per 100
   face-free frames. The new pipeline is scored as it runs between discoveries: each frame goes through the
   finder twice (t = 0: discovery; t = 0.2: re-location of what it found, plus nothing new) and the second
   answer is scored.
2. **Discovery settings**: recall (≥ 32 px, 24–32 px) and CPU ms per 1080p frame for each discovery detector
   setting tried — the curve the default was chosen from (``--skip-curve`` leaves it out).
3. **Tracking**: id switches (CLEAR-MOT) and recall on the stream clips, decoded and analysed at 5/s:
   two faces crossing (one hides the other), a face hidden 1.5 s, a 30-face crowd.
4. **Expressions**: accuracy, recall per class and the confusion matrix per classifier and ensemble on the
   labelled photo faces (eyes from the re-locator, crops aligned the way the pipeline makes them); the old
   pipeline's crops were not aligned.
5. **Cost**: CPU ms per analysed frame (process time, one pinned core, 1 onnxruntime thread), steady state at
   5 analyses/s over 4 s of one frame (discoveries included at their interval), for one face and 30 faces at
   1080p.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent

from analyzer import expressions  # noqa: E402
from analyzer.expressions import EMOTIONS  # noqa: E402
from analyzer.finder import FaceFinder  # noqa: E402
from analyzer.pipeline import FrameAnalyzer  # noqa: E402
from analyzer.tracker import FaceTracker  # noqa: E402

from emotionctl.media.evalset import build_evalset, rgb_to_luma  # noqa: E402
from emotionctl.media.scoring import (  # noqa: E402
    SIZE_BUCKETS,
    ConfusionMatrix,
    DetectionScore,
    FalseFaceScore,
    id_switches,
    match,
)

BUCKETS = [name for name, _, _ in SIZE_BUCKETS]
TARGETS = {"recall>=32": 0.90, "recall24-32": 0.75, "false_per_100": 1.0}


# ------------------------------------------------------------------------------------------- pipelines
@dataclass
class Pipeline:
    name: str
    make: Callable[[], FrameAnalyzer]  # a fresh analyzer (its own tracker) per stream / still


def old_pipeline(model_dir: Path | None = None) -> Callable[[], FrameAnalyzer]:
    """What ran before: BlazeFace full range on one 192x192 letterbox of every analysed frame, mini-XCEPTION
    on plain (unrotated) crops, a tracker that forgot a face after 1 s and knew no appearance."""
    from analyzer import vision

    detector = vision.FaceDetector(_model_path(model_dir, "face_detector"), 1)
    classifier = expressions.load_classifier("mini_xception", model_dir, 1)

    def make() -> FrameAnalyzer:
        tracker = FaceTracker(max_missing_seconds=1.0, appearance_weight=0.0, missing_reach=0.0)
        return FrameAnalyzer(FaceFinder(_Whole(detector), None, tracker, min_face=0.0), classifier, align=False)

    return make


class _Whole:
    """The old detector as a discovery detector (it had no minimum face size)."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def detect(self, luma: np.ndarray, min_face: float = 0.0) -> Any:
        return self.detector.detect(luma)


def new_pipeline(model_dir: Path | None = None) -> Callable[[], FrameAnalyzer]:
    """The shipped defaults (``FrameAnalyzer.from_model_dir``), models loaded once, a new finder per stream."""
    template = FrameAnalyzer.from_model_dir(model_dir, threads=1)
    finder = template.finder

    def make() -> FrameAnalyzer:
        fresh = FaceFinder(
            finder.discovery,
            finder.relocator,
            FaceTracker(),
            discovery_interval=finder.discovery_interval,
            min_face=finder.min_face,
            max_faces=finder.max_faces,
            confirm_below=finder.confirm_below,
        )
        return FrameAnalyzer(fresh, template.classifier, align=template.align)

    return make


def _model_path(model_dir: Path | None, key: str) -> Path:
    from analyzer import model_files

    return model_files.load_manifest(model_dir).path(key)


# ------------------------------------------------------------------------------------------- detection
def found_boxes(analyzer: FrameAnalyzer, luma: np.ndarray) -> list[tuple[float, float, float, float]]:
    """The finder's answer on a still between discoveries: discovery at t = 0, re-location at t = 0.2."""
    analyzer.finder.find(luma, 0.0)
    return [f.box for f in analyzer.finder.find(luma, 0.2)]


def score_detection(
    pipe: Pipeline, ev: Any, heights: Sequence[int], limit: int | None
) -> tuple[DetectionScore, FalseFaceScore]:
    score, empty = DetectionScore(), FalseFaceScore()
    for height in heights:
        scenes = ev.scenes(height)[:limit] if limit else ev.scenes(height)
        for scene in scenes:
            rgb, faces = scene.render()
            luma = rgb_to_luma(rgb)
            counted = [f.box for f in faces if f.pose != "profile"]
            ignored = [f.box for f in faces if f.pose == "profile"]
            score.add(counted, found_boxes(pipe.make(), luma), height, ignored)
        frames = ev.face_free(height)[:limit] if limit else ev.face_free(height)
        for frame in frames:
            rgb, _ = frame.render()
            empty.add(found_boxes(pipe.make(), rgb_to_luma(rgb)))
    return score, empty


def print_detection(results: dict[str, tuple[DetectionScore, FalseFaceScore]]) -> None:
    print("\n## 1. Detection: recall per face height at 1080p (720p and 1080p scenes), false faces")
    head = (
        f"{'pipeline':<10}"
        + "".join(f"{b:>10}" for b in BUCKETS)
        + f"{'>=32':>8}{'false/scene':>13}{'false/100 empty':>17}"
    )
    print(head)
    for name, (score, empty) in results.items():
        cells = "".join(f"{_pct(score.recall(b)):>10}" for b in BUCKETS)
        per_scene = score.false_faces / score.frames if score.frames else math.nan
        print(f"{name:<10}{cells}{_pct(score.recall_at_least(32)):>8}{per_scene:>13.2f}{empty.per_100_frames:>17.2f}")
    for name, (score, _) in results.items():
        if not name.startswith("old"):
            continue
        print(f"{'faces' + name.removeprefix('old'):<10}" + "".join(f"{score.total[b]:>10}" for b in BUCKETS))
    print(
        f"targets: >= 32 px {TARGETS['recall>=32']:.0%}, 24-32 px {TARGETS['recall24-32']:.0%}, "
        f"<= {TARGETS['false_per_100']:g} false face per 100 face-free frames"
    )


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0%}"


# ------------------------------------------------------------------------------------ discovery curve
def discovery_curve(ev: Any, limit: int | None, model_dir: Path | None) -> None:
    from emotionctl.media.detection_eval import discovery_candidates

    print("\n## 2. Discovery settings: recall vs CPU per 1080p frame (1 thread)")
    print(f"{'setting':<34}{'>=32':>8}{'24-32':>8}{'16-24':>8}{'false/100':>11}{'ms/frame':>10}")
    scenes = [s.render() for s in (ev.scenes(1080)[:limit] if limit else ev.scenes(1080))]
    empties = [f.render()[0] for f in (ev.face_free(1080)[:limit] if limit else ev.face_free(1080))]
    lumas = [(rgb_to_luma(rgb), faces) for rgb, faces in scenes]
    empty_lumas = [rgb_to_luma(rgb) for rgb in empties]
    for label, detect in discovery_candidates(model_dir, quick=limit is not None).items():
        score, empty = DetectionScore(), FalseFaceScore()
        cpu: list[float] = []
        for luma, faces in lumas:
            started = time.process_time()
            found = detect(luma)
            cpu.append(time.process_time() - started)
            score.add(
                [f.box for f in faces if f.pose != "profile"],
                [d.box for d in found],
                1080,
                [f.box for f in faces if f.pose == "profile"],
            )
        for luma in empty_lumas:
            empty.add([d.box for d in detect(luma)])
        print(
            f"{label:<34}{_pct(score.recall_at_least(32)):>8}{_pct(score.recall('24-32')):>8}"
            f"{_pct(score.recall('16-24')):>8}{empty.per_100_frames:>11.2f}{1000 * statistics.median(cpu):>10.1f}"
        )


# -------------------------------------------------------------------------------------------- tracking
def decode(path: Path) -> list[tuple[float, np.ndarray]]:
    import av
    from analyzer.ingest import luma_of

    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = float(stream.time_base)
        for frame in container.decode(stream):
            out.append((frame.pts * tb, luma_of(frame).copy()))
    return out


def score_clip(
    make: Callable[[], FrameAnalyzer], clip: Any, frames: list[tuple[float, np.ndarray]]
) -> tuple[int, int, float]:
    """Analyse at 5/s; (id switches, matched observations, recall of the visible faces)."""
    analyzer = make()
    step = max(1, round(clip.fps / 5))
    t_ids, t_boxes, f_ids, f_boxes = [], [], [], []
    visible = found = 0
    for i in range(0, len(frames), step):
        t, luma = frames[i]
        faces = analyzer.finder.find(luma, t)
        truth = [f for f in clip.frames[i] if not f.hidden]
        t_ids.append([str(f.identity) for f in truth])
        t_boxes.append([f.box for f in truth])
        f_ids.append([f.track for f in faces])
        f_boxes.append([f.box for f in faces])
        visible += len(truth)
        found += len(match([f.box for f in truth], [f.box for f in faces]))
    switches, observed = id_switches(t_ids, t_boxes, f_ids, f_boxes)
    return switches, observed, found / visible if visible else math.nan


def tracking(pipes: list[Pipeline], ev: Any) -> None:
    from emotionctl.media.evalset.clips import make_crossing_clip, make_crowd_clip, make_occlusion_clip

    print("\n## 3. Tracking on stream clips at 5 analyses/s: id switches / matched observations, recall")
    clips = {
        "two faces crossing (720p)": make_crossing_clip(ev),
        "face hidden 1.5 s (720p)": make_occlusion_clip(ev),
        "crowd of 30 (1080p)": make_crowd_clip(ev),
    }
    print(f"{'clip':<28}" + "".join(f"{p.name:>24}" for p in pipes))
    for label, clip in clips.items():
        frames = decode(clip.path)
        cells = []
        for pipe in pipes:
            switches, observed, recall = score_clip(pipe.make, clip, frames)
            cells.append(f"{switches:>3} / {observed:<5} {_pct(recall):>6}")
        print(f"{label:<28}" + "".join(f"{c:>24}" for c in cells))


# ----------------------------------------------------------------------------------------- expressions
def expression_accuracy(ev: Any, model_dir: Path | None) -> None:
    from analyzer import vision

    study = _load_bench_module("expressions")  # bench/expressions.py: the samples the classifier study scores

    print("\n## 4. Expressions on the labelled photo faces (eyes from BlazeFace on the face's region)")
    relocator = vision.FaceDetector(_model_path(model_dir, "face_detector"), 1)
    samples = study.photo_samples(ev, relocator)
    labels = [s.label for s in samples]
    counts = {e: labels.count(e) for e in EMOTIONS}
    print("faces per class: " + ", ".join(f"{e} {n}" for e, n in counts.items()))
    variants: list[tuple[str, str, bool]] = [
        ("old: mini_xception, plain crops", "mini_xception", False),
        ("mini_xception, aligned", "mini_xception", True),
        ("human_emotion, aligned", "human_emotion", True),
        ("faceapi (colour), aligned", "faceapi", True),
        ("ensemble mini_xception+human_emotion", "ensemble:mini_xception+human_emotion", True),
        ("ensemble of all three", "ensemble", True),
    ]
    default = expressions.DEFAULT_CLASSIFIER
    print(f"{"classifier":<48}{'accuracy':>9}  " + " ".join(f"{e[:5]:>6}" for e in EMOTIONS))
    shown: dict[str, ConfusionMatrix] = {}
    for label, name, aligned in variants:
        classifier = expressions.load_classifier(name, model_dir, 1)
        matrix = ConfusionMatrix(EMOTIONS)
        for s in samples:
            face = s.detection if s.detection is not None else _Plain(s.hand)
            chroma = (s.planes.u, s.planes.v)
            probs = expressions.classify_faces(classifier, s.planes.y, [face], chroma=chroma, rotate=aligned)
            matrix.add(s.label, EMOTIONS[int(np.argmax(probs[0]))])
        marker = " (default)" if name == default else ""
        recalls = " ".join(f"{_pct(matrix.recall(e)):>6}" for e in EMOTIONS)
        print(f"{label + marker:<48}{matrix.accuracy:>9.1%}  {recalls}")
        if label.startswith("old") or name == default:
            shown[label + marker] = matrix
    for label, matrix in shown.items():
        print(f"\nconfusion, {label} (rows: label, columns: predicted)")
        print(matrix.format())


def _load_bench_module(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class _Plain:
    box: tuple[float, float, float, float]
    keypoints: None = None


# ------------------------------------------------------------------------------------------------ cost
def cost(pipes: list[Pipeline], ev: Any) -> None:
    print("\n## 5. CPU per analysed frame at 1080p, 5 analyses/s for 4 s (discoveries included), one core")
    scenes = ev.scenes(1080)
    single = next(s for s in scenes if s.kind == "single" and s.bucket == "96+")
    crowd = next(s for s in scenes if s.kind == "crowd30" and s.bucket == "48-96")
    print(f"{'scene':<22}" + "".join(f"{p.name:>18}" for p in pipes) + f"{'ratio':>8}")
    for label, scene in (("one face", single), ("crowd of 30", crowd)):
        rgb, _ = scene.render()
        luma = rgb_to_luma(rgb)
        ms = []
        for pipe in pipes:
            analyzer = pipe.make()
            analyzer.analyse(luma, 0.0)  # warm-up (resize plans)
            started = time.process_time()
            for i in range(1, 21):
                analyzer.analyse(luma, i / 5)
            ms.append(1000 * (time.process_time() - started) / 20)
        ratio = ms[-1] / ms[0] if ms[0] else math.nan
        print(f"{label:<22}" + "".join(f"{m:>15.1f} ms" for m in ms) + f"{ratio:>7.1f}x")


# ------------------------------------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a fifth of the scenes (a smoke run)")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin this process to (default 0)")
    parser.add_argument("--skip-curve", action="store_true", help="leave out the discovery settings curve")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    from analyzer.modelbuild import build

    model_dir = build().out_dir
    ev = build_evalset()
    limit = 46 if args.quick else None
    started = time.time()
    pipes = [Pipeline("old", old_pipeline(model_dir)), Pipeline("new", new_pipeline(model_dir))]
    results: dict[str, tuple[DetectionScore, FalseFaceScore]] = {}
    for p in pipes:
        per_height = {h: score_detection(p, ev, (h,), limit) for h in (1080, 720)}
        both = per_height[1080][0] + per_height[720][0], per_height[1080][1] + per_height[720][1]
        results[p.name] = both
        for h, score in per_height.items():
            results[f"{p.name} {h}p"] = score
    print_detection(results)
    if not args.skip_curve:
        discovery_curve(ev, limit, model_dir)
    tracking(pipes, ev)
    expression_accuracy(ev, model_dir)
    cost(pipes, ev)
    print(f"\n({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
