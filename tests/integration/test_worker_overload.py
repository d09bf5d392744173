"""A worker starved of CPU on a real live stream keeps analysing recent frames, says it is degraded, and recovers.

``python -m analyzer.worker`` (real models, real ingest, moto for DynamoDB and EventBridge) analyses a looped
1280x720 30 fps RTMP stream of a real face. Then the test starves it: the worker process is suspended
(SIGSTOP) for 225 ms of every 250 ms, so it gets at most 10 % of one core — far less than decoding 720p30 and
analysing 5 frames a second need. What is proved, by counts and states (no timing assertion):

- it keeps analysing: analysed frames keep growing under pressure, it skips frames to catch up (skipped undecoded
  frames counted); analysed seconds still see the face, and a second whose frames could not be analysed is
  recorded as such (frames received, none analysed), never as "no one there";
- it says so: ``meta.degraded`` turns true, ``meta.stats`` shows the achieved analyses/s below the target, a
  ``degraded`` log line, the ``Degraded`` EMF metric and a ``SessionDegraded`` event on the bus;
- when the pressure goes, ``meta.degraded`` turns false again, with a ``recovered`` log line and a
  ``SessionRecovered`` event; a user stop still ends it with exit code 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import testsupport
from emotion_shared.emotions import EmotionStore
from emotion_shared.lifecycle_events import validate_event
from emotion_shared.sessions import Limits, SessionRepository

from emotionctl.local.moto_server import MotoHandle
from emotionctl.local.orchestration import capture_events
from emotionctl.media import RtmpSource
from emotionctl.media.clips import make_face_clip

pytestmark = pytest.mark.media


@pytest.fixture(scope="module", autouse=True)
def _ffmpeg() -> None:
    testsupport.needs("ffmpeg")


@pytest.fixture(scope="module")
def clip() -> Path:
    return make_face_clip(1280, 720, fps=30, segments=(("face", 10),))


class Starver(threading.Thread):
    """Suspends a process for ``stopped`` of every ``period`` seconds (SIGSTOP/SIGCONT) until :meth:`release`."""

    def __init__(self, pid: int, period: float = 0.25, stopped: float = 0.225) -> None:
        super().__init__(name="starver", daemon=True)
        self._pid = pid
        self._period = period
        self._stopped = stopped
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.is_set():
                os.kill(self._pid, signal.SIGSTOP)
                self._done.wait(self._stopped)
                os.kill(self._pid, signal.SIGCONT)
                self._done.wait(self._period - self._stopped)
        except ProcessLookupError:
            return
        finally:
            try:
                os.kill(self._pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def release(self) -> None:
        self._done.set()
        self.join(5)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, process: subprocess.Popen[bytes],
             log: Path) -> Any:
    return testsupport.wait_for(
        predicate, timeout, what, interval=0.2, process=process, context=lambda: log.read_text(errors="replace")[-4000:]
    )


@pytest.fixture
def bus(moto_server: MotoHandle) -> str:
    events = boto3.session.Session().client("events", endpoint_url=moto_server.endpoint)
    name = f"overload-{int(time.time() * 1000)}"
    events.create_event_bus(Name=name)
    return name


class BusEvents:
    """What the bus delivered, through a rule → SQS queue on the moto server; each event checked against the
    lifecycle event contract."""

    def __init__(self, endpoint: str, bus: str) -> None:
        session = boto3.session.Session()
        self.sqs = session.client("sqs", endpoint_url=endpoint)
        self.queue = capture_events(session.client("events", endpoint_url=endpoint), self.sqs, bus, f"{bus}-capture")
        self.received: list[dict[str, Any]] = []

    def first(self, detail_type: str) -> dict[str, Any] | None:
        for message in self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
            event = json.loads(message["Body"])
            validate_event(event)
            self.received.append(event)
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return next((e for e in self.received if e["detail-type"] == detail_type), None)


@pytest.fixture
def bus_events(moto_server: MotoHandle, bus: str) -> BusEvents:
    return BusEvents(moto_server.endpoint, bus)


@pytest.fixture
def worker_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait(10)


def test_starved_worker_keeps_analysing_says_degraded_and_recovers(
    clip: Path, tables: dict[str, str], dynamodb: Any, model_dir: Path, tmp_path: Path, bus: str,
    bus_events: BusEvents, worker_process: list[subprocess.Popen[bytes]],
) -> None:
    repo = SessionRepository(dynamodb, tables["SESSIONS_TABLE"], tables["CONTROL_TABLE"])
    store = EmotionStore(dynamodb, tables["EMOTIONS_TABLE"])
    with RtmpSource(clip, loop=True, max_lifetime=180) as source:
        source.wait_ready(30)
        item = repo.create(
            user="u1", product="p", name="overload", stream_uri=source.url,
            config={"removeMedia": True, "analysisFps": 5.0}, now_ms=int(time.time() * 1000),
            limits=Limits(max_active=10, max_active_per_user=10, retention_days=1),
        )
        session_id = item["id"]
        env = {
            **os.environ, **tables,
            "SESSION_ID": session_id, "ALLOW_PRIVATE_STREAM_HOSTS": "true", "EMOTION_MODELS_DIR": str(model_dir),
            "TASK_ARN": "arn:aws:ecs:us-east-1:123456789012:task/local/overload",
            "EVENT_BUS_NAME": bus, "LOAD_EVENT_INTERVAL_SECONDS": "1",
        }
        env.pop("POWERTOOLS_METRICS_DISABLED", None)
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "analyzer.worker"], env=env, stdout=out,
                                       stderr=subprocess.STDOUT)
        worker_process.append(process)

        def meta() -> dict[str, Any]:
            session = repo.get(session_id)
            assert session is not None
            return dict(session.get("meta") or {})

        # Given a worker analysing the stream and keeping up with it
        wait_for(lambda: meta().get("workerState") == "working", 60, "working", process, log)
        wait_for(lambda: (meta().get("stats") or {}).get("analysedFrames", 0) >= 10, 60, "analyses", process, log)
        # When it is starved of CPU
        starver = Starver(process.pid)
        starver.start()
        try:
            starved_at = time.time()
            wait_for(lambda: meta().get("degraded") is True, 90, "meta.degraded true", process, log)
            before = meta()["stats"]
            # Then it keeps analysing, skipping frames to catch up
            wait_for(lambda: meta()["stats"]["analysedFrames"] >= before["analysedFrames"] + 10, 90,
                     "analyses under pressure", process, log)
            under = meta()["stats"]
            degraded = wait_for(lambda: bus_events.first("SessionDegraded"), 60, "SessionDegraded", process, log)
        finally:
            starver.release()
        released_at = time.time()
        # (skipping undecoded frames — decoding a packet or two every 0.5 s while far behind — it may even keep
        # its full analysis rate on a tenth of a core; the skips make it degraded)
        assert under["skippedFrames"] > 0
        assert 0 < under["analysesPerSecond"] <= under["targetAnalysesPerSecond"]
        # And the seconds under pressure are honest: analysed ones still see the face; a second whose frames
        # could not be analysed says so (frames received, none analysed), it is never an analysed "no one there"
        origin = item["createdAtMs"] / 1000
        starved = [b for b in store.read(session_id) if starved_at - origin + 1 <= b.sec < released_at - origin - 1]
        analysed = [b for b in starved if b.frames]
        assert analysed and all(b.faces for b in analysed), [(b.sec, b.received, b.frames) for b in starved]
        assert all(b.received > 0 and not b.faces for b in starved if not b.frames)
        # When the pressure goes, it recovers
        wait_for(lambda: meta().get("degraded") is False, 90, "meta.degraded false", process, log)
        recovered = wait_for(lambda: bus_events.first("SessionRecovered"), 60, "SessionRecovered", process, log)
        repo.request_stop(session_id, "u1", int(time.time() * 1000))
        assert process.wait(30) == 0
    # the events on the bus: the documented shape (checked on receipt), this session, the load figures behind them
    session_fields = {"sessionId": session_id, "user": "u1", "state": "active", "stopReason": None}
    for event in (degraded, recovered):
        assert {k: event["detail"][k] for k in session_fields} == session_fields
    assert bus_events.first("SessionStarted") is not None
    lines = [json.loads(line) for line in log.read_text(errors="replace").splitlines() if line.startswith("{")]
    messages = [str(line.get("message", "")) for line in lines]
    assert any(m.startswith("degraded:") for m in messages) and any(m.startswith("recovered:") for m in messages)
    degraded_metric = [value for line in lines if "_aws" in line for value in line.get("Degraded", [])]
    assert 1 in degraded_metric and degraded_metric[-1] == 0
