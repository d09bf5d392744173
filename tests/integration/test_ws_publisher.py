"""The publisher on real DynamoDB stream records (moto): period events with the REST timeline's numbers, late
periods, worker-state changes, gone connections and failures that never break the batch for others."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from emotion_shared import emotions
from emotion_shared.audio import Segment, SegmentStore
from emotion_shared.emotions import Bucket, EmotionStore
from emotion_shared.session_models import WorkerState
from emotion_shared.sessions import Limits, SessionRepository
from emotion_shared.ws.protocol import parse_target
from emotion_shared.ws.publisher import Publisher
from emotion_shared.ws.push import Pusher
from emotion_shared.ws.store import ConnectionStore

from emotionctl.local.streams import lambda_record

ORIGIN_MS = 1_700_000_000_000


class FakeManagement:
    """Stands in for the apigatewaymanagementapi client: records posts; some connections are gone (410) or
    failing (500)."""

    def __init__(self) -> None:
        self.posts: dict[str, list[Any]] = defaultdict(list)
        self.gone: set[str] = set()
        self.failing: set[str] = set()

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:
        if ConnectionId in self.gone:
            raise ClientError({"Error": {"Code": "GoneException", "Message": ""},
                               "ResponseMetadata": {"HTTPStatusCode": 410}}, "PostToConnection")
        if ConnectionId in self.failing:
            raise ClientError({"Error": {"Code": "InternalServerErrorException", "Message": "boom"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, "PostToConnection")
        self.posts[ConnectionId].append(json.loads(Data))

    def delete_connection(self, ConnectionId: str) -> None:
        self.gone.add(ConnectionId)


class StreamReader:
    """Reads a table's stream from 'now' on and returns real Lambda stream records."""

    def __init__(self, endpoint: str, table: str) -> None:
        db = boto3.client("dynamodb", endpoint_url=endpoint)
        self.client = boto3.client("dynamodbstreams", endpoint_url=endpoint)
        self.arn = db.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        shard = self.client.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self.iterator = self.client.get_shard_iterator(StreamArn=self.arn, ShardId=shard,
                                                       ShardIteratorType="LATEST")["ShardIterator"]

    def read(self) -> list[dict[str, Any]]:
        response = self.client.get_records(ShardIterator=self.iterator)
        self.iterator = response["NextShardIterator"]
        return [lambda_record(r, self.arn, "us-east-1") for r in response["Records"]]


@pytest.fixture
def world(moto_server: Any, dynamodb: Any, tables: dict[str, str]) -> Any:
    class World:
        management = FakeManagement()
        store = ConnectionStore(dynamodb, tables["CONNECTIONS_TABLE"])
        emotion_store = EmotionStore(dynamodb, tables["EMOTIONS_TABLE"])
        sessions = SessionRepository(dynamodb, tables["SESSIONS_TABLE"], tables["CONTROL_TABLE"])
        emotions_stream = StreamReader(moto_server.endpoint, tables["EMOTIONS_TABLE"])
        sessions_stream = StreamReader(moto_server.endpoint, tables["SESSIONS_TABLE"])
        pool = ThreadPoolExecutor(4)
        publisher = Publisher(store, emotion_store, Pusher(management, sleep=lambda s: None),
                              sessions_table=tables["SESSIONS_TABLE"], emotions_table=tables["EMOTIONS_TABLE"],
                              pool=pool)

        def connect(self, cid: str, user: str = "alice") -> Any:
            self.store.open(cid, "127.0.0.1", 1)
            self.store.authenticate(cid, user, "standard", 1, "h" * 64)
            return self.store.get(cid)

        def subscribe(self, cid: str, channel: str, key: str, sub: str) -> None:
            connection = self.store.get(cid)
            self.store.subscribe(connection, parse_target({"channel": channel, "key": key}), sub,
                                 origin_ms=ORIGIN_MS, now_ms=1, max_per_connection=5, max_per_user=10)

        def write(self, session: str, buckets: list[Bucket]) -> Any:
            self.emotion_store.write(session, buckets)
            return self.publisher.process(self.emotions_stream.read())

    w = World()
    yield w
    w.pool.shutdown()


SID = "65f1a2b3c4d5e6f708090a0b"


def faces(sec: int, rng: random.Random) -> Bucket:
    bucket = Bucket(sec=sec, frames=5)
    if sec % 7 == 6:
        return bucket  # nobody in view this second
    for _ in range(rng.randint(1, 6)):
        scores = [rng.random() ** 3 for _ in emotions.EMOTIONS]
        total = sum(scores)
        bucket.observe(f"track{rng.randint(1, 3)}", [s / total for s in scores])
    return bucket


