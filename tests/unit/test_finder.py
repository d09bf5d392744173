"""FaceFinder with scripted detectors: discovery schedule, re-location between discoveries, merging, limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from analyzer.finder import FaceFinder, appearance
from analyzer.geometry import Box


@dataclass(frozen=True)
class Face:
    box: Box
    score: float = 0.9
    keypoints: tuple[tuple[float, float], ...] | None = None


def square(cx: float, cy: float, size: float = 40.0) -> Box:
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


class ScriptedDiscovery:
    """Returns the faces it is told are in the scene; records each call's min_face."""

    def __init__(self) -> None:
        self.scene: list[Box] = []
        self.calls: list[float] = []

    def detect(self, luma: np.ndarray, min_face: float = 0.0) -> list[Face]:
        self.calls.append(min_face)
        return [Face(b, 0.8) for b in self.scene]


class ScriptedRelocator:
    """Finds the scene face nearest to each asked box when it is within one face size."""

    def __init__(self, discovery: ScriptedDiscovery) -> None:
        self.discovery = discovery
        self.asked: list[int] = []

    def relocate_many(self, luma: np.ndarray, boxes: Sequence[Box]) -> list[Face | None]:
        self.asked.append(len(boxes))
        out: list[Face | None] = []
        for b in boxes:
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            best = None
            for s in self.discovery.scene:
                d = np.hypot((s[0] + s[2]) / 2 - cx, (s[1] + s[3]) / 2 - cy)
                if d < (b[2] - b[0]) and (best is None or d < best[0]):
                    best = (d, s)
            out.append(Face(best[1], 0.95, ((best[1][0], best[1][1]), (best[1][2], best[1][1]))) if best else None)
        return out


FRAME = np.zeros((1080, 1920), np.uint8)


def noisy(seed: int) -> np.ndarray:
    """A frame whose every pixel changes from one seed to the next: no face looks still."""
    return np.random.default_rng(seed).integers(0, 256, (1080, 1920), dtype=np.uint8)


def make(interval: float = 1.0, **kw: float) -> tuple[FaceFinder, ScriptedDiscovery, ScriptedRelocator]:
    discovery = ScriptedDiscovery()
    relocator = ScriptedRelocator(discovery)
    return FaceFinder(discovery, relocator, discovery_interval=interval, **kw), discovery, relocator  # type: ignore[arg-type]


def test_discovery_runs_at_its_interval_and_relocation_in_between() -> None:
    # Given a finder discovering once a second, analysed 5 times a second
    finder, discovery, relocator = make(1.0)
    discovery.scene = [square(500, 500), square(900, 500)]
    tracks = []
    for i in range(11):
        tracks.append(sorted(f.track for f in finder.find(noisy(i), i / 5)))
    # Then discovery ran at t = 0, 1, 2 only
    assert len(discovery.calls) == 3
    # And the two faces were re-located on every frame after the first
    assert relocator.asked == [2] * 10
    assert tracks == [["f1", "f2"]] * 11
    assert finder.stats.relocated == 20


def test_a_newcomer_is_found_at_the_next_discovery() -> None:
    finder, discovery, _ = make(1.0)
    discovery.scene = [square(500, 500)]
    finder.find(FRAME, 0.0)
    discovery.scene.append(square(1500, 300))  # appears at 0.1 s
    seen = {round(t / 5, 1): len(finder.find(FRAME, t / 5)) for t in range(1, 6)}
    assert seen == {0.2: 1, 0.4: 1, 0.6: 1, 0.8: 1, 1.0: 2}


