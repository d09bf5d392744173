"""``python -m analyzer.worker`` as a subprocess, on real RTMP streams, with the real models and moto.

The clip is a real photo (the smiling astronaut) moving and zooming, then an empty background; it is served by
Debian's ffmpeg over a real socket. What is proved: happiness dominates every second with a face; seconds
without a face have frames but no faces; one track id for the one person; sources, heartbeat and stats on the
session; the stop flag and SIGTERM end the process with code 0 within a few seconds with every analysed frame
written (the open second flushed); a 1440p stream ends with ``resolution_exceeded`` and no emotion data; a
killed publisher gives ``reconnecting`` then ``stream_ended``; an unreachable URI fails with
``stream_unreachable`` within the window; the stream key never appears in the logs.

(Throttling, exhausted retries, crashes and maximum duration: test_worker_control.py, in process.)
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testsupport
from emotion_shared.emotions import Bucket, EmotionStore, interval_stats
from emotion_shared.sessions import Limits, SessionRepository

from emotionctl.media import RtmpSource
from emotionctl.media.clips import make_face_clip

pytestmark = pytest.mark.media

EXIT_BOUND = 4.0  # the spec says 2 s; a loaded 2-core machine gets some margin


@pytest.fixture(scope="module", autouse=True)
def _ffmpeg() -> None:
    testsupport.needs("ffmpeg")


@pytest.fixture(scope="module")
def clip() -> Path:
    """320x240 @ 15 fps: 4 s of the moving face, then 4 s of empty background."""
    return make_face_clip(320, 240, fps=15, segments=(("face", 4), ("empty", 4)))


@pytest.fixture(scope="module")
def qhd_clip() -> Path:
    return make_face_clip(2560, 1440, fps=15, segments=(("face", 2),))


@dataclass
class WorkerRun:
    process: subprocess.Popen[bytes]
    session_id: str
    created: float  # epoch seconds
    repo: SessionRepository
    store: EmotionStore
    log_path: Path
    key: str

    def session(self) -> dict[str, Any]:
        item = self.repo.get(self.session_id)
        assert item is not None
        return item

    def buckets(self) -> list[Bucket]:
        return list(self.store.read(self.session_id))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
        testsupport.wait_for(predicate, timeout, what, process=self.process, context=self.log)

    def wait_exit(self, timeout: float) -> tuple[int, float]:
        started = time.monotonic()
        code = self.process.wait(timeout)
        return code, time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def final_analysed(self) -> int:
        (stopped,) = [line for line in self.log_lines() if line.get("message") == "stopped"]
        return int(stopped["analysedFrames"])


@pytest.fixture
def run_worker(
    tables: dict[str, str], dynamodb: Any, model_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., WorkerRun]]:
    started: list[WorkerRun] = []

    def _run(uri: str, *, window: float = 3.0, fps: float = 5.0) -> WorkerRun:
        repo = SessionRepository(dynamodb, tables["SESSIONS_TABLE"], tables["CONTROL_TABLE"])
        item = repo.create(
            user="u1",
            product="p",
            name="live",
            stream_uri=uri,
            config={"removeMedia": True, "analysisFps": fps},
            now_ms=int(time.time() * 1000),
            limits=Limits(max_active=10, max_active_per_user=10, retention_days=1),
        )
        env = {
            **os.environ,
            **tables,
            "SESSION_ID": item["id"],
            "ALLOW_PRIVATE_STREAM_HOSTS": "true",
            "RECONNECT_WINDOW_SECONDS": str(window),
            "OPEN_TIMEOUT": "5",
            "READ_TIMEOUT": "5",
            "EMOTION_MODELS_DIR": str(model_dir),
            "TASK_ARN": "arn:aws:ecs:us-east-1:123456789012:task/local/abc",
        }
        log_path = tmp_path / f"worker-{len(started)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "analyzer.worker"], env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        run = WorkerRun(
            process, item["id"], item["createdAtMs"] / 1000, repo, EmotionStore(dynamodb, tables["EMOTIONS_TABLE"]),
            log_path, uri.rsplit("/", 1)[-1],
        )
        started.append(run)
        return run

    yield _run
    for run in started:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait(10)


def _dominant(bucket: Bucket) -> str:
    emotions = interval_stats([bucket])["emotions"]
    return max(emotions, key=lambda name: emotions[name]["quantity"])


def _assert_clean_logs(run: WorkerRun) -> None:
    lines = run.log_lines()
    assert lines and all(line.get("session_id") == run.session_id for line in lines)
    assert run.key not in run.log()


# ------------------------------------------------------------------------------------------------ tests
def test_live_stream_analysed_then_stopped_by_the_user(clip: Path, run_worker: Callable[..., WorkerRun]) -> None:
    with RtmpSource(clip, loop=False, max_lifetime=60) as source:
        source.wait_ready(30)
        run = run_worker(source.url)
        # Given the worker has analysed the face and then two whole seconds of empty background
        run.wait_for(
            lambda: sum(1 for b in run.buckets() if b.frames and not b.faces) >= 2, what="two empty seconds"
        )
        item = run.session()
        assert item["meta"]["workerState"] == "working"
        (video,) = item["sources"]
        assert (video["type"], video["codec"], video["width"], video["height"], video["fps"]) == (
            "video", "h264", 320, 240, 15
        )
        assert item["meta"]["healthCheck"] and item["meta"]["stats"]["analysedFrames"] > 0
        assert item["taskArn"].endswith("/abc")
        # When the user stops the session
        stopped_at = time.time()
        run.repo.request_stop(run.session_id, "u1", int(stopped_at * 1000))
        code, took = run.wait_exit(timeout=15)
    # Then the worker exits 0 promptly
    assert code == 0, run.log()
    assert took < EXIT_BOUND
    item = run.session()
    assert item["state"] == "finished" and item["meta"]["stopReason"] == "user_request"
    assert item["meta"]["workerState"] == "stopped"
    buckets = run.buckets()
    # every analysed frame is in a bucket: the open second was flushed
    assert sum(b.frames for b in buckets) == run.final_analysed()
    assert buckets[-1].sec >= math.floor(stopped_at - run.created) - 1
    with_face = [b for b in buckets if b.faces]
    assert len(with_face) >= 3
    assert all(_dominant(b) == "happiness" for b in with_face)
    assert {track for b in buckets for track in b.faces} == {"f1"}  # one person, one id
    # the face seconds come first, then the empty ones, none with a face again
    first_empty = next(i for i, b in enumerate(buckets) if b.frames and not b.faces)
    assert all(not b.faces for b in buckets[first_empty:])
    _assert_clean_logs(run)


def test_sigterm_flushes_and_exits_0(clip: Path, run_worker: Callable[..., WorkerRun]) -> None:
    with RtmpSource(clip, loop=True, max_lifetime=60) as source:
        source.wait_ready(30)
        run = run_worker(source.url)
        run.wait_for(lambda: len(run.buckets()) >= 2, what="two seconds written")
        run.process.send_signal(signal.SIGTERM)
        code, took = run.wait_exit(timeout=15)
    assert code == 0, run.log()
    assert took < EXIT_BOUND
    item = run.session()
    assert item["state"] == "active"  # ECS stopped the task: the state machine finalises the session
    assert item["meta"]["workerState"] == "stopped"
    assert sum(b.frames for b in run.buckets()) == run.final_analysed()


def test_publisher_killed_reconnecting_then_stream_ended(clip: Path, run_worker: Callable[..., WorkerRun]) -> None:
    with RtmpSource(clip, loop=True, max_lifetime=60) as source:
        source.wait_ready(30)
        run = run_worker(source.url, window=3.0)
        run.wait_for(lambda: len(run.buckets()) >= 1, what="a second written")
        source.kill()  # the publisher crashes
        run.wait_for(
            lambda: run.session()["meta"]["workerState"] == "reconnecting", timeout=10, what="reconnecting"
        )
        code, _ = run.wait_exit(timeout=20)
    assert code == 0, run.log()
    item = run.session()
    assert item["state"] == "finished" and item["meta"]["stopReason"] == "stream_ended"
    assert item["meta"]["workerState"] == "stopped"
    assert sum(b.frames for b in run.buckets()) == run.final_analysed()
    _assert_clean_logs(run)


def test_above_1080p_ends_with_resolution_exceeded_and_no_emotion_data(
    qhd_clip: Path, run_worker: Callable[..., WorkerRun]
) -> None:
    with RtmpSource(qhd_clip, loop=True, max_lifetime=60) as source:
        source.wait_ready(30)
        run = run_worker(source.url)
        code, _ = run.wait_exit(timeout=30)
    assert code == 0, run.log()
    item = run.session()
    assert item["state"] == "finished" and item["meta"]["stopReason"] == "resolution_exceeded"
    assert "2560x1440" in item["meta"]["error"]
    assert run.buckets() == []


def test_unreachable_stream_fails_within_the_window(run_worker: Callable[..., WorkerRun]) -> None:
    from testsupport import free_port

    started = time.monotonic()
    run = run_worker(f"rtmp://127.0.0.1:{free_port()}/live/unreachable-key", window=2.0)
    code, _ = run.wait_exit(timeout=30)
    assert code == 0, run.log()
    assert time.monotonic() - started < 20  # the 2 s window plus start-up, loosely
    item = run.session()
    assert item["state"] == "failed" and item["meta"]["stopReason"] == "stream_unreachable"
    assert "unreachable-key" not in item["meta"]["error"]
    assert run.buckets() == []
    _assert_clean_logs(run)
