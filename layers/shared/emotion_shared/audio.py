"""The audio data model: speech segments written by the analyzer, read by the API and the publisher.

A **segment** is one stretch of speech found by voice-activity detection in a session's audio track:
``start``/``end`` in session seconds (the same origin as the emotion buckets: the session's ``createdAt``), the
recognised ``text``, and its sentiment — VADER's ``positive``/``neutral``/``negative`` proportions (they sum to
1) and ``compound`` (−1…1) — with a ``label`` from the compound score (≥ 0.05 positive, ≤ −0.05 negative,
neutral between: VADER's published thresholds).

Storage: items of the emotions table (same TTL attribute, same delete), in their own sort-key range:
``sec = AUDIO_KEY_BASE + start in ms``, above every emotion second (``MAX_OFFSET_SECONDS``), so the emotion
reads (``sec < AUDIO_KEY_BASE``) never see them and ``EmotionStore.delete_session`` removes them with the rest.

The timeline (``GET …/audio/transcription-sentiment``): intervals ``[start + k·g, start + (k+1)·g)`` clipped to
``end``; intervals without speech are omitted. Per interval, ``segments`` = how many segments overlap it and
``sentiments`` = the share of the interval's speech time (seconds of each segment inside the interval) whose
segment is labelled positive / neutral / negative (they sum to 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .dynamo import batch_write, deserialize, serialize
from .emotions import EMOTION_KEY_LIMIT
from .session_models import MAX_OFFSET_SECONDS

AUDIO_KEY_BASE = EMOTION_KEY_LIMIT  # 1e13 > MAX_OFFSET_SECONDS * 1000: above every emotion second
ITEM_KIND = "speech"
LABELS: tuple[str, ...] = ("positive", "neutral", "negative")
POSITIVE_THRESHOLD = 0.05  # VADER's compound thresholds
NEGATIVE_THRESHOLD = -0.05
ROUND = 4



def label_of(compound: float) -> str:
    if compound >= POSITIVE_THRESHOLD:
        return "positive"
    if compound <= NEGATIVE_THRESHOLD:
        return "negative"
    return "neutral"


@dataclass(frozen=True)
class Segment:
    """One finished speech segment. ``scores``: VADER ``positive, neutral, negative, compound``."""

    start: float
    end: float
    text: str
    scores: Mapping[str, float]

    @property
    def key(self) -> int:
        return AUDIO_KEY_BASE + max(0, round(self.start * 1000))

    @property
    def label(self) -> str:
        return label_of(float(self.scores.get("compound", 0.0)))

    def to_item(self, session_id: str, ttl: int | None = None) -> dict[str, Any]:
        return {
            "sessionId": session_id,
            "sec": self.key,
            "kind": ITEM_KIND,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "scores": {k: round(float(v), ROUND) for k, v in self.scores.items()},
            "ttl": ttl,
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Segment:
        scores = {str(k): float(v) for k, v in (item.get("scores") or {}).items()}
        return cls(float(item["start"]), float(item["end"]), str(item.get("text", "")), scores)

    def view(self) -> dict[str, Any]:
        """The public form (transcript entries and the WebSocket event)."""
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "sentiment": self.label,
            "scores": {k: round(float(self.scores.get(k, 0.0)), ROUND) for k in (*LABELS, "compound")},
        }


def is_segment_key(sec: int | float) -> bool:
    return sec >= AUDIO_KEY_BASE


def timeline(
    segments: Iterable[Segment], granularity: int, start: int = 0, end: int | None = None
) -> list[dict[str, Any]]:
    """``[{start, end, segments, sentiments: {positive, neutral, negative}}]`` (see the module docstring)."""
    if granularity <= 0:
        raise ValueError("granularity must be positive")
    # interval index -> (segment count, seconds per label)
    acc: dict[int, tuple[int, dict[str, float]]] = {}
    for seg in segments:
        lo_seg = max(seg.start, float(start))
        hi_seg = seg.end if end is None else min(seg.end, float(end))
        if hi_seg <= lo_seg:
            continue
        first = int((lo_seg - start) // granularity)
        last = max(first, math.ceil((hi_seg - start) / granularity) - 1)
        for k in range(first, last + 1):
            a = max(lo_seg, start + k * granularity)
            b = min(hi_seg, start + (k + 1) * granularity)
            if b <= a:
                continue
            count, seconds = acc.get(k, (0, dict.fromkeys(LABELS, 0.0)))
            seconds[seg.label] += b - a
            acc[k] = (count + 1, seconds)
    entries = []
    for k in sorted(acc):
        count, seconds = acc[k]
        total = math.fsum(seconds.values())
        shares = {lab: round(seconds[lab] / total, ROUND) if total > 0 else 0.0 for lab in LABELS}
        lo = start + k * granularity
        hi = lo + granularity if end is None else min(lo + granularity, end)
        entries.append({"start": lo, "end": hi, "segments": count, "sentiments": shares})
    return entries


class SegmentStore:
    """Speech segments in the emotions table (their own sort-key range, see the module docstring)."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def write(self, session_id: str, segments: Iterable[Segment], ttl: int | None = None) -> int:
        """Put whole segments (idempotent: the key is the start), batched, retried; raises ``RetriesExhausted``."""
        requests = [{"PutRequest": {"Item": serialize(s.to_item(session_id, ttl))}} for s in segments]
        return batch_write(self._client, self._table, requests)

    def read(self, session_id: str, start: float | None = None, end: float | None = None) -> Iterator[Segment]:
        """Segments overlapping ``[start, end)``, in order of their start."""
        # a segment that starts before ``start`` may still overlap it: read from the longest segment before
        lo = AUDIO_KEY_BASE + max(0, int(((start or 0) - MAX_SEGMENT_SECONDS) * 1000))
        hi = AUDIO_KEY_BASE + (int(end * 1000) - 1 if end is not None else MAX_OFFSET_SECONDS * 1000)
        if hi < lo:
            return iter(())
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="#s = :s AND #t BETWEEN :a AND :b",
            ExpressionAttributeNames={"#s": "sessionId", "#t": "sec"},
            ExpressionAttributeValues={":s": {"S": session_id}, ":a": {"N": str(lo)}, ":b": {"N": str(hi)}},
            ConsistentRead=True,
        )
        return (
            seg
            for page in pages
            for item in page.get("Items", [])
            if (seg := Segment.from_item(deserialize(item))).end > (start or 0)
        )


# The analyzer cuts speech into segments of at most this length (it bounds the overlap read above).
MAX_SEGMENT_SECONDS = 30
