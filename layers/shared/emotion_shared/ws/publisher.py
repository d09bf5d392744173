"""The publisher: DynamoDB stream records of the emotions and sessions tables → channel events.

- Emotions table, ``INSERT``/``MODIFY`` of a bucket: for each ``sec``/``sei`` subscription on that session
  whose period the bucket completes (:mod:`.periods`), compute the period's numbers once and push one event
  per subscriber. A ``1s`` period needs no read at all (the bucket is in the record); longer ones read the
  period's buckets once per batch.
- Emotions table, ``INSERT``/``MODIFY`` of a speech segment (its own sort-key range, :mod:`..audio`): one ``sas``
  event per ``session_audio_sentiment`` subscriber of that session, the segment in the record (no read).
- Sessions table, ``MODIFY`` where ``meta.workerState`` changed: push ``sws`` to that session's subscribers.
  Heartbeats (``healthCheck`` only) cost one comparison and nothing else.

Pushes run concurrently. A connection that is gone (410) is removed with its subscriptions and never
affects the other subscribers. A record group that fails (DynamoDB error) is reported as a batch item
failure, so the event source mapping retries it (bisecting, then the on-failure destination); push
failures other than 410 are retried a few times, logged and counted, but never fail the batch (a retry
would re-send every other subscriber's event).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecordEventName,
    DynamoDBStreamEvent,
)

from ..audio import Segment, is_segment_key
from ..clock import now_ms
from ..dynamo import plain
from ..emotions import Bucket, EmotionStore
from . import periods, protocol
from .protocol import Channel
from .push import Pusher
from .store import ConnectionStore, Subscriber

logger = logging.getLogger(__name__)

_WRITES = (DynamoDBRecordEventName.INSERT, DynamoDBRecordEventName.MODIFY)


def table_of(arn: str | None) -> str:
    """``arn:aws:dynamodb:r:a:table/NAME/stream/…`` → ``NAME``."""
    parts = (arn or "").split("/")
    return parts[1] if len(parts) > 1 else ""


@dataclass
class PublishResult:
    records: int = 0
    events: int = 0
    sent: int = 0
    gone: int = 0
    failed: int = 0
    reads: int = 0
    failures: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0

    def response(self) -> dict[str, Any]:
        """The Lambda response of a stream handler with ``ReportBatchItemFailures``."""
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in self.failures]}


@dataclass
class _EmotionGroup:
    first_sequence: str
    buckets: dict[int, Bucket] = field(default_factory=dict)


@dataclass
class _SpeechGroup:
    first_sequence: str
    segments: list[Segment] = field(default_factory=list)


@dataclass
class _StateChange:
    sequence: str
    state: str


def _worker_state(image: Mapping[str, Any]) -> str | None:
    value = (image.get("meta") or {}).get("workerState")
    return str(value) if value is not None else None


class Publisher:
    def __init__(
        self,
        store: ConnectionStore,
        emotion_store: EmotionStore,
        pusher: Pusher,
        *,
        sessions_table: str,
        emotions_table: str,
        pool: ThreadPoolExecutor | None = None,
    ) -> None:
        self._store = store
        self._emotions = emotion_store
        self._pusher = pusher
        self._sessions_table = sessions_table
        self._emotions_table = emotions_table
        self._pool = pool

    def close(self) -> None:
        """Stop the push pool (tests, local stack shutdown)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------ entry point
    def process(self, records: Iterable[Mapping[str, Any]]) -> PublishResult:
        """Publish what a batch of stream records (the event's ``Records``) means to the subscribers."""
        started = time.perf_counter()
        result = PublishResult()
        emotion_groups: dict[str, _EmotionGroup] = {}
        speech: dict[str, _SpeechGroup] = {}
        state_changes: dict[str, list[_StateChange]] = {}
        for record in DynamoDBStreamEvent({"Records": list(records)}).records:
            result.records += 1
            table = table_of(record.event_source_arn)
            if record.event_name not in _WRITES or record.dynamodb is None:
                continue
            data = record.dynamodb
            sequence = data.sequence_number or ""
            if table == self._emotions_table and data.new_image:
                item = plain(data.new_image)
                if is_segment_key(item["sec"]):
                    speech.setdefault(str(item["sessionId"]), _SpeechGroup(sequence)).segments.append(
                        Segment.from_item(item)
                    )
                    continue
                group = emotion_groups.setdefault(str(item["sessionId"]), _EmotionGroup(sequence))
                bucket = Bucket.from_item(item)
                group.buckets[bucket.sec] = bucket
            elif table == self._sessions_table:
                new = _worker_state(data.new_image)
                if new is not None and new != _worker_state(data.old_image):
                    session_id = str(data.keys.get("id", ""))
                    state_changes.setdefault(session_id, []).append(_StateChange(sequence, new))
        for session_id, changes in state_changes.items():
            self._guard(result, changes[0].sequence, self._publish_states, session_id, changes)
        for session_id, group in emotion_groups.items():
            self._guard(result, group.first_sequence, self._publish_emotions, session_id, group)
        for session_id, speech_group in speech.items():
            self._guard(result, speech_group.first_sequence, self._publish_speech, session_id, speech_group)
        result.elapsed_ms = (time.perf_counter() - started) * 1000
        if result.events or result.failures:
            logger.info(
                "published %d events (%d sent, %d gone, %d failed) from %d records in %.1f ms",
                result.events, result.sent, result.gone, result.failed, result.records, result.elapsed_ms,
            )
        return result

    def _guard(self, result: PublishResult, sequence: str, fn: Any, *args: Any) -> None:
        try:
            fn(result, *args)
        except Exception:  # one session's failure must not stop the others; the record is retried
            logger.exception("publishing for session %s failed; reporting record %s for retry", args[0], sequence)
            result.failures.append(sequence)

    # ------------------------------------------------------------------ worker state
    def _publish_states(self, result: PublishResult, session_id: str, changes: list[_StateChange]) -> None:
        subscribers = [s for s in self._store.subscribers(session_id) if s.channel is Channel.WORKER_STATE]
        result.reads += 1
        if not subscribers:
            return
        ts = now_ms()
        messages = [
            (s.connection_id, protocol.event(s.subscription_id, ts, "sws", change.state))
            for change in changes
            for s in subscribers
        ]
        self._deliver(result, session_id, subscribers, messages)

    # ------------------------------------------------------------------ speech segments
    def _publish_speech(self, result: PublishResult, session_id: str, group: _SpeechGroup) -> None:
        subscribers = [s for s in self._store.subscribers(session_id) if s.channel is Channel.AUDIO_SENTIMENT]
        result.reads += 1
        if not subscribers:
            return
        messages = [
            (s.connection_id, protocol.event(s.subscription_id, s.origin_ms + round(seg.end * 1000),
                                             Channel.AUDIO_SENTIMENT.event_type, seg.view()))
            for seg in sorted(group.segments, key=lambda g: g.start)
            for s in subscribers
        ]
        self._deliver(result, session_id, subscribers, messages)

    # ------------------------------------------------------------------ emotions
    def _publish_emotions(self, result: PublishResult, session_id: str, group: _EmotionGroup) -> None:
        subscribers = [s for s in self._store.subscribers(session_id) if s.channel.periodic and s.freq]
        result.reads += 1
        if not subscribers:
            return
        secs = sorted(group.buckets)
        freqs = sorted({s.freq for s in subscribers if s.freq})
        previous: int | None = None
        if any(f > 1 for f in freqs):
            previous = self._emotions.previous_second(session_id, secs[0])
            result.reads += 1
        due = {f: periods.due_periods(secs, f, previous) for f in freqs}
        buckets = self._period_buckets(result, session_id, group, due)

        data: dict[tuple[int, int, Channel], Any] = {}
        extras: dict[tuple[int, int], dict[str, Any]] = {}

        def inside(freq: int, period: int) -> list[Bucket]:
            start, end = periods.bounds(period, freq)
            return [b for sec, b in buckets.items() if start <= sec < end]

        def payload(freq: int, period: int, channel: Channel) -> Any:
            key = (freq, period, channel)
            if key not in data:
                data[key] = (periods.counts_data(inside(freq, period)) if channel is Channel.EMOTION_COUNTS
                             else periods.intensities_data(inside(freq, period)))
            return data[key]

        def extra(freq: int, period: int) -> dict[str, Any]:
            if (freq, period) not in extras:
                extras[(freq, period)] = periods.frames_extra(inside(freq, period))
            return extras[(freq, period)]

        messages = []
        for s in subscribers:
            assert s.freq is not None
            for period in due[s.freq]:
                ts = s.origin_ms + periods.bounds(period, s.freq)[1] * 1000
                messages.append(
                    (s.connection_id, protocol.event(s.subscription_id, ts, s.channel.event_type,
                                                     payload(s.freq, period, s.channel), extra(s.freq, period)))
                )
        if messages:
            self._deliver(result, session_id, subscribers, messages)

    def _period_buckets(
        self, result: PublishResult, session_id: str, group: _EmotionGroup, due: Mapping[int, list[int]]
    ) -> dict[int, Bucket]:
        """The buckets of every due period: from the records for 1 s periods, one range read otherwise."""
        buckets = dict(group.buckets)
        ranges = [periods.bounds(p, f) for f, ps in due.items() if f > 1 for p in ps]
        if ranges:
            lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
            for bucket in self._emotions.read(session_id, lo, hi):
                buckets.setdefault(bucket.sec, bucket)
            result.reads += 1
        return buckets

    # ------------------------------------------------------------------ delivery
    def _deliver(
        self,
        result: PublishResult,
        session_id: str,
        subscribers: list[Subscriber],
        messages: list[tuple[str, str]],
    ) -> None:
        result.events += len(messages)
        gone: set[str] = set()
        for delivery in self._pusher.send_many(messages, self._pool):
            result.sent += delivery.sent
            result.failed += delivery.failed
            if delivery.gone:
                gone.add(delivery.connection_id)
        for connection_id in gone:
            result.gone += 1
            logger.info("connection %s is gone: removing it and its subscriptions", connection_id)
            self._store.remove(connection_id)
            # Subscriptions the connection item no longer listed (a racing subscribe) go too.
            self._store.delete_subscription_items(
                (session_id, s.subscription_id) for s in subscribers if s.connection_id == connection_id
            )