def test_period_events_carry_the_rest_timeline_numbers(world: Any) -> None:
    # Given subscriptions on several periods
    for cid in ("a", "b"):
        world.connect(cid)
    world.subscribe("a", "session_emotions_counts", f"{SID}:1s", "00000000000000a1")
    world.subscribe("a", "session_emotions_intensities", f"{SID}:5s", "00000000000000a5")
    world.subscribe("b", "session_emotions_counts", f"{SID}:10s", "00000000000000b0")
    world.subscribe("b", "session_emotions_intensities", f"{SID}:3s", "00000000000000b3")
    # When the worker writes 30 seconds of buckets, a few per batch
    rng = random.Random(5)
    written = [faces(sec, rng) for sec in range(30)]
    for start in range(0, 30, 4):
        result = world.write(SID, written[start:start + 4])
        assert result.failures == [] and result.failed == 0
    # Then every period arrived once, in order, stamped with its end, with the REST timeline's numbers
    by_sub: dict[str, list[Any]] = defaultdict(list)
    for cid in ("a", "b"):
        for sub, ts, kind, data, extra in world.management.posts[cid]:
            by_sub[sub].append((ts, kind, data[0], extra))
    for sub, freq, kind in (("00000000000000a1", 1, "sec"), ("00000000000000a5", 5, "sei"),
                            ("00000000000000b0", 10, "sec"), ("00000000000000b3", 3, "sei")):
        events = by_sub[sub]
        assert [ts for ts, _, _, _ in events] == [ORIGIN_MS + (k + 1) * freq * 1000 for k in range(30 // freq)]
        assert {k for _, k, _, _ in events} == {kind}
        timeline = {e["start"]: e for e in emotions.timeline(written, granularity=freq)}
        for k, (_, _, data, extra) in enumerate(events):
            inside = [b for b in written if k * freq <= b.sec < (k + 1) * freq]
            # the fifth element: the frames the period is based on, as the REST timeline counts them
            assert extra == {"frames": emotions.frame_counts(inside)}
            if kind == "sec":
                assert data == emotions.totals(inside)
            elif k * freq in timeline:
                assert data == timeline[k * freq]["emotions"]
            else:
                assert all(v["people"] == 0 for v in data.values())


def test_a_period_without_its_last_second_is_sent_when_the_next_one_starts(world: Any) -> None:
    world.connect("a")
    world.subscribe("a", "session_emotions_counts", f"{SID}:5s", "00000000000000a5")
    rng = random.Random(1)
    first = [faces(s, rng) for s in range(0, 3)]
    world.write(SID, first)
    assert world.management.posts["a"] == []
    # the worker stalled after second 2 and resumed at 7: [0, 5) is complete now, with what it has
    world.write(SID, [faces(7, rng)])
    (event,) = world.management.posts["a"]
    assert event[1] == ORIGIN_MS + 5000
    assert event[3] == [emotions.totals(first)]
    # and [5, 10) when its last second arrives
    world.write(SID, [faces(8, rng), faces(9, rng)])
    assert [e[1] for e in world.management.posts["a"]] == [ORIGIN_MS + 5000, ORIGIN_MS + 10_000]


def test_worker_state_changes_and_heartbeats(world: Any) -> None:
    session = world.sessions.create(user="alice", product="standard", name="s", stream_uri="rtsp://h/x",
                                    config={}, now_ms=ORIGIN_MS, limits=Limits(10, 5, 30))
    sid = session["id"]
    world.connect("a")
    world.subscribe("a", "session_worker_state", sid, "00000000000000f1")
    world.sessions_stream.read()  # the create
    # a state change is pushed
    world.sessions.heartbeat(sid, WorkerState.CONNECTING, ORIGIN_MS + 10)
    world.sessions.heartbeat(sid, WorkerState.WORKING, ORIGIN_MS + 20)
    result = world.publisher.process(world.sessions_stream.read())
    assert [e[3] for e in world.management.posts["a"]] == [["connecting"], ["working"]]
    assert result.events == 2
    # heartbeats that change nothing cost no read and send nothing
    world.sessions.heartbeat(sid, WorkerState.WORKING, ORIGIN_MS + 1000)
    world.sessions.heartbeat(sid, WorkerState.WORKING, ORIGIN_MS + 2000)
    result = world.publisher.process(world.sessions_stream.read())
    assert (result.records, result.reads, result.events) == (2, 0, 0)
    assert len(world.management.posts["a"]) == 2


def test_speech_segments_go_to_audio_subscribers_only(world: Any, dynamodb: Any, tables: dict[str, str]) -> None:
    world.connect("a")
    world.connect("b")
    world.subscribe("a", "session_audio_sentiment", SID, "00000000000000c1")
    world.subscribe("b", "session_emotions_counts", f"{SID}:1s", "00000000000000c2")
    segments = SegmentStore(dynamodb, tables["EMOTIONS_TABLE"])
    pos = {"positive": 0.6, "neutral": 0.4, "negative": 0.0, "compound": 0.8}
    neg = {"positive": 0.0, "neutral": 0.3, "negative": 0.7, "compound": -0.9}
    seg1, seg2 = Segment(1.25, 3.5, "what a great day", pos), Segment(4.0, 6.75, "I hate this", neg)
    segments.write(SID, [seg1, seg2])
    world.emotion_store.write(SID, [faces(0, random.Random(4))])
    result = world.publisher.process(world.emotions_stream.read())
    assert result.failures == [] and result.failed == 0
    # one sas event per segment, stamped with its end, the transcript's view as data; no emotion event from it
    assert world.management.posts["a"] == [
        ["00000000000000c1", ORIGIN_MS + 3500, "sas", [seg1.view()]],
        ["00000000000000c1", ORIGIN_MS + 6750, "sas", [seg2.view()]],
    ]
    assert [e[2] for e in world.management.posts["b"]] == ["sec"]


def test_a_gone_connection_is_removed_and_never_breaks_the_others(world: Any) -> None:
    for cid in ("alive1", "gone", "alive2"):
        world.connect(cid)
        world.subscribe(cid, "session_emotions_counts", f"{SID}:1s", f"{abs(hash(cid)) % 16**16:016x}")
    world.management.gone.add("gone")
    result = world.write(SID, [faces(0, random.Random(2))])
    assert (result.sent, result.gone, result.failures) == (2, 1, [])
    assert len(world.management.posts["alive1"]) == len(world.management.posts["alive2"]) == 1
    assert world.store.get("gone") is None
    assert {s.connection_id for s in world.store.subscribers(SID)} == {"alive1", "alive2"}
    # and the next bucket is not even tried on it
    result = world.write(SID, [faces(1, random.Random(3))])
    assert (result.sent, result.gone) == (2, 0)


def test_a_stale_subscription_without_its_connection_item_is_cleaned_on_410(world: Any, dynamodb: Any,
                                                                            tables: dict[str, str]) -> None:
    world.connect("ghost")
    world.subscribe("ghost", "session_emotions_counts", f"{SID}:1s", "00000000000000e1")
    dynamodb.delete_item(TableName=tables["CONNECTIONS_TABLE"], Key={"pk": {"S": "conn#ghost"}, "sk": {"S": "conn"}})
    world.management.gone.add("ghost")
    result = world.write(SID, [faces(0, random.Random(4))])
    assert result.gone == 1
    assert world.store.subscribers(SID) == []


def test_push_failures_are_counted_not_raised(world: Any) -> None:
    for cid in ("ok", "flaky"):
        world.connect(cid)
        world.subscribe(cid, "session_emotions_counts", f"{SID}:1s", f"{abs(hash(cid)) % 16**16:016x}")
    world.management.failing.add("flaky")
    result = world.write(SID, [faces(0, random.Random(6))])
    assert (result.sent, result.failed, result.failures) == (1, 1, [])
    assert world.store.get("flaky") is not None  # a failure is not a disconnect


def test_one_failing_session_is_reported_for_retry_and_the_others_still_publish(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "65f1a2b3c4d5e6f708090a0c"
    world.connect("a")
    world.subscribe("a", "session_emotions_counts", f"{SID}:1s", "00000000000000a1")
    world.subscribe("a", "session_emotions_counts", f"{other}:1s", "00000000000000a2")
    real = world.store.subscribers

    def broken(session_id: str) -> Any:
        if session_id == other:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": ""}}, "Query")
        return real(session_id)

    monkeypatch.setattr(world.store, "subscribers", broken)
    rng = random.Random(7)
    world.emotion_store.write(other, [faces(0, rng)])
    world.emotion_store.write(SID, [faces(0, rng)])
    records = world.emotions_stream.read()
    result = world.publisher.process(records)
    failed_seq = next(
        r["dynamodb"]["SequenceNumber"] for r in records if r["dynamodb"]["Keys"]["sessionId"]["S"] == other
    )
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": failed_seq}]}
    assert [e[0] for e in world.management.posts["a"]] == ["00000000000000a1"]
