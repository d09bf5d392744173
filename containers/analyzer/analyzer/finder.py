"""Detect, then track: every face of a stream, frame after frame, at a cost that grows with the faces, not the pixels.

- A **discovery** detector looks at the whole frame every ``discovery_interval`` seconds of stream time (and
  at the first frame): it is the expensive part, and what finds small faces and newcomers.
- Between discoveries, a **re-locator** finds each known face again on a small crop around the box its track
  predicts (cheap, and batched over the faces).
- Both kinds of proposal are merged (a re-located box wins over a discovered one of the same face: its
  geometry and landmarks are the ones the tracks were built on) and handed to the
  :class:`~analyzer.tracker.FaceTracker`, the only owner of identities, with an appearance descriptor per box.

On a discovery frame the known faces are re-located too, so a face the discovery detector misses for a frame
(turned away, blurred) keeps its track. A face seen in the previous frame that the re-locator cannot find again
(it moved further than its crop: a jump after skipped frames, a fast turn) makes the discovery run on this frame,
whatever the interval — once: a face that stays missing does not make it run again. Without a re-locator the
discovery detector runs on every frame.

A session that cannot keep up (``spread_discovery``) spreads each discovery over successive analysed frames
when the detector runs the frame in parts (:class:`PartedDiscovery`: CenterFace's coarse pass and regions at
1080p): no single frame pays the whole pass, so a worker starved of CPU still analyses a frame every wall
second. A discovery then takes that many analysed frames (5 at 1080p) instead of one. A lost face is then looked
for at once, in the parts near where it was (the coarse pass and the regions around it), not the whole frame.

Discovered faces the discovery detector is unsure of (a score below ``confirm_below``) become tracks only when the
re-locator, a second detector, finds a face on a crop around them.

One setting decides the smallest face: ``min_face`` as a fraction of the frame height (0.022 = 24 px at 1080p).
The discovery detector is asked for faces of at least that size (it picks its working resolution from it) and
smaller proposals are dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np

from .geometry import Box
from .tracker import FaceTracker, Track, _iou

log = logging.getLogger(__name__)

Point = tuple[float, float]

DEFAULT_DISCOVERY_INTERVAL = 2.0  # s of stream time: a new face is found within this (issue 8: within 2 s)
DEFAULT_MIN_FACE = 0.022  # of the frame height: 24 px at 1080p, 16 px at 720p
DEFAULT_MAX_FACES = 50
APPEARANCE_SIZE = 12  # descriptor: a 12x12 luma patch of the face's centre, zero-mean, unit-norm
# a proposal whose centre falls inside a kept box (or that overlaps it this much) is the same face
MERGE_IOU = 0.3
# A face whose pixels did not change since the last analysis keeps its box without a re-location (a still
# audience or a webinar grid costs almost nothing), but is re-located at least every STILL_REFRESH seconds.
STILL_SIMILARITY = 0.97  # cosine of the appearance descriptors at the same box
STILL_REFRESH = 1.0


class FaceLike(Protocol):
    """What a detector returns for one face (``analyzer.vision.Detection``)."""

    @property
    def box(self) -> Box: ...

    @property
    def score(self) -> float: ...

    @property
    def keypoints(self) -> tuple[Point, ...] | None: ...


class DiscoveryDetector(Protocol):
    """Full-frame detection of faces of at least ``min_face`` px height."""

    def detect(self, luma: np.ndarray, min_face: float = 0.0) -> Sequence[FaceLike]: ...


@runtime_checkable
class PartedDiscovery(DiscoveryDetector, Protocol):
    """A discovery detector that can run one detection as ``discovery_parts`` calls of ``detect_part``."""

    def discovery_parts(self, h: int, w: int, min_face: float = 0.0) -> int: ...

    def detect_part(self, luma: np.ndarray, part: int, min_face: float = 0.0) -> Sequence[FaceLike]: ...

    def parts_near(self, h: int, w: int, boxes: Sequence[Box], min_face: float = 0.0) -> list[int]: ...


class Relocator(Protocol):
    """Each of ``boxes`` found again in the frame (the face on a crop around it that overlaps it most), or None."""

    def relocate_many(self, luma: np.ndarray, boxes: Sequence[Box]) -> Sequence[FaceLike | None]: ...


@dataclass(frozen=True, slots=True)
class FoundFace:
    """A face in a frame, with its track id."""

    track: str
    box: Box
    score: float
    keypoints: tuple[Point, ...] | None


@dataclass(slots=True)
class FinderStats:
    discoveries: int = 0  # full-frame discoveries (whole, or spread over parts)
    discovery_parts: int = 0  # parts of spread discoveries run
    relocations: int = 0  # faces looked for on a crop
    relocated: int = 0  # ... and found
    held: int = 0  # faces that had not moved: kept their box without a re-location
    unsure: int = 0  # new discovered faces scoring below ``confirm_below``, looked for with the re-locator
    confirmed: int = 0  # ... and found by it (the others were dropped)


@dataclass(frozen=True, slots=True)
class _Held:
    """A still face's last box, kept for this frame; ``verified`` is when a detector last saw it; ``descriptor``
    its appearance in this frame, once :meth:`FaceFinder._still` has measured it (not measured twice)."""

    box: Box
    score: float
    keypoints: tuple[Point, ...] | None
    verified: float
    descriptor: np.ndarray | None = None


def _same_face(kept: Box, other: Box) -> bool:
    cx, cy = (other[0] + other[2]) / 2.0, (other[1] + other[3]) / 2.0
    inside = kept[0] <= cx <= kept[2] and kept[1] <= cy <= kept[3]
    return inside or _iou(kept, other) > MERGE_IOU


def appearance(luma: np.ndarray, box: Box) -> np.ndarray:
    """A unit-norm descriptor of the face in ``box``: the central part of the box sampled on a small grid.

    A grid twice as fine as ``APPEARANCE_SIZE`` is sampled (no resize of the whole crop) and averaged 2x2, then
    made zero-mean and unit-norm: robust to brightness changes and small shifts, different enough between two
    people to keep crossing tracks apart.
    """
    h, w = luma.shape
    x0, y0, x1, y1 = box
    # the inner 70 %: eyes, nose, mouth, without the background at the corners
    mx, my = (x1 - x0) * 0.15, (y1 - y0) * 0.15
    n = APPEARANCE_SIZE
    xs = np.clip(np.linspace(x0 + mx, x1 - mx, 2 * n), 0, w - 1).astype(np.intp)
    ys = np.clip(np.linspace(y0 + my, y1 - my, 2 * n), 0, h - 1).astype(np.intp)
    fine = luma[ys[:, None], xs[None, :]].astype(np.float32)
    patch = fine.reshape(n, 2, n, 2).mean(axis=(1, 3)).ravel()
    patch -= patch.mean()
    norm = float(np.linalg.norm(patch))
    if norm < 1e-3:  # a flat patch: no information
        return np.full(patch.shape, 1.0 / math.sqrt(patch.size), np.float32)
    return patch / norm


class FaceFinder:
    """Discovery at a low rate, re-location at the analysis rate, one tracker: faces with stable ids per frame.

    One instance per stream (it owns the tracker). The detectors may be shared between finders of one thread.
    """

    def __init__(
        self,
        discovery: DiscoveryDetector,
        relocator: Relocator | None = None,
        tracker: FaceTracker | None = None,
        *,
        discovery_interval: float = DEFAULT_DISCOVERY_INTERVAL,
        min_face: float = DEFAULT_MIN_FACE,
        max_faces: int = DEFAULT_MAX_FACES,
        confirm_below: float = 0.0,
    ) -> None:
        if discovery_interval < 0:
            raise ValueError(f"discovery_interval must be >= 0, got {discovery_interval}")
        if not 0.0 <= min_face < 1.0:
            raise ValueError(f"min_face is a fraction of the frame height in [0, 1), got {min_face}")
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.discovery = discovery
        self.relocator = relocator
        self.tracker = tracker or FaceTracker()
        self.discovery_interval = discovery_interval if relocator is not None else 0.0
        self.min_face = min_face
        self.max_faces = max_faces
        if confirm_below > 0.0 and relocator is None:
            raise ValueError("confirm_below needs a relocator to confirm unsure discoveries with")
        self.confirm_below = confirm_below
        self.stats = FinderStats()
        self._last_discovery: float | None = None
        self._previous: float | None = None  # the stream time of the previous frame
        self._last: dict[str, _Held] = {}  # per track: its box in the previous frame and when it was verified
        self.spread_discovery = False  # run a discovery in parts on successive frames (a session under pressure)
        self._next_part: int | None = None  # the part of a spread discovery the next frame runs

    def reset(self) -> None:
        """Forget the faces (ids keep counting up) and discover again at the next frame."""
        self.tracker.reset()
        self._last_discovery = None
        self._next_part = None
        self._previous = None
        self._last.clear()

    def min_face_px(self, frame_height: int) -> float:
        return self.min_face * frame_height

    def _discovery_due(self, now: float) -> bool:
        last = self._last_discovery
        return last is None or now < last or now - last >= self.discovery_interval - 1e-6

    def find(self, luma: np.ndarray, now: float) -> list[FoundFace]:
        """The faces in ``luma`` (``uint8[H, W]``) at stream time ``now`` (seconds), best first, with track ids."""
        min_px = self.min_face_px(luma.shape[0])
        proposals: list[FaceLike] = []
        lost_boxes: list[Box] = []  # faces seen in the previous frame that the re-locator could not find again
        if self.relocator is not None:
            moved = []
            for track in self.tracker.tracks:
                held = self._still(luma, track, now)
                if held is not None:
                    proposals.append(held)
                else:
                    moved.append(track)
            self.stats.held += len(proposals)
            if moved:
                predicted = [_predicted_box(track, now) for track in moved]
                found = self.relocator.relocate_many(luma, predicted)
                self.stats.relocations += len(predicted)
                relocated = [f for f in found if f is not None]
                self.stats.relocated += len(relocated)
                proposals.extend(sorted(relocated, key=lambda f: -f.score))
                lost_boxes = [
                    box
                    for t, box, f in zip(moved, predicted, found, strict=True)
                    if f is None and t.last_seen == self._previous
                ]
        discovered: Sequence[FaceLike] | None = None
        spread = self.spread_discovery and isinstance(self.discovery, PartedDiscovery)
        if lost_boxes and spread:
            # under pressure, a lost face is looked for at once in the parts of the frame near where it was
            discovered = self._discover_near(luma, lost_boxes, min_px)
        elif lost_boxes or (self._next_part is None and self._discovery_due(now)):
            self._last_discovery = now
            self.stats.discoveries += 1
            if spread and not lost_boxes:
                self._next_part = 0
            else:  # whole (it supersedes a spread discovery under way)
                self._next_part = None
                discovered = self.discovery.detect(luma, min_face=min_px)
        if discovered is None and self._next_part is not None:
            discovered = self._discover_part(luma, min_px)
        if discovered is not None:
            discovered = sorted(discovered, key=lambda f: -f.score)
            proposals.extend(self._confirmed(luma, discovered, proposals))

        kept: list[FaceLike] = []
        for face in proposals:
            _, y0, _, y1 = face.box
            if y1 - y0 < min_px * 0.8:  # a little slack: the same face measures a few % differently per detector
                continue
            if any(_same_face(k.box, face.box) for k in kept):
                continue
            kept.append(face)
            if len(kept) >= self.max_faces:
                break
        boxes = [f.box for f in kept]
        descriptors = [
            f.descriptor if isinstance(f, _Held) and f.descriptor is not None else appearance(luma, f.box) for f in kept
        ]
        ids = self.tracker.update(boxes, now, descriptors)
        self._previous = now
        self._last = {
            track: _Held(f.box, f.score, f.keypoints, f.verified if isinstance(f, _Held) else now)
            for track, f in zip(ids, kept, strict=True)
        }
        return [FoundFace(track, f.box, f.score, f.keypoints) for track, f in zip(ids, kept, strict=True)]

    def _discover_part(self, luma: np.ndarray, min_px: float) -> Sequence[FaceLike]:
        """The next part of the spread discovery in progress (the last one ends it)."""
        assert isinstance(self.discovery, PartedDiscovery) and self._next_part is not None
        h, w = luma.shape
        parts = self.discovery.discovery_parts(h, w, min_px)
        part = self._next_part % parts  # (a new frame size mid-way has other parts: carry on with its own)
        self._next_part = part + 1 if part + 1 < parts else None
        self.stats.discovery_parts += 1
        return self.discovery.detect_part(luma, part, min_face=min_px)

    def _discover_near(self, luma: np.ndarray, boxes: Sequence[Box], min_px: float) -> list[FaceLike]:
        """The faces the parts of the frame near ``boxes`` hold (a parted discovery detector)."""
        assert isinstance(self.discovery, PartedDiscovery)
        h, w = luma.shape
        parts = self.discovery.parts_near(h, w, boxes, min_face=min_px)
        self.stats.discovery_parts += len(parts)
        return [face for part in parts for face in self.discovery.detect_part(luma, part, min_face=min_px)]

    def _confirmed(
        self, luma: np.ndarray, discovered: Sequence[FaceLike], known: Sequence[FaceLike]
    ) -> list[FaceLike]:
        """The discovered faces, where each new one scoring below ``confirm_below`` is replaced by the
        re-locator's detection on a crop around it, or dropped when the re-locator finds no face there (a
        second, independent detector: low-score discoveries find more small faces, the confirmation keeps
        textures from becoming faces). Faces that are known tracks need no confirmation (they merge away)."""
        if self.confirm_below <= 0.0 or self.relocator is None:
            return list(discovered)
        unsure = [
            i
            for i, face in enumerate(discovered)
            if face.score < self.confirm_below and not any(_same_face(k.box, face.box) for k in known)
        ]
        if not unsure:
            return list(discovered)
        found = self.relocator.relocate_many(luma, [discovered[i].box for i in unsure])
        self.stats.unsure += len(unsure)
        replaced: dict[int, FaceLike | None] = dict(zip(unsure, found, strict=True))
        self.stats.confirmed += sum(f is not None for f in found)
        out: list[FaceLike] = []
        for i, face in enumerate(discovered):
            if i not in replaced:
                out.append(face)
            elif (confirmed := replaced[i]) is not None:
                out.append(confirmed)
        return out

    def _still(self, luma: np.ndarray, track: Track, now: float) -> _Held | None:
        """The track's last box when the face was in the previous frame, was verified by a detector within
        ``STILL_REFRESH`` s and looks the same there now; else None (re-locate it)."""
        last = self._last.get(track.id)
        if last is None or self._previous is None or track.last_seen != self._previous or track.appearance is None:
            return None
        if not 0.0 <= now - last.verified < STILL_REFRESH:
            return None
        descriptor = appearance(luma, last.box)
        if float(np.dot(descriptor, track.appearance)) < STILL_SIMILARITY:
            return None
        return replace(last, descriptor=descriptor)


def _predicted_box(track: Track, now: float) -> Box:
    cx, cy = track.predict(now)
    return (cx - track.w / 2.0, cy - track.h / 2.0, cx + track.w / 2.0, cy + track.h / 2.0)
