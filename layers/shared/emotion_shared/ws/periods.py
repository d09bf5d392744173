"""Which periods of an emotion channel are complete, and their numbers.

A channel with period ``F`` seconds cuts the session into periods ``[k·F, (k+1)·F)`` of seconds since the
session's start — exactly the intervals of the REST timeline with ``granularity=F, start=0``. Period ``k``
is *complete* when the bucket of its last second, ``(k+1)·F - 1``, arrives: the worker writes one bucket per
analysed second, in order, so that bucket is the period's last.

If the worker did not analyse that last second (the stream stalled, the worker reconnected), the period is
emitted *late*, when the first bucket of a later period arrives: the publisher looks up the previous bucket
written before a batch and, if it ended a period early, that period is complete too. A period the session's
end cuts short is not sent (the REST timeline has it).

The numbers are computed by the same functions as the REST API (:mod:`emotion_shared.emotions`):
``sec`` data is the per-emotion count of the period (``emotions.totals``), ``sei`` data is the
``emotions`` object of the REST timeline entry for that interval (``emotions.interval_stats``). A period in
which no face was seen *is* sent, with zero counts (``people`` 0, ``intensity`` 0): on a live channel "nobody
was seen" is information, and the steady cadence tells a client the session is alive. (The REST timeline
omits such intervals.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..emotions import Bucket, frame_counts, interval_stats, totals


def period_of(sec: int, freq: int) -> int:
    return sec // freq


def bounds(period: int, freq: int) -> tuple[int, int]:
    """``[start, end)`` in seconds since the session start."""
    return period * freq, (period + 1) * freq


def is_last_second(sec: int, freq: int) -> bool:
    return (sec + 1) % freq == 0


def due_periods(secs: Iterable[int], freq: int, previous: int | None = None) -> list[int]:
    """Periods completed by the arrival of the buckets ``secs`` (any order), for period length ``freq``.

    ``previous`` is the sec of the last bucket written *before* these (None if none or unknown). A period is
    due when one of ``secs`` is its last second, or when it was left without its last second: a bucket of a
    later period arrived right after the period's last written bucket.
    """
    ordered = sorted(set(secs))
    due: set[int] = set()
    before = previous
    for sec in ordered:
        if is_last_second(sec, freq):
            due.add(period_of(sec, freq))
        if (
            before is not None
            and before < sec
            and period_of(before, freq) < period_of(sec, freq)
            and not is_last_second(before, freq)
        ):
            due.add(period_of(before, freq))
        before = sec
    return sorted(due)


def counts_data(buckets: Iterable[Bucket]) -> dict[str, int]:
    """``sec`` data: ``{emotion: count}`` over the period (every emotion, zeros included)."""
    return totals(buckets)


def intensities_data(buckets: Iterable[Bucket]) -> dict[str, Any]:
    """``sei`` data: ``{emotion: {people, quantity, intensity}}`` — the REST timeline entry's ``emotions``."""
    return dict(interval_stats(buckets)["emotions"])


def frames_extra(buckets: Iterable[Bucket]) -> dict[str, Any]:
    """The fifth element of an emotion event: ``{"frames": {"received", "analysed"}}`` — how many frames the
    period's numbers are based on, out of those that arrived (the REST timeline entry's ``frames``)."""
    return {"frames": frame_counts(buckets)}
