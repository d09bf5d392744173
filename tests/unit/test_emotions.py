"""The emotion data model's math (emotion_shared.emotions), checked against numbers computed by hand."""

from __future__ import annotations

import pytest
from emotion_shared.emotions import EMOTIONS, Bucket, interval_stats, timeline, totals


def bucket(sec: int, faces: dict[str, dict[str, list[float]]], frames: int = 5) -> Bucket:
    return Bucket(sec=sec, faces=faces, frames=frames)


# A small session, by hand:
#   sec 0 : face a happiness ×2 (p 0.9 + 0.7 = 1.6) ; face b neutral ×1 (p 0.5)
#   sec 3 : face a happiness ×1 (0.9), sadness ×1 (0.6)
#   sec 7 : face b happiness ×1 (0.7)
#   sec 12: analysed, no face
#   sec 14: face c anger ×3 (0.8 + 0.8 + 0.8 = 2.4)
SESSION = [
    bucket(0, {"a": {"happiness": [2, 1.6]}, "b": {"neutral": [1, 0.5]}}),
    bucket(3, {"a": {"happiness": [1, 0.9], "sadness": [1, 0.6]}}),
    bucket(7, {"b": {"happiness": [1, 0.7]}}),
    bucket(12, {}),
    bucket(14, {"c": {"anger": [3, 2.4]}}),
]


def zero_stats() -> dict[str, dict[str, float]]:
    return {e: {"people": 0, "quantity": 0.0, "intensity": 0.0} for e in EMOTIONS}


def test_emotion_names_in_classifier_order() -> None:
    assert EMOTIONS == ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


def test_observe_counts_the_dominant_emotion_and_sums_its_probability() -> None:
    # Given two observations of one face, happiness dominant in both, then one with surprise dominant
    b = Bucket(sec=0)
    assert b.observe("t1", [0.05, 0.0, 0.05, 0.6, 0.1, 0.1, 0.1]) == "happiness"
    assert b.observe("t1", [0.0, 0.0, 0.0, 0.8, 0.0, 0.1, 0.1]) == "happiness"
    assert b.observe("t1", [0.0, 0.0, 0.0, 0.3, 0.0, 0.7, 0.0]) == "surprise"
    # Then happiness: 2 observations, 0.6 + 0.8; surprise: 1, 0.7 (the other probabilities are not summed)
    assert b.faces["t1"]["happiness"][0] == 2
    assert b.faces["t1"]["happiness"][1] == pytest.approx(1.4)
    assert b.faces["t1"]["surprise"] == [1, pytest.approx(0.7)]
    assert set(b.faces["t1"]) == {"happiness", "surprise"}


def test_observe_breaks_ties_by_classifier_order_and_rejects_wrong_width() -> None:
    b = Bucket(sec=0)
    assert b.observe("t", [0.5, 0.5, 0, 0, 0, 0, 0]) == "anger"
    with pytest.raises(ValueError, match="expected 7 scores"):
        b.observe("t", [1.0, 0.0])


def test_item_round_trip() -> None:
    original = bucket(9, {"a": {"fear": [2, 1.234567891]}}, frames=4)
    item = original.to_item("s1", ttl=123)
    assert item == {
        "sessionId": "s1", "sec": 9, "faces": {"a": {"fear": [2, 1.234568]}}, "frames": 4, "received": 4, "ttl": 123
    }
    back = Bucket.from_item(item)
    assert back.sec == 9 and back.frames == 4 and back.faces == {"a": {"fear": [2, 1.234568]}}


def test_totals_sum_counts_over_faces_and_seconds() -> None:
    # happiness 2 + 1 + 1, neutral 1, sadness 1, anger 3; every emotion listed
    assert totals(SESSION) == {
        "anger": 3,
        "disgust": 0,
        "fear": 0,
        "happiness": 4,
        "sadness": 1,
        "surprise": 0,
        "neutral": 1,
    }
    assert totals([]) == dict.fromkeys(EMOTIONS, 0)


def test_interval_stats_people_intensity_quantity() -> None:
    # Seconds 0..7: faces a and b.
    # happiness: a → (1.6 + 0.9) / (2 + 1) = 0.833333; b → 0.7 / 1 = 0.7
    #   people 2, intensity (0.833333 + 0.7) / 2 = 0.766667, quantity 2 × 0.766667 = 1.533333
    # neutral: b → 0.5 ; sadness: a → 0.6
    stats = interval_stats(SESSION[:3])
    expected = zero_stats()
    expected["happiness"] = {"people": 2, "intensity": 0.7667, "quantity": 1.5333}
    expected["neutral"] = {"people": 1, "intensity": 0.5, "quantity": 0.5}
    expected["sadness"] = {"people": 1, "intensity": 0.6, "quantity": 0.6}
    assert stats == {"detectedFaces": 2, "emotions": expected}


