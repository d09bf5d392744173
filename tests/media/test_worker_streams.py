"""The analyzer worker as its container runs it (``python -m analyzer.worker``, real models, real ingest) on live
RTSP and RTMPS sources, writing to DynamoDB on a moto server.

tests/integration/test_worker.py does the same on RTMP in detail, and test_worker_control.py covers every ending
with a scripted stream. Here the other two protocols, whose streams end differently (RTSP: the demuxer simply
ends; RTMPS: the TLS tunnel closes), go through a stop, SIGTERM, a publisher killed mid-stream, a source above
1080p and nobody listening.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import testsupport
from emotion_shared.emotions import EmotionStore
from emotion_shared.sessions import Limits, SessionRepository
from testsupport import needs

from emotionctl.media import LiveSource

pytestmark = pytest.mark.media

Serve = Callable[..., LiveSource]
USER = "media-tests"


@dataclass
class WorkerRun:
    process: subprocess.Popen[bytes]
    session_id: str
    repo: SessionRepository
    store: EmotionStore
    log: Path
    states: list[str] = field(default_factory=list)

    def session(self) -> dict[str, Any]:
        item = self.repo.get(self.session_id)
        assert item is not None
        return item

    def worker_state(self) -> str | None:
        state = (self.session().get("meta") or {}).get("workerState")
        if state and (not self.states or self.states[-1] != state):
            self.states.append(state)
        return state

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> None:
        testsupport.wait_for(
            predicate, timeout, what, process=self.process,
            context=lambda: f"worker states {self.states}\n{self.logs()}",
        )

    def exit_code(self, timeout: float = 15.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not exit within {timeout} s\n{self.logs()}") from None

    def buckets(self) -> list[Any]:
        return list(self.store.read(self.session_id))

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def worker(
    tables: dict[str, str], dynamodb: Any, model_dir: Path, tmp_path: Path
) -> Iterator[Callable[[str], WorkerRun]]:
    runs: list[WorkerRun] = []

    def _start(stream_uri: str) -> WorkerRun:
        repo = SessionRepository(dynamodb, tables["SESSIONS_TABLE"], tables["CONTROL_TABLE"])
        item = repo.create(
            user=USER,
            product="standard",
            name="media test",
            stream_uri=stream_uri,
            config={"removeMedia": True, "analysisFps": 5.0},
            now_ms=int(time.time() * 1000),
            limits=Limits(max_active=50, max_active_per_user=50, retention_days=1),
        )
        env = {
            **os.environ,
            **tables,
            "SESSION_ID": item["id"],
            "ALLOW_PRIVATE_STREAM_HOSTS": "true",
            "EMOTION_MODELS_DIR": str(model_dir),
            "RECONNECT_WINDOW_SECONDS": "2",
            "OPEN_TIMEOUT": "5",
            "READ_TIMEOUT": "5",
        }
        env.pop("EVENT_BUS_NAME", None)
        log = tmp_path / f"worker-{len(runs)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "analyzer.worker"], env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        run = WorkerRun(process, item["id"], repo, EmotionStore(dynamodb, tables["EMOTIONS_TABLE"]), log)
        runs.append(run)
        return run

    yield _start
    for run in runs:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait(10)


def _faces(bucket: Any) -> dict[str, dict[str, list[float]]]:
    return dict(bucket.faces)


def _dominant(per_emotion: dict[str, list[float]]) -> str:
    return max(per_emotion, key=lambda name: per_emotion[name][0])


@pytest.mark.parametrize("protocol", ["rtsp", "rtmps"])
def test_worker_analyses_a_live_stream_until_stopped(
    serve: Serve, face_clip: Path, worker: Callable[[str], WorkerRun], protocol: str
) -> None:
    """The default clip (face 4 s, empty 3 s, face 4 s), looped: happiness while the face shows, no face in the
    empty stretch, one track per sighting. RTMPS ends with SIGTERM (as ECS stops a task), RTSP with the user's
    stop flag."""
    source = serve(protocol, face_clip, loop=True)
    run = worker(source.url)
    run.wait_for(lambda: run.worker_state() == "working", 60, "workerState working")
    # enough seconds for the face, the empty stretch and the face again
    run.wait_for(lambda: len(run.buckets()) >= 9, 60, "9 seconds of analysis")
    if protocol == "rtmps":
        run.process.send_signal(signal.SIGTERM)
    else:
        run.repo.request_stop(run.session_id, USER, int(time.time() * 1000))
    assert run.exit_code() == 0, run.logs()

    item = run.session()
    assert item["meta"]["workerState"] == "stopped"
    assert [(s["type"], s["codec"], s["width"], s["height"]) for s in item["sources"]] == [("video", "h264", 640, 360)]
    if protocol == "rtsp":
        assert (item["state"], item["meta"]["stopReason"]) == ("finished", "user_request")
    assert "error" not in item["meta"]

    buckets = run.buckets()
    secs = [b.sec for b in buckets]
    assert secs == sorted(secs) and len(set(secs)) == len(secs)
    assert all(b.frames > 0 for b in buckets)
    runs = [(face, list(group)) for face, group in itertools.groupby(buckets, key=lambda b: bool(b.faces))]
    seen = [face for face, _ in runs]
    assert True in seen and False in seen[seen.index(True) :], [len(b.faces) for b in buckets]
    tracks_per_sighting = []
    for face, group in runs:
        if not face:
            continue
        tracks = set()
        for bucket in group:
            assert len(bucket.faces) == 1, bucket  # one person
            (per_emotion,) = _faces(bucket).values()
            assert _dominant(per_emotion) == "happiness", bucket
            tracks |= set(bucket.faces)
        tracks_per_sighting.append(len(tracks))
    assert set(tracks_per_sighting) == {1}


@pytest.mark.parametrize("protocol", ["rtsp", "rtmps"])
def test_worker_publisher_killed_reconnects_then_ends(
    serve: Serve, small_clip: Path, worker: Callable[[str], WorkerRun], protocol: str
) -> None:
    """RTSP: the server dies; RTMPS: the publisher behind the tunnel dies (stunnel still accepts, then closes)."""
    source = serve(protocol, small_clip)
    run = worker(source.url)
    run.wait_for(lambda: run.worker_state() == "working", 60, "workerState working")
    run.wait_for(lambda: len(run.buckets()) >= 2, 30, "2 seconds of analysis")
    source.kill()
    run.wait_for(lambda: run.worker_state() == "reconnecting", 30, "workerState reconnecting")
    assert run.exit_code(30) == 0, run.logs()
    run.worker_state()
    item = run.session()
    assert (item["state"], item["meta"]["stopReason"]) == ("finished", "stream_ended"), item
    assert run.states[-2:] == ["reconnecting", "stopped"], run.states
    assert len(run.buckets()) >= 2  # what was analysed stays


def test_worker_source_above_1080p_writes_nothing(
    serve: Serve, qhd_clip: Path, worker: Callable[[str], WorkerRun]
) -> None:
    source = serve("rtsp", qhd_clip)
    run = worker(source.url)
    assert run.exit_code(60) == 0, run.logs()
    item = run.session()
    assert (item["state"], item["meta"]["stopReason"]) == ("finished", "resolution_exceeded"), item
    assert run.buckets() == []


def test_worker_nobody_listening_is_stream_unreachable(worker: Callable[[str], WorkerRun]) -> None:
    needs("ffmpeg")
    run = worker(f"rtmps://127.0.0.1:{testsupport.free_port()}/live/secret-key")
    assert run.exit_code(60) == 0, run.logs()  # the worker did its job: the session says why it failed
    item = run.session()
    assert (item["state"], item["meta"]["stopReason"]) == ("failed", "stream_unreachable"), item
    assert "secret-key" not in run.logs()