def test_a_face_the_relocator_loses_is_looked_for_by_a_discovery_at_once_and_only_once() -> None:
    # Given a face tracked between discoveries 10 s apart
    finder, discovery, _ = make(10.0)
    discovery.scene = [square(500, 500)]
    assert [f.track for f in finder.find(noisy(0), 0.0)] == ["f1"]
    assert [f.track for f in finder.find(noisy(1), 0.2)] == ["f1"]
    # When it jumps further than its re-location crop (frames were skipped to catch up)
    discovery.scene = [square(1400, 500)]
    # Then a discovery runs on that very frame and the face keeps being seen
    assert len(finder.find(noisy(2), 0.4)) == 1
    assert len(discovery.calls) == 2
    # And when the face is gone, one discovery looks for it, not one per frame
    discovery.scene = []
    for i in range(3, 8):
        assert finder.find(noisy(i), i / 5) == []
    assert len(discovery.calls) == 3


class PartedScriptedDiscovery(ScriptedDiscovery):
    """Runs the frame in three vertical strips: part k finds the scene faces whose centre is in strip k."""

    PARTS = 3

    def __init__(self) -> None:
        super().__init__()
        self.parts_run: list[int] = []

    def discovery_parts(self, h: int, w: int, min_face: float = 0.0) -> int:
        return self.PARTS

    def detect_part(self, luma: np.ndarray, part: int, min_face: float = 0.0) -> list[Face]:
        self.parts_run.append(part)
        width = luma.shape[1] / self.PARTS
        return [Face(b, 0.8) for b in self.scene if part * width <= (b[0] + b[2]) / 2 < (part + 1) * width]

    def parts_near(self, h: int, w: int, boxes: Sequence[Box], min_face: float = 0.0) -> list[int]:
        width = w / self.PARTS
        return sorted({k for b in boxes for k in range(self.PARTS)
                       if k * width < b[2] + (b[2] - b[0]) and b[0] - (b[2] - b[0]) < (k + 1) * width})


def test_a_spread_discovery_runs_one_part_per_frame_and_finds_every_face() -> None:
    # Given a finder under pressure whose discovery detector runs the frame in three parts
    discovery = PartedScriptedDiscovery()
    finder = FaceFinder(discovery, ScriptedRelocator(discovery), discovery_interval=2.0)  # type: ignore[arg-type]
    finder.spread_discovery = True
    discovery.scene = [square(300, 500), square(1000, 500), square(1700, 500)]
    # When frames are analysed 5 times a second
    counts = [len(finder.find(noisy(i), i / 5)) for i in range(13)]
    # Then each frame runs one part (never the whole detect), the faces come in strip by strip and stay tracked
    assert discovery.calls == [] and discovery.parts_run == [0, 1, 2, 0, 1, 2]
    assert counts[:3] == [1, 2, 3] and set(counts[3:]) == {3}
    assert finder.stats.discoveries == 2 and finder.stats.discovery_parts == 6
    # And a face the re-locator loses (a jump) is looked for at once, in the part of the frame near where it was
    discovery.scene[2] = square(1450, 500)
    assert len(finder.find(noisy(13), 13 / 5)) == 3
    assert discovery.calls == [] and discovery.parts_run[6:] == [2]
    # And without pressure the discovery is whole again, a lost face's too
    finder.spread_discovery = False
    discovery.scene[2] = square(1700, 500)
    assert len(finder.find(noisy(14), 14 / 5)) == 3 and len(discovery.calls) == 1


def test_a_relocated_face_is_not_doubled_by_the_discovery_of_it() -> None:
    finder, discovery, _ = make(0.0)  # discovery on every frame, re-location too
    discovery.scene = [square(500, 500)]
    for i in range(5):
        faces = finder.find(noisy(i), i / 5)
        assert [f.track for f in faces] == ["f1"]
    # the kept proposal is the re-located one (its keypoints)
    assert faces[0].keypoints is not None