def test_interval_stats_of_nothing() -> None:
    assert interval_stats([bucket(1, {})]) == {"detectedFaces": 0, "emotions": zero_stats()}


def test_timeline_aligned_on_zero_and_empty_intervals_omitted() -> None:
    entries = timeline(SESSION, granularity=5)
    assert [(e["start"], e["end"], e["detectedFaces"]) for e in entries] == [(0, 5, 2), (5, 10, 1), (10, 15, 1)]
    # [0, 5): happiness a only → 2.5 / 3 = 0.833333 ; neutral b 0.5 ; sadness a 0.6
    first = entries[0]["emotions"]
    assert first["happiness"] == {"people": 1, "intensity": 0.8333, "quantity": 0.8333}
    assert first["neutral"] == {"people": 1, "intensity": 0.5, "quantity": 0.5}
    assert first["sadness"] == {"people": 1, "intensity": 0.6, "quantity": 0.6}
    assert first["anger"] == {"people": 0, "intensity": 0.0, "quantity": 0.0}
    # [5, 10): b happiness 0.7 ; [10, 15): sec 12 had no face, sec 14 c anger 2.4 / 3 = 0.8
    assert entries[1]["emotions"]["happiness"] == {"people": 1, "intensity": 0.7, "quantity": 0.7}
    assert entries[2]["emotions"]["anger"] == {"people": 1, "intensity": 0.8, "quantity": 0.8}


def test_timeline_aligned_on_start_and_clipped_to_end() -> None:
    # start 3, g 5, end 13 → [3, 8) holds secs 3 and 7; [8, 13) holds only sec 12 (no face) → omitted
    entries = timeline(SESSION, granularity=5, start=3, end=13)
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["start"], entry["end"], entry["detectedFaces"]) == (3, 8, 2)
    # happiness: a (sec 3) 0.9, b (sec 7) 0.7 → people 2, intensity 0.8, quantity 1.6
    assert entry["emotions"]["happiness"] == {"people": 2, "intensity": 0.8, "quantity": 1.6}
    assert entry["emotions"]["sadness"] == {"people": 1, "intensity": 0.6, "quantity": 0.6}
    assert entry["emotions"]["neutral"]["people"] == 0  # b's neutral was at sec 0, before start


def test_timeline_last_interval_clipped() -> None:
    # g 10, end 15 → [0, 10) and [10, 15) (not [10, 20)); sec 14 is inside, nothing at or after 15 counts
    entries = timeline([*SESSION, bucket(15, {"d": {"fear": [1, 0.9]}})], granularity=10, end=15)
    assert [(e["start"], e["end"]) for e in entries] == [(0, 10), (10, 15)]
    assert entries[1]["detectedFaces"] == 1
    assert entries[1]["emotions"]["fear"]["people"] == 0
    # [0, 10): the interval_stats case above
    assert entries[0]["emotions"]["happiness"] == {"people": 2, "intensity": 0.7667, "quantity": 1.5333}


def test_timeline_rejects_non_positive_granularity() -> None:
    with pytest.raises(ValueError):
        timeline(SESSION, granularity=0)


def test_raw_read_path_matches_the_deserialized_one() -> None:
    from emotion_shared.dynamo import deserialize, serialize

    original = bucket(5, {"a": {"fear": [2, 1.25], "anger": [1, 0.5]}, "b": {"neutral": [3, 2.7]}}, frames=7)
    raw = serialize(original.to_item("s1", ttl=99))
    assert Bucket.from_raw(raw) == Bucket.from_item(deserialize(raw)) == original
    assert Bucket.from_raw({"sec": {"N": "3"}}) == Bucket(sec=3)


def test_timeline_says_how_many_frames_each_interval_is_based_on() -> None:
    # seconds 0-4 analysed with a face; 5-9 analysed, nobody there; 10-14 frames arrived but none analysed
    happy = {"a": {"happiness": [1, 0.9]}}
    buckets = [bucket(s, happy, frames=5) for s in range(5)]
    buckets += [bucket(s, {}, frames=5) for s in range(5, 10)]
    buckets += [Bucket(sec=s, received=30) for s in range(10, 15)]
    for b in buckets[:10]:
        b.received = 30
    entries = timeline(buckets, 5)
    # the analysed interval with nobody in it is omitted as before; the unanalysed one is listed, not as "nobody"
    assert [(e["start"], e["frames"]) for e in entries] == [
        (0, {"received": 150, "analysed": 25}),
        (10, {"received": 150, "analysed": 0}),
    ]
    assert entries[1]["detectedFaces"] == 0
