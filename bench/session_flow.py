#!/usr/bin/env python
"""bench/session_flow — the whole session flow on the local stack, timed from the outside.

    .venv/bin/python bench/session_flow.py [--sessions 10] [--keep-going]

Starts its own `emotionctl local up` (temporary state dir, any free port), makes a clip from a real face
photo (scikit-image's astronaut) and, for each session in turn:

1. starts a local RTMP source (`emotionctl.media.RtmpSource`: `ffmpeg -re -stream_loop -1 … -listen 1`) playing
   the clip;
2. ``POST /v1/sessions`` → times until ``GET /v1/sessions/{id}/emotions`` shows a first observation (the
   first emotion bucket with a face, readable over HTTP): create → Step Functions → local Fargate agent →
   worker process start (imports, models) → stream open → analysis → DynamoDB → REST;
3. ``POST …/stop`` → times until the session reads ``workerState = stopped`` over HTTP and until its Step
   Functions execution has ended (the worker process exited, finalize, release, event), read from the
   embedded AWS.

Prints p50/p95 of each. Numbers are wall-clock on whatever machine runs this (a shared 2-core box here).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # testsupport: wait_for, free_port (shared with the tests)
from testsupport import wait_for  # noqa: E402

USER = "bench"
PARAMS = ("RateLimitCapacity=100000", "MaxActiveSessions=50", "MaxActiveSessionsPerUser=50")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# ------------------------------------------------------------------ fixtures
def make_clip() -> Path:
    """A 10 s 640x360 H.264 clip of a real, smiling face (one key frame a second), cached by emotionctl.media."""
    from emotionctl.media.clips import make_face_clip

    return make_face_clip(640, 360, 15, segments=(("face", 10),))


@contextmanager
def rtmp_source(clip: Path) -> Iterator[str]:
    """One RTMP listener (serves one client) looping the clip in real time (emotionctl.media.RtmpSource)."""
    from emotionctl.media import RtmpSource

    with RtmpSource(clip, loop=True, max_lifetime=600) as source:
        yield source.url


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    state: dict[str, Any]
    token: str

    @property
    def url(self) -> str:
        return str(self.state["endpoint"])

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def sfn(self) -> Any:
        aws = self.state["aws"]
        return boto3.session.Session().client(
            "stepfunctions", endpoint_url=aws["endpoint"], region_name=aws["region"],
            aws_access_key_id="local", aws_secret_access_key="local",
        )


@contextmanager
def local_stack(workdir: Path) -> Iterator[Stack]:
    state_dir = workdir / "stack"
    args = [sys.executable, "-m", "emotionctl", "local", "up", "--port", "0", "--state-dir", str(state_dir),
            "--lifetime", "3600", "--no-dev-token"]
    for param in PARAMS:
        args += ["--param", param]
    log = (workdir / "stack.log").open("wb")
    process = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        state_file = state_dir / "stack.json"
        wait_for(lambda: state_file.exists() or process.poll() is not None, 120, "the local stack", interval=0.2)
        if process.poll() is not None:
            raise RuntimeError(f"the local stack did not start; see {workdir / 'stack.log'}")
        state = json.loads(state_file.read_text())
        token = subprocess.run(
            [sys.executable, "-m", "emotionctl", "token", "create", "--user", USER, "--stack-file", str(state_file)],
            cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()
        yield Stack(process, state, token)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.close()


# ------------------------------------------------------------------ one session
@dataclass
class Timing:
    first_bucket: float
    stopped_state: float
    execution_end: float
    final_state: str


def one_session(stack: Stack, clip: Path, index: int) -> Timing:
    with rtmp_source(clip) as url:
        started = time.perf_counter()
        created = stack.call("POST", "/v1/sessions", json={"name": f"bench-{index}", "streamUri": url})
        created.raise_for_status()
        session_id = created.json()["_id"]

        def observed() -> bool:
            response = stack.call("GET", f"/v1/sessions/{session_id}/emotions")
            if response.status_code != 200:
                return False
            if response.json().get("session") is None:
                return False
            return sum(response.json()["emotions"].values()) > 0

        def failed_early() -> None:
            state = stack.call("GET", f"/v1/sessions/{session_id}").json()
            if state["state"] != "active":
                raise RuntimeError(f"session {session_id} ended before any data: {state['meta']}")

        deadline = time.monotonic() + 120
        while not observed():
            failed_early()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no emotion data for {session_id} after 120 s")
            time.sleep(0.05)
        first_bucket = time.perf_counter() - started

        stop_at = time.perf_counter()
        stack.call("POST", f"/v1/sessions/{session_id}/stop").raise_for_status()
        wait_for(
            lambda: stack.call("GET", f"/v1/sessions/{session_id}").json()["meta"]["workerState"] == "stopped",
            60, "workerState stopped",
        )
        stopped_state = time.perf_counter() - stop_at
        machine = stack.state["resources"]["SessionStateMachine"]
        execution = f"{machine.replace(':stateMachine:', ':execution:')}:{session_id}"
        sfn = stack.sfn()
        wait_for(lambda: sfn.describe_execution(executionArn=execution)["status"] != "RUNNING", 60,
                 "the execution to end")
        execution_end = time.perf_counter() - stop_at
        final = stack.call("GET", f"/v1/sessions/{session_id}").json()
        return Timing(first_bucket, stopped_state, execution_end, f"{final['state']}/{final['meta'].get('stopReason')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-flow-") as tmp:
        workdir = Path(tmp)
        clip = make_clip()
        with local_stack(workdir) as stack:
            timings: list[Timing] = []
            for index in range(args.sessions):
                timing = one_session(stack, clip, index)
                timings.append(timing)
                print(f"session {index + 1:2d}: first bucket {timing.first_bucket:6.2f} s   "
                      f"stop→stopped {timing.stopped_state:5.2f} s   stop→execution end {timing.execution_end:5.2f} s"
                      f"   ({timing.final_state})", flush=True)
    print()
    for label, values in (
        ("create → first emotion bucket over HTTP", [t.first_bucket for t in timings]),
        ("stop → workerState stopped over HTTP", [t.stopped_state for t in timings]),
        ("stop → execution ended (worker exited, released, event)", [t.execution_end for t in timings]),
    ):
        print(f"{label:58s} p50 {percentile(values, 50):6.2f} s   p95 {percentile(values, 95):6.2f} s   "
              f"mean {statistics.fmean(values):6.2f} s   (n={len(values)})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
