"""The worker's control logic against moto (real DynamoDB calls), with a scripted stream in place of FFmpeg.

Every end of a session is covered here, quickly and deterministically: stop flag, SIGTERM, stream drop →
reconnecting → stream_ended (and a recovery), unreachable at start, resolution above 1080p at open and
mid-stream, maximum duration, a crash in the analysis, DynamoDB throttling (retried, nothing lost) and
an exhausted retry budget (fails loudly). tests/integration/test_worker.py runs the same worker as a
subprocess on real RTMP streams with the real models.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import testsupport
from analyzer.finder import FaceFinder
from analyzer.ingest import IngestError, ResolutionExceeded, StreamEnded, StreamUnreachable, UnsupportedStream
from analyzer.pipeline import FrameAnalyzer
from analyzer.settings import WorkerSettings
from analyzer.worker import Worker
from botocore.exceptions import ClientError
from emotion_shared.config import Settings
from emotion_shared.emotions import EMOTIONS, EmotionStore
from emotion_shared.lifecycle_events import EVENT_SOURCE, validate_event
from emotion_shared.sessions import Limits, SessionRepository

SECRET = "s3cr3t-stream-key"
URI = f"rtmp://127.0.0.1:1935/live/{SECRET}"


# --------------------------------------------------------------------------------------- scripted stream
# The scripted stream raises the real ingest errors: the worker's reconnect policy
# (ingest.connect_with_retry) retries exactly ingest.StreamUnreachable.

@dataclass
class Segment:
    """One connection: ``seconds`` of frames in real time, then ``end``: ended | resolution | block."""

    seconds: float
    fps: float = 10.0
    end: str = "ended"
    width: int = 64
    height: int = 48


@dataclass
class _Codec:
    width: int
    height: int


@dataclass
class _Video:
    average_rate: float
    codec_context: _Codec


@dataclass
class _Streams:
    video: list[_Video]


@dataclass
class Container:
    segment: Segment
    streams: _Streams = field(init=False)
    closed: bool = False

    def __post_init__(self) -> None:
        seg = self.segment
        self.streams = _Streams([_Video(seg.fps, _Codec(seg.width, seg.height))])

    def close(self) -> None:
        self.closed = True


FACE = np.zeros((48, 64), np.uint8)
FACE[0, 0] = 255


class ScriptedIngest:
    """Stands in for ``analyzer.ingest``: each ``open_stream`` takes the next step of the script."""

    IngestError = IngestError
    StreamUnreachable = StreamUnreachable
    StreamEnded = StreamEnded
    ResolutionExceeded = ResolutionExceeded
    UnsupportedStream = UnsupportedStream

    def __init__(self, *script: Segment | str, then: str = "unreachable") -> None:
        self.script = list(script)
        self.then = then
        self.opens = 0
        self.blocked = threading.Event()
        self.audio_sinks: list[Any] = []  # the audio sink the worker handed to each frames() call

    def open_stream(self, uri: str, timeout: tuple[float, float]) -> Container:
        assert isinstance(timeout, tuple)
        self.opens += 1
        step = self.script.pop(0) if self.script else self.then
        if step == "unreachable":
            raise StreamUnreachable(f"Connection refused: {uri}")
        if step == "resolution":
            raise ResolutionExceeded("2560x1440 is above the 1920x1080 limit")
        assert isinstance(step, Segment)
        return Container(step)

    def describe_sources(self, container: Container) -> list[dict[str, Any]]:
        seg = container.segment
        return [{"type": "video", "codec": "h264", "width": seg.width, "height": seg.height, "fps": seg.fps}]

    def frames(self, container: Container, stop: threading.Event, catch_up: Any = None, audio: Any = None) -> Any:
        self.audio_sinks.append(audio)
        seg = container.segment
        start = time.time()
        n = round(seg.seconds * seg.fps)
        for i in range(n):
            due = start + i / seg.fps
            time.sleep(max(0.0, due - time.time()))
            if stop.is_set():
                return
            yield _Frame(time.time(), i / seg.fps, seg.width, seg.height, FACE)
        if seg.end == "ended":
            raise StreamEnded(f"[Errno 5] Input/output error: '{URI}'")
        if seg.end == "resolution":
            raise ResolutionExceeded("frame of 2560x1440 is above the 1920x1080 limit")
        if seg.end == "block":  # a read that never returns and ignores the stop flag
            self.blocked.set()
            time.sleep(3600)


@dataclass
class _Frame:
    received: float
    pts_seconds: float | None
    width: int
    height: int
    luma: np.ndarray
    chroma: tuple[np.ndarray, np.ndarray] | None = None


# ---------------------------------------------------------------------------------------- fake models
@dataclass
class _Det:
    box: tuple[float, float, float, float]
    score: float = 0.9
    keypoints: None = None


class _Detector:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def detect(self, luma: np.ndarray, min_face: float = 0.0) -> list[_Det]:
        if self.fail:
            raise RuntimeError("detector exploded")
        return [_Det((10.0, 10.0, 30.0, 30.0))] if luma[0, 0] == 255 else []


class _Classifier:
    name = "fake"
    size = 64
    colour = "gray"
    crop_scale = 1.25

    def classify(self, crops: np.ndarray) -> np.ndarray:
        out = np.full((len(crops), 7), 0.02, np.float32)
        out[:, EMOTIONS.index("happiness")] = 0.88
        return out


# ------------------------------------------------------------------------------------------- clients
class RecordingDynamo:
    """The real (moto) client, recording the worker states written and optionally throttling batch writes."""

    def __init__(self, inner: Any, throttle: int = 0, unprocessed: int = 0) -> None:
        self._inner = inner
        self.states: list[str] = []
        self.throttle = throttle  # how many batch_write_item calls fail with a throttling error
        self.unprocessed = unprocessed  # how many calls write only the first item and return the rest
        self.batch_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def update_item(self, **kwargs: Any) -> Any:
        ws = kwargs.get("ExpressionAttributeValues", {}).get(":ws")
        if ws:
            self.states.append(ws["S"])
        return self._inner.update_item(**kwargs)

    def batch_write_item(self, **kwargs: Any) -> Any:
        self.batch_calls += 1
        if self.throttle > 0:
            self.throttle -= 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                "BatchWriteItem",
            )
        if self.unprocessed > 0:
            (table, requests), = kwargs["RequestItems"].items()
            if len(requests) > 1:
                self.unprocessed -= 1
                self._inner.batch_write_item(RequestItems={table: requests[:1]})
                return {"UnprocessedItems": {table: requests[1:]}}
        return self._inner.batch_write_item(**kwargs)


class RecordingEvents:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}


# -------------------------------------------------------------------------------------------- harness
@dataclass
class Run:
    worker: Worker
    repo: SessionRepository
    store: EmotionStore
    db: RecordingDynamo
    events: RecordingEvents
    session_id: str
    created_ms: int
    thread: threading.Thread
    result: dict[str, Any]

    def wait(self, timeout: float = 10.0) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not exit"
        return int(self.result["code"])

    def session(self) -> dict[str, Any]:
        item = self.repo.get(self.session_id)
        assert item is not None
        return item

    def buckets(self) -> list[Any]:
        return list(self.store.read(self.session_id))

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        testsupport.wait_for(predicate, timeout, "the condition")


@pytest.fixture
def start(tables: dict[str, str], dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    runs: list[Run] = []

    def _start(
        ingest: ScriptedIngest,
        *,
        env: dict[str, str] | None = None,
        detector: _Detector | None = None,
        db: RecordingDynamo | None = None,
        created_ago: float = 0.0,
        fps: float = 5.0,
        stop_first: bool = False,
        audio: bool | None = None,
    ) -> Run:
        repo = SessionRepository(dynamodb, tables["SESSIONS_TABLE"], tables["CONTROL_TABLE"])
        created_ms = int((time.time() - created_ago) * 1000)
        item = repo.create(
            user="u1",
            product="p",
            name="test",
            stream_uri=URI,
            config={"removeMedia": True, "analysisFps": fps, **({} if audio is None else {"audioAnalysis": audio})},
            now_ms=created_ms,
            limits=Limits(max_active=10, max_active_per_user=10, retention_days=30),
        )
        if stop_first:
            repo.request_stop(item["id"], "u1", int(time.time() * 1000))
        full_env = {
            **tables,
            "SESSION_ID": item["id"],
            "ALLOW_PRIVATE_STREAM_HOSTS": "true",
            "EVENT_BUS_NAME": "bus",
            "RECONNECT_WINDOW_SECONDS": "2",
            "TASK_ARN": "arn:aws:ecs:us-east-1:123456789012:task/c/t1",
            **(env or {}),
        }
        settings = WorkerSettings.from_env(full_env)
        shared = Settings.from_env(full_env)
        recording = db or RecordingDynamo(dynamodb)
        if db is not None:
            db._inner = dynamodb
        events = RecordingEvents()
        analyzer = FrameAnalyzer(FaceFinder(detector or _Detector(), min_face=0.0), _Classifier())
        worker = Worker(settings, shared, dynamodb=recording, events=events, analyzer=analyzer, ingest=ingest)
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.setdefault("code", worker.run()), daemon=True)
        thread.start()
        run = Run(
            worker, repo, EmotionStore(dynamodb, tables["EMOTIONS_TABLE"]), recording, events, item["id"],
            created_ms, thread, result,
        )
        runs.append(run)
        return run

    yield _start
    for run in runs:
        run.worker.stop_signal.set()
        run.thread.join(5)


def _working(run: Run) -> bool:
    return (run.session().get("meta") or {}).get("workerState") == "working"


# ----------------------------------------------------------------------------------------------- tests
def test_stop_flag_flushes_the_last_second_and_exits_0(start: Any) -> None:
    ingest = ScriptedIngest(Segment(60, end="block"))
    run = start(ingest)
    run.wait_for(lambda: len(run.buckets()) >= 2)
    item = run.session()
    # Then the session shows a working worker, its sources, its task and live stats
    assert item["meta"]["workerState"] == "working"
    assert item["sources"] == [{"type": "video", "codec": "h264", "width": 64, "height": 48, "fps": 10.0}]
    assert item["taskArn"].endswith("/t1")
    assert item["meta"]["healthCheck"]
    # and announced it with one whole SessionStarted event of the documented shape
    (entry,) = run.events.entries
    started = {"sessionId": run.session_id, "user": "u1", "state": "active", "stopReason": None}
    assert {**entry, "Detail": json.loads(entry["Detail"])} == {
        "EventBusName": "bus", "Source": EVENT_SOURCE, "DetailType": "SessionStarted",
        "Detail": started,
    }
    assert validate_event({"source": entry["Source"], "detail-type": entry["DetailType"], "detail": started}) == started
    # When the user stops the session
    stopped_at = time.time()
    run.repo.request_stop(run.session_id, "u1", int(stopped_at * 1000))
    code = run.wait(timeout=4.0)
    assert code == 0
    item = run.session()
    assert item["state"] == "finished" and item["meta"]["stopReason"] == "user_request"
    assert item["meta"]["workerState"] == "stopped"
    buckets = run.buckets()
    # the second in which the stop arrived was flushed, every second has the face
    assert buckets[-1].sec >= int(stopped_at - run.created_ms / 1000)
    assert [b.sec for b in buckets] == list(range(buckets[0].sec, buckets[-1].sec + 1))
    assert all(set(b.faces) == {"f1"} for b in buckets if b.frames)
    assert item["meta"]["stats"]["analysedFrames"] > 0


def test_sigterm_exits_0_without_waiting_for_a_blocked_read(start: Any) -> None:
    ingest = ScriptedIngest(Segment(1.5, end="block"))
    run = start(ingest)
    assert ingest.blocked.wait(10)  # the frame thread is now stuck in a read
    run.worker.stop_signal.set()  # what the SIGTERM handler does
    assert run.wait(timeout=4.0) == 0
    item = run.session()
    assert item["state"] == "active"  # the state machine finalises a task it stopped
    assert item["meta"]["workerState"] == "stopped"
    buckets = run.buckets()
    assert sum(b.frames for b in buckets) == run.worker._pipeline.stats.analysed  # the open second was flushed


def test_stream_drop_reconnects_then_ends_with_stream_ended(start: Any) -> None:
    ingest = ScriptedIngest(Segment(1.2), then="unreachable")
    run = start(ingest, env={"RECONNECT_WINDOW_SECONDS": "1.5"})
    assert run.wait(timeout=10) == 0
    item = run.session()
    assert item["state"] == "finished" and item["meta"]["stopReason"] == "stream_ended"
    states = run.db.states
    assert states.index("connecting") < states.index("working") < states.index("reconnecting")
    assert ingest.opens >= 3  # retried with backoff within the window
    assert sum(b.frames for b in run.buckets()) == run.worker._pipeline.stats.analysed


def test_stream_drop_and_recovery_within_the_window(start: Any) -> None:
    ingest = ScriptedIngest(Segment(1.2), "unreachable", Segment(1.2), then="unreachable")
    run = start(ingest, env={"RECONNECT_WINDOW_SECONDS": "1.0"})
    assert run.wait(timeout=10) == 0
    states = [s for i, s in enumerate(run.db.states) if i == 0 or run.db.states[i - 1] != s]  # transitions
    assert states[:5] == ["connecting", "working", "reconnecting", "working", "reconnecting"]
    assert run.session()["meta"]["stopReason"] == "stream_ended"
    buckets = run.buckets()
    assert sum(b.frames for b in buckets) == run.worker._pipeline.stats.analysed
    assert len(run.events.entries) == 1  # SessionStarted only on the first working


def test_unreachable_at_start_fails_with_stream_unreachable_and_never_logs_the_key(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ingest = ScriptedIngest(then="unreachable")
    run = start(ingest, env={"RECONNECT_WINDOW_SECONDS": "1"})
    assert run.wait(timeout=8) == 0
    item = run.session()
    assert item["state"] == "failed" and item["meta"]["stopReason"] == "stream_unreachable"
    assert SECRET not in item["meta"].get("error", "")
    assert "rtmp://127.0.0.1:1935/…" in item["meta"]["error"]
    assert ingest.opens >= 2
    assert run.buckets() == []
    assert "working" not in run.db.states
    assert SECRET not in caplog.text


def test_resolution_exceeded_at_open_writes_no_emotion_data(start: Any) -> None:
    run = start(ScriptedIngest("resolution"))
    assert run.wait() == 0
    item = run.session()
    assert item["state"] == "finished" and item["meta"]["stopReason"] == "resolution_exceeded"
    assert run.buckets() == []
    assert run.db.batch_calls == 0


def test_resolution_exceeded_mid_stream_leaves_no_emotion_data(start: Any) -> None:
    run = start(ScriptedIngest(Segment(2.3, end="resolution")))
    assert run.wait() == 0
    assert run.session()["meta"]["stopReason"] == "resolution_exceeded"
    assert run.buckets() == []


def test_max_duration(start: Any) -> None:
    run = start(ScriptedIngest(Segment(60, end="block")), env={"MAX_SESSION_SECONDS": "10"}, created_ago=9.0)
    assert run.wait() == 0
    item = run.session()
    assert item["state"] == "finished" and item["meta"]["stopReason"] == "max_duration"
    assert run.buckets()  # what was analysed until then is kept


def test_unexpected_error_is_worker_error_with_its_text(start: Any) -> None:
    run = start(ScriptedIngest(Segment(5)), detector=_Detector(fail=True))
    assert run.wait() == 1
    item = run.session()
    assert item["state"] == "failed" and item["meta"]["stopReason"] == "worker_error"
    assert item["meta"]["workerState"] == "error"
    assert "detector exploded" in item["meta"]["error"]


def test_throttled_writes_are_retried_and_nothing_is_lost(start: Any, dynamodb: Any) -> None:
    db = RecordingDynamo(dynamodb, throttle=3, unprocessed=2)
    run = start(ScriptedIngest(Segment(3.2, fps=20)), db=db, fps=20.0, env={"RECONNECT_WINDOW_SECONDS": "0.5"})
    assert run.wait() == 0
    assert db.throttle == 0 and db.batch_calls > 3
    buckets = run.buckets()
    analysed = run.worker._pipeline.stats.analysed
    assert sum(b.frames for b in buckets) == analysed
    assert sum(c for b in buckets for per in b.faces.values() for c, _ in per.values()) == analysed
    assert [b.sec for b in buckets] == list(range(buckets[0].sec, buckets[-1].sec + 1))


def test_exhausted_write_retries_fail_loudly(start: Any, dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from emotion_shared import dynamo

    monkeypatch.setattr(dynamo, "backoff_delays", lambda attempts, **_: iter([0.01] * attempts))
    db = RecordingDynamo(dynamodb, throttle=10_000)
    run = start(ScriptedIngest(Segment(30, end="block")), db=db)
    assert run.wait() == 1
    item = run.session()
    assert item["state"] == "failed" and item["meta"]["stopReason"] == "worker_error"
    assert "still failing" in item["meta"]["error"]


def test_session_already_ended_before_start(start: Any) -> None:
    # a session stopped before its worker read it: the worker exits at once, without connecting
    ingest = ScriptedIngest(Segment(60, end="block"))
    run = start(ingest, stop_first=True)
    assert run.wait() == 0
    assert ingest.opens == 0
    item = run.session()
    assert item["state"] == "finished" and item["meta"]["workerState"] == "stopped"


def test_a_stream_that_ended_is_not_reported_as_an_error(start: Any) -> None:
    run = start(ScriptedIngest(Segment(0.5)), env={"RECONNECT_WINDOW_SECONDS": "0.3"})
    assert run.wait() == 0
    meta = run.session()["meta"]
    assert meta["stopReason"] == "stream_ended" and "error" not in meta


@pytest.mark.parametrize("audio", [None, True, False])
def test_audio_analysis_follows_the_session_config(start: Any, audio: bool | None) -> None:
    """On by default: the frame thread gets the audio thread's sink (the thread itself starts with the first
    audio chunk, so this video-only stream costs nothing); ``audioAnalysis: false`` passes none."""
    ingest = ScriptedIngest(Segment(60, end="block"))
    run = start(ingest, audio=audio)
    run.wait_for(lambda: len(run.buckets()) >= 1)
    assert len(ingest.audio_sinks) == 1
    if audio is False:
        assert ingest.audio_sinks == [None]
        assert not any(k.startswith("audio") for k in run.session()["meta"].get("stats", {}))
    else:
        assert callable(ingest.audio_sinks[0])
        run.wait_for(lambda: "audioSeconds" in run.session()["meta"].get("stats", {}))
        stats = run.session()["meta"]["stats"]
        assert (stats["audioSeconds"], stats["audioSegments"], stats["audioSkippedSeconds"]) == (0, 0, 0)
