"""Scoring the analyzer against labels: detection recall per face size, false faces, id switches, confusion.

Used by ``bench/quality.py`` and by the tests, so both count the same way.

- A detection **matches** a labelled face when its centre lies inside the labelled box and the two sizes
  (``sqrt(w*h)``) are within a factor of two of each other: detectors draw boxes differently (BlazeFace's is
  square and loose, CenterFace's tight), and an IoU threshold would score those conventions, not the finding.
  Matching is one-to-one, closest centres first.
- Face sizes are bucketed by the labelled **height** scaled to a 1080p frame (``height * 1080 / frame
  height``), so 720p and 1080p scenes share the buckets of the issue: 16–24, 24–32, 32–48, 48–96, ≥ 96 px.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from analyzer.geometry import Box

SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("16-24", 16.0, 24.0),
    ("24-32", 24.0, 32.0),
    ("32-48", 32.0, 48.0),
    ("48-96", 48.0, 96.0),
    (">=96", 96.0, math.inf),
)


def size_bucket(box: Box, frame_height: int) -> str | None:
    """The bucket of a labelled face (its height at 1080p), or None below 16 px."""
    height = (box[3] - box[1]) * 1080.0 / frame_height
    for name, lo, hi in SIZE_BUCKETS:
        if lo <= height < hi:
            return name
    return None


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _size(box: Box) -> float:
    return math.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1e-9))


def matches(truth: Box, found: Box) -> bool:
    cx, cy = _centre(found)
    if not (truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3]):
        return False
    ratio = _size(found) / _size(truth)
    return 0.5 <= ratio <= 2.0


def match(truths: Sequence[Box], found: Sequence[Box]) -> list[tuple[int, int]]:
    """One-to-one pairs ``(truth index, found index)``, closest centres first."""
    pairs: list[tuple[float, int, int]] = []
    for ti, t in enumerate(truths):
        tc = _centre(t)
        for fi, f in enumerate(found):
            if matches(t, f):
                fc = _centre(f)
                pairs.append((math.hypot(tc[0] - fc[0], tc[1] - fc[1]), ti, fi))
    pairs.sort()
    used_t: set[int] = set()
    used_f: set[int] = set()
    out: list[tuple[int, int]] = []
    for _, ti, fi in pairs:
        if ti in used_t or fi in used_f:
            continue
        used_t.add(ti)
        used_f.add(fi)
        out.append((ti, fi))
    return out


@dataclass
class DetectionScore:
    """Recall per size bucket and false faces, accumulated over frames."""

    found: dict[str, int] = field(default_factory=lambda: {name: 0 for name, _, _ in SIZE_BUCKETS})
    total: dict[str, int] = field(default_factory=lambda: {name: 0 for name, _, _ in SIZE_BUCKETS})
    false_faces: int = 0  # detections matching no labelled face (in frames with faces)
    frames: int = 0

    def add(self, truths: Sequence[Box], found: Sequence[Box], frame_height: int, ignored: Sequence[Box] = ()) -> None:
        """One frame: the labelled faces that count, what was found, and faces that do not count either way
        (e.g. profiles: outside the product's range, but not a false face when found)."""
        self.frames += 1
        pairs = match(truths, found)
        matched_t = {ti for ti, _ in pairs}
        for ti, t in enumerate(truths):
            bucket = size_bucket(t, frame_height)
            if bucket is None:
                continue
            self.total[bucket] += 1
            if ti in matched_t:
                self.found[bucket] += 1
        # a detection of a face smaller than the smallest bucket is not false: it is just not scored
        uncounted = [t for t in truths if size_bucket(t, frame_height) is None] + list(ignored)
        matched_f = {fi for _, fi in pairs} | {fi for _, fi in match(uncounted, found)}
        self.false_faces += sum(1 for fi in range(len(found)) if fi not in matched_f)

    def recall(self, bucket: str) -> float:
        return self.found[bucket] / self.total[bucket] if self.total[bucket] else math.nan

    def __add__(self, other: DetectionScore) -> DetectionScore:
        """Both scores' frames together (e.g. the 720p and the 1080p scenes)."""
        return DetectionScore(
            {k: self.found[k] + other.found[k] for k in self.found},
            {k: self.total[k] + other.total[k] for k in self.total},
            self.false_faces + other.false_faces,
            self.frames + other.frames,
        )

    def recall_at_least(self, height: float) -> float:
        names = [name for name, lo, _ in SIZE_BUCKETS if lo >= height]
        total = sum(self.total[n] for n in names)
        return sum(self.found[n] for n in names) / total if total else math.nan


@dataclass
class FalseFaceScore:
    """Detections on face-free frames."""

    frames: int = 0
    faces: int = 0

    def add(self, found: Sequence[Box]) -> None:
        self.frames += 1
        self.faces += len(found)

    def __add__(self, other: FalseFaceScore) -> FalseFaceScore:
        return FalseFaceScore(self.frames + other.frames, self.faces + other.faces)

    @property
    def per_100_frames(self) -> float:
        return 100.0 * self.faces / self.frames if self.frames else math.nan


def id_switches(
    truth_ids: Iterable[Sequence[str]],
    truth_boxes: Iterable[Sequence[Box]],
    found_ids: Iterable[Sequence[str]],
    found_boxes: Iterable[Sequence[Box]],
) -> tuple[int, int]:
    """Identity switches over a sequence of frames: ``(switches, matched observations)``.

    A switch is counted when a labelled identity, matched in a frame, carries another track id than the one it
    carried when it was last matched (the CLEAR-MOT definition of an id switch).
    """
    last: dict[str, str] = {}
    switches = 0
    observed = 0
    for t_ids, t_boxes, f_ids, f_boxes in zip(truth_ids, truth_boxes, found_ids, found_boxes, strict=True):
        for ti, fi in match(list(t_boxes), list(f_boxes)):
            observed += 1
            person, track = t_ids[ti], f_ids[fi]
            if person in last and last[person] != track:
                switches += 1
            last[person] = track
    return switches, observed


@dataclass
class ConfusionMatrix:
    """Rows: the labelled class; columns: the predicted one (both in ``labels`` order)."""

    labels: tuple[str, ...]
    counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros((len(self.labels), len(self.labels)), np.int64)

    def add(self, truth: str, predicted: str) -> None:
        self.counts[self.labels.index(truth), self.labels.index(predicted)] += 1

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.counts)) / self.total if self.total else math.nan

    def recall(self, label: str) -> float:
        i = self.labels.index(label)
        row = int(self.counts[i].sum())
        return float(self.counts[i, i]) / row if row else math.nan

    def format(self) -> str:
        width = max(len(x) for x in self.labels)
        head = " " * (width + 2) + " ".join(f"{x[:5]:>5}" for x in self.labels) + "  recall"
        lines = [head]
        for i, label in enumerate(self.labels):
            row = " ".join(f"{int(v):>5}" for v in self.counts[i])
            r = self.recall(label)
            lines.append(f"{label:>{width}}  {row}  {'  -' if math.isnan(r) else f'{r:5.0%}'}")
        return "\n".join(lines)
