"""One stable id per person across frames.

Detections of a frame are associated with the live tracks by a greedy assignment on a cost that mixes the
centre distance (normalised by the face size, measured from a constant-velocity prediction), the IoU and,
when the caller gives one, an appearance descriptor per box (a small normalised luma patch: two faces that
pass each other differ in looks even where their boxes overlap). A face missing for up to
``max_missing_seconds`` keeps its id (the distance it may have moved grows with the time it was missing);
after a longer absence it gets a new one. Ids are ``f1``, ``f2``, … in order of first appearance, per tracker
(one tracker per session).

The greedy assignment over all plausible pairs, cheapest first, is exact enough for the few dozen faces of a
crowd and costs well under a millisecond; no optimiser is needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .geometry import Box


@dataclass(slots=True)
class Track:
    id: str
    cx: float
    cy: float
    w: float
    h: float
    vx: float  # px per second, smoothed
    vy: float
    last_seen: float
    hits: int = 1
    appearance: np.ndarray | None = None  # unit-norm descriptor, smoothed over the observations

    def predict(self, now: float) -> tuple[float, float]:
        dt = min(max(0.0, now - self.last_seen), 1.0)  # do not extrapolate a stale velocity far
        return self.cx + self.vx * dt, self.cy + self.vy * dt

    @property
    def size(self) -> float:
        return math.sqrt(max(self.w * self.h, 1e-6))


def _iou(a: Box, b: Box) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Associates each frame's face boxes with persistent track ids.

    ``max_distance``: the largest accepted jump of the face centre between the prediction and a detection,
    in face sizes (``sqrt(w*h)``). ``max_scale_change``: largest accepted ratio of face sizes.
    ``velocity_smoothing``: weight of the newest velocity measurement (0 disables prediction).
    ``max_speed``: cap of the velocity used for prediction, in face sizes per second.
    ``missing_reach``: extra accepted distance, in face sizes per second a track has been missing.
    ``appearance_weight``: weight of the appearance term (``1 - cosine`` of the descriptors, 0..2).
    ``appearance_smoothing``: weight of the newest descriptor in a track's running one.
    """

    def __init__(
        self,
        *,
        max_missing_seconds: float = 2.0,
        max_distance: float = 1.0,
        missing_reach: float = 1.0,
        appearance_weight: float = 1.0,
        appearance_smoothing: float = 0.3,
        max_scale_change: float = 1.8,
        velocity_smoothing: float = 0.5,
        max_speed: float = 4.0,
        prefix: str = "f",
    ) -> None:
        if max_missing_seconds < 0:
            raise ValueError("max_missing_seconds must be >= 0")
        self.max_missing_seconds = max_missing_seconds
        self.max_distance = max_distance
        self.missing_reach = missing_reach
        self.appearance_weight = appearance_weight
        self.appearance_smoothing = appearance_smoothing
        self.max_scale_change = max_scale_change
        self.velocity_smoothing = velocity_smoothing
        self.max_speed = max_speed
        self._prefix = prefix
        self._next = 1
        self._tracks: list[Track] = []

    @property
    def tracks(self) -> list[Track]:
        """Live tracks (seen within ``max_missing_seconds``), oldest first."""
        return list(self._tracks)

    @property
    def issued(self) -> int:
        """How many ids this tracker has handed out."""
        return self._next - 1

    def reset(self) -> None:
        """Forget live tracks (e.g. after a long stream interruption); ids keep counting up."""
        self._tracks.clear()

    def _pairs(
        self, boxes: Sequence[Box], now: float, appearances: Sequence[np.ndarray] | None
    ) -> list[tuple[float, int, int]]:
        """``(cost, track index, box index)`` of every plausible pair. Per track: its prediction; per box: its
        centre and size; the appearance term for all pairs in one matrix product (a crowd is ~1,000 pairs per
        frame: the per-pair work is a few float operations)."""
        geometry = []
        for x0, y0, x1, y1 in boxes:
            geometry.append(((x0 + x1) / 2.0, (y0 + y1) / 2.0, math.sqrt(max((x1 - x0) * (y1 - y0), 1e-6))))
        similarity = None
        if appearances is not None and len(appearances) and any(tr.appearance is not None for tr in self._tracks):
            known = np.stack([tr.appearance if tr.appearance is not None else np.zeros_like(appearances[0])
                              for tr in self._tracks])
            similarity = (known @ np.stack(appearances).T).tolist()
        pairs: list[tuple[float, int, int]] = []
        for ti, track in enumerate(self._tracks):
            px, py = track.predict(now)
            track_size = track.size
            # the prediction's box, for the overlap term
            predicted = (px - track.w / 2, py - track.h / 2, px + track.w / 2, py + track.h / 2)
            missing = max(0.0, now - track.last_seen - 0.5)  # beyond a couple of analysis intervals
            reach = self.max_distance + self.missing_reach * missing
            looks = similarity[ti] if similarity is not None and track.appearance is not None else None
            for di, (cx, cy, size) in enumerate(geometry):
                ratio = max(size, track_size) / min(size, track_size)
                if ratio > self.max_scale_change:
                    continue
                dist = math.hypot(cx - px, cy - py) / max(size, track_size)
                if dist > reach:
                    continue
                cost = dist + (1.0 - _iou(predicted, boxes[di])) * 0.5 + (ratio - 1.0) * 0.25
                if looks is not None:
                    cost += self.appearance_weight * (1.0 - looks[di])
                pairs.append((cost, ti, di))
        return pairs

    def update(
        self,
        boxes: Sequence[Box],
        now: float | None = None,
        appearances: Sequence[np.ndarray] | None = None,
    ) -> list[str]:
        """Track ids for ``boxes`` (same order). ``now``: the frame's time in seconds (default: monotonic clock).

        ``appearances``: one unit-norm descriptor per box (same length for all), or None.
        """
        t = time.monotonic() if now is None else float(now)
        if appearances is not None and len(appearances) != len(boxes):
            raise ValueError(f"{len(appearances)} appearance descriptors for {len(boxes)} boxes")
        # forget tracks missing for too long: a face coming back after that is a new observation
        self._tracks = [tr for tr in self._tracks if t - tr.last_seen <= self.max_missing_seconds]
        ids: list[str | None] = [None] * len(boxes)
        if self._tracks and boxes:
            pairs = self._pairs(boxes, t, appearances)
            pairs.sort()
            used_tracks: set[int] = set()
            for _, ti, di in pairs:
                if ti in used_tracks or ids[di] is not None:
                    continue
                used_tracks.add(ti)
                self._refresh(self._tracks[ti], boxes[di], t, None if appearances is None else appearances[di])
                ids[di] = self._tracks[ti].id
        out: list[str] = []
        for di, box in enumerate(boxes):
            track_id = ids[di]
            if track_id is None:
                track_id = self._start(box, t, None if appearances is None else appearances[di])
            out.append(track_id)
        return out

    def _start(self, box: Box, now: float, appearance: np.ndarray | None = None) -> str:
        x0, y0, x1, y1 = box
        track = Track(
            id=f"{self._prefix}{self._next}",
            cx=(x0 + x1) / 2.0,
            cy=(y0 + y1) / 2.0,
            w=x1 - x0,
            h=y1 - y0,
            vx=0.0,
            vy=0.0,
            last_seen=now,
            appearance=appearance,
        )
        self._next += 1
        self._tracks.append(track)
        return track.id

    def _refresh(self, track: Track, box: Box, now: float, appearance: np.ndarray | None = None) -> None:
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        dt = now - track.last_seen
        if dt > 1e-3 and self.velocity_smoothing > 0:
            a = self.velocity_smoothing
            vx = (1 - a) * track.vx + a * (cx - track.cx) / dt
            vy = (1 - a) * track.vy + a * (cy - track.cy) / dt
            limit = self.max_speed * math.sqrt(max((x1 - x0) * (y1 - y0), 1e-6))
            speed = math.hypot(vx, vy)
            if speed > limit:  # timestamps too close together (or a detector jitter): do not extrapolate wildly
                vx, vy = vx * limit / speed, vy * limit / speed
            track.vx, track.vy = vx, vy
        track.cx, track.cy, track.w, track.h = cx, cy, x1 - x0, y1 - y0
        track.last_seen = now
        track.hits += 1
        if appearance is not None:
            if track.appearance is None:
                track.appearance = appearance
            else:
                mixed = (1.0 - self.appearance_smoothing) * track.appearance + self.appearance_smoothing * appearance
                norm = float(np.linalg.norm(mixed))
                track.appearance = mixed / norm if norm > 0 else appearance
