"""Period logic of the emotion channels, and that their numbers are the REST timeline's."""

from __future__ import annotations

import random

import pytest
from emotion_shared import emotions
from emotion_shared.emotions import Bucket
from emotion_shared.ws import periods


def test_periods_are_aligned_on_multiples_of_the_frequency() -> None:
    assert periods.bounds(0, 5) == (0, 5)
    assert periods.bounds(3, 5) == (15, 20)
    assert [periods.period_of(s, 5) for s in (0, 4, 5, 9, 10)] == [0, 0, 1, 1, 2]


def test_a_period_is_due_when_its_last_second_arrives() -> None:
    assert periods.due_periods([0], 1) == [0]
    assert periods.due_periods([3], 1, previous=2) == [3]
    assert periods.due_periods([0, 1, 2, 3], 5) == []
    assert periods.due_periods([4], 5, previous=3) == [0]
    assert periods.due_periods([8, 9, 10, 11, 12, 13, 14], 5, previous=7) == [1, 2]
    assert periods.due_periods([59], 60, previous=58) == [0]
    assert periods.due_periods([599], 600) == [0]


def test_a_period_left_without_its_last_second_is_due_at_the_next_period() -> None:
    # Given the worker wrote up to second 7 of [5, 10), stalled, and resumed at 12
    # Then [5, 10) is complete when 12 arrives (emitted late), [10, 15) is not yet
    assert periods.due_periods([12], 5, previous=7) == [1]
    # within one batch too
    assert periods.due_periods([6, 7, 12, 13, 14], 5, previous=5) == [1, 2]
    # a gap inside one period completes nothing
    assert periods.due_periods([8], 5, previous=5) == []
    # a period whose last second was written is not emitted twice
    assert periods.due_periods([10], 5, previous=9) == []
    # nothing before: nothing late
    assert periods.due_periods([12], 5, previous=None) == []


def test_order_and_duplicates_do_not_matter() -> None:
    assert periods.due_periods([14, 10, 14, 9], 5, previous=8) == [1, 2]


def _random_buckets(seconds: int, seed: int) -> list[Bucket]:
    rng = random.Random(seed)
    out = []
    for sec in range(seconds):
        bucket = Bucket(sec=sec, frames=5)
        if rng.random() < 0.2:
            out.append(bucket)  # nobody seen this second
            continue
        for _ in range(rng.randint(1, 10)):
            scores = [rng.random() for _ in emotions.EMOTIONS]
            total = sum(scores)
            bucket.observe(f"t{rng.randint(1, 4)}", [s / total for s in scores])
        out.append(bucket)
    return out


@pytest.mark.parametrize("freq", [1, 3, 5, 10, 30, 60])
def test_period_numbers_equal_the_rest_timeline(freq: int) -> None:
    buckets = _random_buckets(120, seed=freq)
    timeline = {entry["start"]: entry for entry in emotions.timeline(buckets, granularity=freq)}
    for period in periods.due_periods([b.sec for b in buckets], freq):
        start, end = periods.bounds(period, freq)
        inside = [b for b in buckets if start <= b.sec < end]
        sei = periods.intensities_data(inside)
        sec = periods.counts_data(inside)
        assert set(sei) == set(sec) == set(emotions.EMOTIONS)
        assert sec == emotions.totals(inside)
        if start in timeline:
            assert timeline[start]["end"] == end
            assert sei == timeline[start]["emotions"]
        else:  # the REST timeline omits a period without faces; the channel sends zeros
            assert all(v == {"people": 0, "quantity": 0.0, "intensity": 0.0} for v in sei.values())
            assert all(v == 0 for v in sec.values())
