"""FaceTracker on synthetic box sequences: one id per person, dropouts, crossings, new ids after absence."""

from __future__ import annotations

import pytest
from analyzer.tracker import FaceTracker

FPS = 5.0


def box(cx: float, cy: float, size: float = 100.0) -> tuple[float, float, float, float]:
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


def test_moving_face_keeps_one_id() -> None:
    # Given a face that pans across a 1080p frame and grows (zoom), analysed 5 times a second
    tracker = FaceTracker()
    ids = set()
    for i in range(50):
        t = i / FPS
        ids.update(tracker.update([box(200 + 30 * i, 400 + 5 * i, 100 + 3 * i)], now=t))
    # Then it is one person
    assert ids == {"f1"}


def test_fast_motion_is_followed_through_velocity_prediction() -> None:
    # Given a face moving 80 px (0.8 face sizes) per analysed frame, steadily
    tracker = FaceTracker()
    ids = [tracker.update([box(100 + 80 * i, 300)], now=i / FPS)[0] for i in range(15)]
    assert set(ids) == {"f1"}


def test_short_dropout_keeps_id_long_absence_gets_new_id() -> None:
    tracker = FaceTracker(max_missing_seconds=1.0)
    t = 0.0
    for _ in range(5):
        assert tracker.update([box(500, 500)], now=t) == ["f1"]
        t += 0.2
    # When the detector misses it for 0.8 s
    for _ in range(4):
        assert tracker.update([], now=t) == []
        t += 0.2
    # Then it comes back with the same id
    assert tracker.update([box(510, 505)], now=t) == ["f1"]
    # When it disappears for 2 s
    t += 2.0
    # Then it is a new observation
    assert tracker.update([box(510, 505)], now=t) == ["f2"]
    assert tracker.issued == 2


def test_two_faces_crossing_keep_their_ids() -> None:
    # Given two faces walking towards each other on the same line, passing through each other
    tracker = FaceTracker()
    left, right = [], []
    for i in range(21):
        t = i / FPS
        a = (100 + 40 * i, 400)  # left to right
        b = (900 - 40 * i, 410)  # right to left
        ids = tracker.update([box(*b), box(*a)] if i % 2 else [box(*a), box(*b)], now=t)
        if i % 2:
            ids = ids[::-1]
        left.append(ids[0])
        right.append(ids[1])
    # Then each keeps its own id from start to end, including the frames where they overlap
    assert set(left) == {"f1"}
    assert set(right) == {"f2"}


def test_crossing_with_missed_detection_at_overlap() -> None:
    # Given two crossing faces where the detector sees only one box while they overlap
    tracker = FaceTracker()
    seen: dict[int, list[str]] = {0: [], 1: []}
    for i in range(21):
        t = i / FPS
        a, b = (100 + 40 * i, 400), (900 - 40 * i, 400)
        if 9 <= i <= 11:  # occlusion: only the front face (a) is detected
            tracker.update([box(*a)], now=t)
            continue
        ids = tracker.update([box(*a), box(*b)], now=t)
        seen[0].append(ids[0])
        seen[1].append(ids[1])
    assert set(seen[0]) == {"f1"}
    assert set(seen[1]) == {"f2"}


def test_two_static_faces_and_a_newcomer() -> None:
    tracker = FaceTracker()
    assert tracker.update([box(200, 200), box(800, 200)], now=0.0) == ["f1", "f2"]
    assert tracker.update([box(805, 200), box(202, 198)], now=0.2) == ["f2", "f1"]
    assert tracker.update([box(202, 198), box(500, 700), box(805, 200)], now=0.4) == ["f1", "f3", "f2"]


def test_far_jump_is_a_different_person() -> None:
    # A box appearing far away in the next frame (a cut) is not the same track
    tracker = FaceTracker()
    assert tracker.update([box(100, 100)], now=0.0) == ["f1"]
    assert tracker.update([box(1500, 900)], now=0.2) == ["f2"]


def test_big_scale_change_is_a_different_person() -> None:
    tracker = FaceTracker()
    assert tracker.update([box(500, 500, 60)], now=0.0) == ["f1"]
    assert tracker.update([box(500, 500, 300)], now=0.2) == ["f2"]


def test_default_clock_and_reset() -> None:
    tracker = FaceTracker()
    assert tracker.update([box(10, 10, 20)]) == ["f1"]
    assert tracker.update([box(11, 10, 20)]) == ["f1"]
    tracker.reset()
    assert tracker.tracks == []
    assert tracker.update([box(11, 10, 20)]) == ["f2"]


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        FaceTracker(max_missing_seconds=-1)


def test_frames_with_almost_equal_timestamps_do_not_break_the_track() -> None:
    # Frames delivered in a burst (a cached GOP at connect): 20 px apart but only 2 ms apart in time
    tracker = FaceTracker()
    ids = [tracker.update([box(200 + 20 * i, 300)], now=0.002 * i)[0] for i in range(5)]
    ids += [tracker.update([box(300 + 20 * i, 300)], now=0.2 + 0.2 * i)[0] for i in range(5)]
    assert set(ids) == {"f1"}
