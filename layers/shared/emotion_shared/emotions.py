"""The emotion data model: per-second buckets written by the analyzer, read by the API and the publisher.

A bucket holds, for one session and one whole second ``sec`` since the session's creation, and for each
tracked face, per emotion: ``count`` — the observations of that face in which the emotion was the dominant
one — and ``probSum`` — the sum of that emotion's probability over those observations.

Everything the API reports is derived from buckets by the pure functions below, so the REST timeline, the
totals and the WebSocket channels always agree:

- totals: per emotion, Σ count over faces and seconds;
- ``detectedFaces``: distinct faces with any observation in the interval;
- per emotion ``people``: distinct faces for which it was dominant at least once in the interval;
  ``intensity``: the mean over those faces of (Σ probSum / Σ count) for that face; ``quantity`` =
  ``people × intensity``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .dynamo import batch_write, query_all, serialize

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")

ROUND = 4
# Emotion seconds are below this; the emotions table's higher sort keys hold the speech segments (audio.py).
EMOTION_KEY_LIMIT = 10_000_000_000_000


@dataclass
class Bucket:
    """One second of one session. ``faces[track][emotion] = [count, probSum]``; ``frames``: the frames analysed
    in that second; ``received``: the frames that arrived in it (analysed or not — a worker that cannot keep up
    analyses fewer than it receives). ``received > 0`` with ``frames == 0`` is a second that was not looked
    at, which is not the same as a second in which nobody was seen. Buckets written before ``received``
    existed read it as ``frames``."""

    sec: int
    faces: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    frames: int = 0
    received: int = 0

    def __post_init__(self) -> None:
        self.received = max(self.received, self.frames)  # every analysed frame was received

    def observe(self, track: str, scores: Iterable[float]) -> str:
        """Add one observation of ``track`` with its probability per emotion; returns the dominant emotion."""
        probs = list(scores)
        if len(probs) != len(EMOTIONS):
            raise ValueError(f"expected {len(EMOTIONS)} scores, got {len(probs)}")
        best = max(range(len(probs)), key=probs.__getitem__)
        emotion = EMOTIONS[best]
        cell = self.faces.setdefault(track, {}).setdefault(emotion, [0, 0.0])
        cell[0] += 1
        cell[1] += float(probs[best])
        return emotion

    def to_item(self, session_id: str, ttl: int | None = None) -> dict[str, Any]:
        faces = {
            track: {emo: [int(c), round(float(s), 6)] for emo, (c, s) in per.items()}
            for track, per in self.faces.items()
        }
        return {
            "sessionId": session_id,
            "sec": self.sec,
            "faces": faces,
            "frames": self.frames,
            "received": max(self.received, self.frames),
            "ttl": ttl,
        }

    @classmethod
    def from_raw(cls, item: Mapping[str, Any]) -> Bucket:
        """From a low-level DynamoDB attribute-value map (the read path: ~5x faster than deserializing)."""
        faces = {
            track: {emo: [int(v["L"][0]["N"]), float(v["L"][1]["N"])] for emo, v in per["M"].items()}
            for track, per in (item.get("faces") or {}).get("M", {}).items()
        }
        frames = int((item.get("frames") or {"N": "0"})["N"])
        received = int((item.get("received") or {"N": str(frames)})["N"])
        return cls(sec=int(item["sec"]["N"]), faces=faces, frames=frames, received=received)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Bucket:
        faces = {
            str(track): {str(emo): [int(v[0]), float(v[1])] for emo, v in per.items()}
            for track, per in (item.get("faces") or {}).items()
        }
        frames = int(item.get("frames", 0))
        return cls(sec=int(item["sec"]), faces=faces, frames=frames, received=int(item.get("received", frames)))


def _round(x: float) -> float:
    return round(x, ROUND)


def totals(buckets: Iterable[Bucket]) -> dict[str, int]:
    """How many observations had each emotion dominant (every emotion listed, zeros included)."""
    out = dict.fromkeys(EMOTIONS, 0)
    for bucket in buckets:
        for per in bucket.faces.values():
            for emo, (count, _) in per.items():
                out[emo] = out.get(emo, 0) + int(count)
    return out


def interval_stats(buckets: Iterable[Bucket]) -> dict[str, Any]:
    """``{detectedFaces, emotions: {name: {people, quantity, intensity}}}`` for the buckets given."""
    # face -> emotion -> [count, probSum], summed over the interval
    acc: dict[str, dict[str, list[float]]] = {}
    for bucket in buckets:
        for track, per in bucket.faces.items():
            face = acc.setdefault(track, {})
            for emo, (count, prob_sum) in per.items():
                cell = face.setdefault(emo, [0, 0.0])
                cell[0] += count
                cell[1] += prob_sum
    emotions: dict[str, dict[str, float | int]] = {}
    for emo in EMOTIONS:
        means = [face[emo][1] / face[emo][0] for face in acc.values() if emo in face and face[emo][0] > 0]
        people = len(means)
        intensity = math.fsum(means) / people if people else 0.0
        emotions[emo] = {"people": people, "quantity": _round(people * intensity), "intensity": _round(intensity)}
    return {"detectedFaces": len(acc), "emotions": emotions}


def frame_counts(buckets: Iterable[Bucket]) -> dict[str, int]:
    """``{received, analysed}``: the frames an interval's numbers are based on (``analysed``) out of those that
    arrived in it (``received``)."""
    received = analysed = 0
    for bucket in buckets:
        analysed += bucket.frames
        received += max(bucket.received, bucket.frames)
    return {"received": received, "analysed": analysed}


def timeline(
    buckets: Iterable[Bucket], granularity: int, start: int = 0, end: int | None = None
) -> list[dict[str, Any]]:
    """Intervals ``[start + k·g, start + (k+1)·g)`` (the last one clipped to ``end``), each with its
    :func:`frame_counts` as ``frames``. Intervals in which frames were analysed and no face was seen are
    omitted; an interval whose frames arrived but could not be analysed (``frames.analysed`` 0) is listed, with
    no faces: it was not looked at, which is not "nobody there"."""
    if granularity <= 0:
        raise ValueError("granularity must be positive")
    groups: dict[int, list[Bucket]] = {}
    for bucket in buckets:
        if bucket.sec < start or (end is not None and bucket.sec >= end):
            continue
        groups.setdefault((bucket.sec - start) // granularity, []).append(bucket)
    entries = []
    for k in sorted(groups):
        stats = interval_stats(groups[k])
        frames = frame_counts(groups[k])
        if stats["detectedFaces"] == 0 and not (frames["received"] and not frames["analysed"]):
            continue
        lo = start + k * granularity
        hi = lo + granularity if end is None else min(lo + granularity, end)
        entries.append({"start": lo, "end": hi, **stats, "frames": frames})
    return entries


class EmotionStore:
    """Reads and writes buckets in the emotions table (``sessionId`` + ``sec``)."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def write(self, session_id: str, buckets: Iterable[Bucket], ttl: int | None = None) -> int:
        """Put whole buckets (idempotent per bucket), batched, retried; raises ``RetriesExhausted``."""
        requests = [{"PutRequest": {"Item": serialize(b.to_item(session_id, ttl))}} for b in buckets]
        return batch_write(self._client, self._table, requests)

    def read(self, session_id: str, start: int | None = None, end: int | None = None) -> Iterator[Bucket]:
        """Buckets with ``start <= sec < end``, in order. Keys from ``EMOTION_KEY_LIMIT`` up belong to other
        kinds of session data (the speech segments of :mod:`emotion_shared.audio`) and are never read here."""
        names = {"#s": "sessionId", "#t": "sec", "#f": "faces", "#n": "frames", "#r": "received"}
        lo = 0 if start is None else start
        hi = EMOTION_KEY_LIMIT if end is None else min(end, EMOTION_KEY_LIMIT)
        if hi <= lo:
            return iter(())
        values: dict[str, Any] = {":s": {"S": session_id}, ":a": {"N": str(lo)}, ":b": {"N": str(hi - 1)}}
        condition = "#s = :s AND #t BETWEEN :a AND :b"
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression=condition,
            ProjectionExpression="#t, #f, #n, #r",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
        )
        return (Bucket.from_raw(item) for page in pages for item in page.get("Items", []))

    def previous_second(self, session_id: str, before: int) -> int | None:
        """The last emotion second of the session before ``before`` (None: none yet)."""
        response = self._client.query(
            TableName=self._table,
            KeyConditionExpression="#s = :s AND #t < :t",
            ExpressionAttributeNames={"#s": "sessionId", "#t": "sec"},
            ExpressionAttributeValues={":s": {"S": session_id}, ":t": {"N": str(min(before, EMOTION_KEY_LIMIT))}},
            ProjectionExpression="#t",
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = response.get("Items") or []
        return int(items[0]["sec"]["N"]) if items else None

    def delete_session(self, session_id: str) -> int:
        """Delete every item of a session (its emotion buckets and its speech segments); returns how many."""
        keys = [
            {"DeleteRequest": {"Key": {"sessionId": {"S": session_id}, "sec": {"N": str(item["sec"])}}}}
            for item in query_all(
                self._client,
                TableName=self._table,
                KeyConditionExpression="sessionId = :s",
                ExpressionAttributeValues={":s": {"S": session_id}},
                ProjectionExpression="sec",
            )
        ]
        batch_write(self._client, self._table, keys)
        return len(keys)
