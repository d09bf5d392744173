"""The scoring rules bench/quality.py and the detection tests share."""

from __future__ import annotations

import math

from emotionctl.media.scoring import (
    ConfusionMatrix,
    DetectionScore,
    FalseFaceScore,
    id_switches,
    match,
    matches,
    size_bucket,
)


def test_size_buckets_are_heights_at_1080p() -> None:
    assert size_bucket((0, 0, 20, 20), 1080) == "16-24"
    assert size_bucket((0, 0, 20, 20), 720) == "24-32"  # 20 px at 720p = 30 px at 1080p
    assert size_bucket((0, 0, 10, 10), 1080) is None
    assert size_bucket((0, 0, 300, 300), 1080) == ">=96"


def test_match_by_centre_inside_and_size_within_two() -> None:
    truth = (100.0, 100.0, 140.0, 150.0)
    assert matches(truth, (95.0, 100.0, 145.0, 150.0))  # looser, square box of the same face
    assert not matches(truth, (200.0, 100.0, 240.0, 150.0))  # elsewhere
    assert not matches(truth, (110.0, 115.0, 120.0, 125.0))  # a quarter of the size: not this face


def test_match_is_one_to_one_closest_first() -> None:
    truths = [(0.0, 0.0, 40.0, 40.0), (30.0, 0.0, 70.0, 40.0)]
    found = [(31.0, 0.0, 69.0, 40.0)]
    assert match(truths, found) == [(1, 0)]


def test_detection_score_counts_recall_per_bucket_and_false_faces() -> None:
    score = DetectionScore()
    truths = [(0.0, 0.0, 30.0, 30.0), (100.0, 0.0, 200.0, 100.0), (300.0, 0.0, 310.0, 10.0)]
    found = [(101.0, 1.0, 199.0, 99.0), (500.0, 500.0, 540.0, 540.0), (300.0, 0.0, 310.0, 10.0)]
    score.add(truths, found, 1080)
    assert score.recall("24-32") == 0.0
    assert score.recall(">=96") == 1.0
    assert math.isnan(score.recall("16-24"))
    assert score.false_faces == 1  # the 10 px face found is not false, just not scored
    assert score.recall_at_least(32) == 1.0


def test_scores_of_two_frame_sizes_add_up() -> None:
    hd, sd = DetectionScore(), DetectionScore()
    hd.add([(0.0, 0.0, 28.0, 28.0)], [(0.0, 0.0, 28.0, 28.0)], 1080)
    sd.add([(0.0, 0.0, 18.0, 18.0)], [(500.0, 500.0, 540.0, 540.0)], 720)  # 27 px at 1080p, missed; 1 false
    both = hd + sd
    assert both.recall("24-32") == 0.5 and both.total["24-32"] == 2
    assert (both.false_faces, both.frames) == (1, 2)
    assert hd.recall("24-32") == 1.0  # the parts are unchanged
    empty = FalseFaceScore(100, 1) + FalseFaceScore(100, 0)
    assert empty.per_100_frames == 0.5


def test_false_faces_per_100_frames() -> None:
    score = FalseFaceScore()
    for i in range(200):
        score.add([(0.0, 0.0, 1.0, 1.0)] if i == 7 else [])
    assert score.per_100_frames == 0.5


def test_id_switches() -> None:
    a, b = (0.0, 0.0, 40.0, 40.0), (100.0, 0.0, 140.0, 40.0)
    frames = 4
    truth_ids = [["A", "B"]] * frames
    truth_boxes = [[a, b]] * frames
    found_ids = [["f1", "f2"], ["f1", "f2"], ["f2", "f1"], ["f2", "f1"]]
    assert id_switches(truth_ids, truth_boxes, found_ids, [[a, b]] * frames) == (2, 8)


def test_confusion_matrix() -> None:
    m = ConfusionMatrix(("a", "b"))
    for t, p in [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b")]:
        m.add(t, p)
    assert m.accuracy == 0.75
    assert m.recall("a") == 0.5
    assert "recall" in m.format()