def test_a_still_face_keeps_its_box_and_is_relocated_once_a_second() -> None:
    # Given a still, textured frame with two faces, analysed 5 times a second for 3 s (discovery every 10 s)
    finder, discovery, relocator = make(10.0)
    frame = noisy(0)
    discovery.scene = [square(500, 500, 60), square(1200, 500, 60)]
    for i in range(16):
        assert sorted(f.track for f in finder.find(frame, i / 5)) == ["f1", "f2"]
    # Then the faces were re-located only when their last verification was 1 s old (t = 1, 2, 3)
    assert relocator.asked == [2, 2, 2]
    assert finder.stats.held == 2 * 12
    # And a face whose pixels change is re-located at once
    frame = frame.copy()
    frame[470:530, 470:530] = 255 - frame[470:530, 470:530]
    finder.find(frame, 16 / 5)
    assert relocator.asked[-1] == 1


def test_min_face_is_one_fraction_of_the_frame_height() -> None:
    finder, discovery, _ = make(1.0, min_face=0.022)
    discovery.scene = [square(300, 300, 30), square(900, 300, 12)]  # 12 px < 24 px at 1080p
    faces = finder.find(FRAME, 0.0)
    assert discovery.calls == [pytest.approx(0.022 * 1080)]
    assert [f.box for f in faces] == [square(300, 300, 30)]


def test_at_most_max_faces() -> None:
    finder, discovery, _ = make(1.0, max_faces=50)
    discovery.scene = [square(60 + 60 * (i % 30), 60 + 100 * (i // 30), 40) for i in range(60)]
    assert len(finder.find(FRAME, 0.0)) == 50


def test_without_a_relocator_discovery_runs_on_every_frame() -> None:
    discovery = ScriptedDiscovery()
    discovery.scene = [square(500, 500)]
    finder = FaceFinder(discovery, None, discovery_interval=1.0)  # type: ignore[arg-type]
    for i in range(4):
        finder.find(FRAME, i / 5)
    assert len(discovery.calls) == 4


def test_a_face_hidden_for_two_seconds_keeps_its_id() -> None:
    finder, discovery, _ = make(1.0)
    discovery.scene = [square(500, 500, 60), square(1200, 500, 60)]
    for i in range(5):
        finder.find(FRAME, i / 5)
    hidden = discovery.scene.pop(0)  # occluded for 1.8 s
    for i in range(5, 14):
        assert [f.track for f in finder.find(FRAME, i / 5)] == ["f2"]
    discovery.scene.insert(0, hidden)
    ids = set()
    for i in range(14, 21):  # back; the next discovery (t = 3.0) finds it again
        ids |= {f.track for f in finder.find(FRAME, i / 5)}
    assert ids == {"f1", "f2"}
    assert finder.tracker.issued == 2


def textured_face(seed: int, size: int = 60) -> np.ndarray:
    """A smooth random pattern (6x6 cells of 10 px): shifts of a pixel or two change it little, like a face."""
    cells = np.random.default_rng(seed).integers(0, 256, (size // 10, size // 10), dtype=np.uint8)
    return np.kron(cells, np.ones((10, 10), np.uint8))


def test_two_faces_crossing_keep_their_ids_by_position_and_looks() -> None:
    # Given two different-looking faces walking past each other on one line, re-located every frame
    finder, discovery, _ = make(1.0)
    a_img, b_img = textured_face(1), textured_face(2)
    left, right = [], []
    for i in range(26):
        t = i / 5
        ax, bx = 300 + 40 * i, 1300 - 40 * i
        frame = np.zeros((1080, 1920), np.uint8)
        frame[470:530, int(ax) - 30 : int(ax) + 30] = a_img
        frame[470:530, int(bx) - 30 : int(bx) + 30] = b_img
        discovery.scene = [square(ax, 500, 60), square(bx, 500, 60)]
        faces = finder.find(frame, t)
        by_x = {round((f.box[0] + f.box[2]) / 2): f.track for f in faces}
        if round(ax) in by_x:
            left.append(by_x[round(ax)])
        if round(bx) in by_x and round(bx) != round(ax):
            right.append(by_x[round(bx)])
    assert set(left) == {"f1"}
    assert set(right) == {"f2"}


def test_appearance_descriptor_is_unit_norm_and_tells_faces_apart() -> None:
    frame = np.zeros((200, 400), np.uint8)
    frame[50:110, 50:110] = textured_face(1)
    frame[50:110, 250:310] = textured_face(2)
    a = appearance(frame, (50, 50, 110, 110))
    a2 = appearance(frame, (51, 49, 111, 109))
    b = appearance(frame, (250, 50, 310, 110))
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ a2) > float(a @ b) + 0.3
    flat = appearance(np.zeros((50, 50), np.uint8), (0, 0, 50, 50))
    assert np.linalg.norm(flat) == pytest.approx(1.0, abs=1e-5)


def test_invalid_settings() -> None:
    d = ScriptedDiscovery()
    with pytest.raises(ValueError):
        FaceFinder(d, min_face=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FaceFinder(d, discovery_interval=-1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FaceFinder(d, max_faces=0)  # type: ignore[arg-type]


class UnsureDiscovery(ScriptedDiscovery):
    """Scene faces at score 0.8 plus extra low-score proposals (``unsure``: a real face the re-locator sees, or
    a texture it does not)."""

    def __init__(self) -> None:
        super().__init__()
        self.unsure: list[Box] = []

    def detect(self, luma: np.ndarray, min_face: float = 0.0) -> list[Face]:
        return [*super().detect(luma, min_face), *(Face(b, 0.3) for b in self.unsure)]


def test_unsure_discoveries_need_the_relocators_confirmation() -> None:
    # Given a discovery detector that also proposes two faces at a low score: one is a face in the scene (the
    # re-locator finds it), one is a texture (it does not)
    discovery = UnsureDiscovery()
    relocator = ScriptedRelocator(discovery)
    finder = FaceFinder(discovery, relocator, discovery_interval=1.0, confirm_below=0.35)  # type: ignore[arg-type]
    discovery.scene = [square(500, 500), square(900, 500, 30)]
    discovery.unsure = [square(903, 502, 30), square(1500, 300)]  # the second face (seen unsure), a texture
    discovery.scene = discovery.scene[:1]
    relocator_scene = [square(500, 500), square(900, 500, 30)]

    class Relocator(ScriptedRelocator):
        def relocate_many(self, luma: np.ndarray, boxes: Sequence[Box]) -> list[Face | None]:
            saved, self.discovery.scene = self.discovery.scene, relocator_scene
            try:
                return super().relocate_many(luma, boxes)
            finally:
                self.discovery.scene = saved

    finder.relocator = Relocator(discovery)
    found = finder.find(noisy(0), 0.0)
    # Then the confident face and the confirmed one are found, the latter with the re-locator's box and score;
    # the texture is dropped
    boxes = sorted(f.box for f in found)
    assert boxes == [square(500, 500), square(900, 500, 30)]
    assert [f.score for f in found if f.box == square(900, 500, 30)] == [0.95]
    assert (finder.stats.unsure, finder.stats.confirmed) == (2, 1)
    # And a known face is not asked again: at the next discovery the low score proposal is a known track
    discovery.unsure = [square(903, 502, 30)]
    finder.find(noisy(1), 0.5)
    finder.find(noisy(2), 1.0)
    assert finder.stats.unsure == 2 and len(finder.find(noisy(3), 1.2)) == 2


def test_confirmation_needs_a_relocator() -> None:
    with pytest.raises(ValueError, match="relocator"):
        FaceFinder(ScriptedDiscovery(), None, confirm_below=0.35)  # type: ignore[arg-type]
    # without it (the default) a low score discovery is taken as it is
    discovery = UnsureDiscovery()
    discovery.unsure = [square(700, 700)]
    finder = FaceFinder(discovery, ScriptedRelocator(discovery))  # type: ignore[arg-type]
    assert [f.score for f in finder.find(FRAME, 0.0)] == [0.3]
