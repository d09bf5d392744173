#!/usr/bin/env python
"""bench/api — cold start and warm latency of the REST API on the local stack.

    .venv/bin/python bench/api.py [--requests 200] [--creates 30] [--cold-runs 5]

1. Cold start, handler: a new process imports functions/api/app.py (Lambda's init) and serves its first
   request (GET /v1/sessions) against the embedded AWS.
2. Cold start, gateway: a new `emotionctl local up` process until /health answers, then its first
   authenticated request (authorizer + handler, both cold).
3. Warm, through the gateway: p50/p99 per route over HTTP keep-alive.
4. Warm, handler in process: the same routes invoked directly, with the time spent inside botocore calls
   (DynamoDB on moto; measured by wrapping ``BaseClient._make_api_call``) subtracted: the handler's own
   overhead. Target: p50 < 5 ms.

Numbers are wall-clock on whatever machine runs this; the stack gets generous limits so that the rate
limiter and the capacity caps do not interfere.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import requests

from emotionctl.ports import free_port

REPO = Path(__file__).resolve().parents[1]
BENCH_PARAMS = (
    "RateLimitCapacity=100000000",
    "MaxActiveSessions=100000",
    "MaxActiveSessionsPerUser=100000",
)
USER = "bench"
STREAM = "rtmp://127.0.0.1:9/live/bench"  # nothing listens there
TARGET_OVERHEAD_MS = 5.0


# ------------------------------------------------------------------ helpers
def progress(message: str) -> None:
    sys.stderr.write(f"[bench/api {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    state_dir: Path
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.state["endpoint"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def dynamodb(self) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=self.state["aws"]["region"]
        ).client("dynamodb", endpoint_url=self.state["aws"]["endpoint"])

    def token(self, user: str) -> str:
        from emotion_shared.auth import create_token

        return create_token(self.dynamodb(), self.state["tables"]["ControlTable"], user)


def start_stack(state_dir: Path) -> tuple[Stack, float]:
    """Start `emotionctl local up`; returns it and the seconds until /health answered."""
    args = [
        sys.executable, "-m", "emotionctl", "local", "up", "--port", str(free_port()),
        "--state-dir", str(state_dir), "--no-dev-token", "--lifetime", "1800",
        *(a for p in BENCH_PARAMS for a in ("--param", p)),
    ]
    began = time.perf_counter()
    log = (state_dir / "stack.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    stack = Stack(process, state_dir)
    state_file = state_dir / "stack.json"
    while True:
        if process.poll() is not None:
            raise SystemExit(f"emotionctl local up exited:\n{(state_dir / 'stack.log').read_text()}")
        if state_file.exists():
            try:
                stack.state = json.loads(state_file.read_text())
                if requests.get(stack.url + "/health", timeout=2).status_code == 200:
                    return stack, time.perf_counter() - began
            except (ValueError, requests.RequestException):
                pass
        if time.perf_counter() - began > 120:
            stack.stop()
            raise SystemExit("the local stack did not start in 120 s")
        time.sleep(0.01)


# ------------------------------------------------------------------ botocore time (in process)
class BotocoreTimer:
    """Wall time spent inside botocore API calls, per thread (wraps ``BaseClient._make_api_call``)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def install(self) -> None:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        timer = self

        def timed(client: Any, operation: str, params: Any) -> Any:
            began = time.perf_counter_ns()
            try:
                return original(client, operation, params)
            finally:
                timer._local.ns = getattr(timer._local, "ns", 0) + time.perf_counter_ns() - began
                timer._local.calls = getattr(timer._local, "calls", 0) + 1

        BaseClient._make_api_call = timed

    @contextmanager
    def measure(self) -> Iterator[dict[str, float]]:
        self._local.ns = 0
        self._local.calls = 0
        out: dict[str, float] = {}
        began = time.perf_counter_ns()
        yield out
        out["total_ms"] = (time.perf_counter_ns() - began) / 1e6
        out["aws_ms"] = self._local.ns / 1e6
        out["calls"] = self._local.calls


# ------------------------------------------------------------------ events (the gateway's own builder)
def _event_factory(state: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    from emotionctl.local.gateway.proxy_integration import ApiContext, HttpRequest, proxy_event
    from emotionctl.local.gateway.routes import RouteTable
    from emotionctl.local.template import load_template

    routes = RouteTable.from_template(load_template())
    api = ApiContext(api_id="local", stage=state["stage"], region=state["aws"]["region"],
                     account_id=state["aws"]["accountId"], domain_name="127.0.0.1:3000")
    authorizer = {"user": USER, "product": "standard", "principalId": USER, "integrationLatency": 0}

    def make(method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> dict[str, Any]:
        match = routes.match(method, path)
        assert match is not None, (method, path)
        raw = json.dumps(body).encode() if body is not None else b""
        request = HttpRequest(method=method, path=path, headers=[("Content-Type", "application/json")],
                              query=list((query or {}).items()), body=raw, source_ip="127.0.0.1")
        return proxy_event(request, match.route, match.path_parameters, api, authorizer)

    return make


def _seed_emotions(stack: Stack, session_id: str, seconds: int) -> None:
    """``seconds`` of per-second buckets, three faces, as the analyzer writes them."""
    from emotion_shared.emotions import EMOTIONS, Bucket, EmotionStore

    buckets = []
    for sec in range(seconds):
        bucket = Bucket(sec=sec, frames=5)
        for track in ("t1", "t2", "t3"):
            for k in range(5):
                scores = [0.05] * len(EMOTIONS)
                scores[(sec + k + len(track)) % len(EMOTIONS)] = 0.7
                bucket.observe(track, scores)
        buckets.append(bucket)
    EmotionStore(stack.dynamodb(), stack.state["tables"]["EmotionsTable"]).write(session_id, buckets)


# ------------------------------------------------------------------ measurements
def cold_handler(state_file: Path) -> dict[str, float]:
    """Run in a fresh process: import the handler, serve the first request."""
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child-cold-handler", str(state_file)],
                          capture_output=True, text=True, cwd=REPO, check=True)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_ms"] = (time.perf_counter() - began) * 1000
    return result


def child_cold_handler(state_file: Path) -> None:
    process_began = time.perf_counter()
    state = json.loads(state_file.read_text())
    from emotionctl.local.moto_server import local_aws_env

    os.environ.update(state["env"])
    os.environ.update(local_aws_env(state["aws"]["endpoint"]))
    from emotionctl.local.lambda_runtime import load_handler, local_context

    began = time.perf_counter()
    entry = load_handler(REPO / "functions" / "api", "app.handler", "_bench_ApiFunction")
    loaded = time.perf_counter()
    event = _event_factory(state)("GET", "/v1/sessions")
    response = entry(event, local_context("bench-ApiFunction", timeout_seconds=10))
    done = time.perf_counter()
    assert response["statusCode"] == 200, response
    print(json.dumps({"import_ms": (loaded - began) * 1000, "first_request_ms": (done - loaded) * 1000,
                      "python_start_ms": (began - process_began) * 1000}))


@dataclass
class Row:
    name: str
    samples: list[dict[str, float]]

    def col(self, key: str) -> list[float]:
        return [s[key] for s in self.samples]


def warm_gateway(stack: Stack, token: str, n: int, heavy: int, creates: int, sid: str) -> list[Row]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    url = stack.url

    def timed(method: str, path: str, expect: int, **kwargs: Any) -> tuple[dict[str, float], requests.Response]:
        began = time.perf_counter()
        response = session.request(method, url + path, timeout=30, **kwargs)
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code != expect:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text}")
        return {"ms": elapsed}, response

    def repeat(method: str, path: str, times: int = n, **kwargs: Any) -> list[dict[str, float]]:
        return [timed(method, path, 200, **kwargs)[0] for _ in range(times)]

    for _ in range(20):  # warm-up
        timed("GET", "/v1/sessions", 200)
    rows = [
        Row("GET /v1/sessions", repeat("GET", "/v1/sessions")),
        Row("GET /v1/sessions/{id}", repeat("GET", f"/v1/sessions/{sid}")),
        Row("GET …/{id}/emotions", repeat("GET", f"/v1/sessions/{sid}/emotions", heavy)),
        Row("GET …/{id}/emotions/timeline",
            repeat("GET", f"/v1/sessions/{sid}/emotions/timeline", heavy, params={"granularity": 10})),
    ]
    create, stop, delete = [], [], []
    for i in range(creates):
        sample, response = timed("POST", "/v1/sessions", 201, json={"name": f"bench {i}", "streamUri": STREAM})
        create.append(sample)
        new_id = response.json()["_id"]
        stop.append(timed("POST", f"/v1/sessions/{new_id}/stop", 200)[0])
        delete.append(timed("DELETE", f"/v1/sessions/{new_id}", 204)[0])
    rows += [Row("POST /v1/sessions", create), Row("POST …/{id}/stop", stop), Row("DELETE /v1/sessions/{id}", delete)]
    return rows


def warm_handler(stack: Stack, n: int, heavy: int, creates: int, sid: str) -> list[Row]:
    from emotionctl.local.lambda_runtime import load_handler, local_context
    from emotionctl.local.moto_server import local_aws_env

    os.environ.update(stack.state["env"])
    os.environ.update(local_aws_env(stack.state["aws"]["endpoint"]))
    timer = BotocoreTimer()
    timer.install()
    entry = load_handler(REPO / "functions" / "api", "app.handler", "_bench_ApiFunction")
    make = _event_factory(stack.state)

    def call(expect: int, *args: Any, **kwargs: Any) -> tuple[dict[str, float], dict[str, Any]]:
        event = make(*args, **kwargs)
        with timer.measure() as sample:
            response = entry(event, local_context("bench-ApiFunction", timeout_seconds=10))
        if response["statusCode"] != expect:
            raise SystemExit(f"{args}: {response}")
        return sample, response

    for _ in range(20):
        call(200, "GET", "/v1/sessions")
    rows = []
    for name, times, args, kwargs in (
        ("GET /v1/sessions", n, ("GET", "/v1/sessions"), {}),
        ("GET /v1/sessions/{id}", n, ("GET", f"/v1/sessions/{sid}"), {}),
        ("GET …/{id}/emotions", heavy, ("GET", f"/v1/sessions/{sid}/emotions"), {}),
        ("GET …/{id}/emotions/timeline", heavy, ("GET", f"/v1/sessions/{sid}/emotions/timeline"),
         {"query": {"granularity": "10"}}),
    ):
        rows.append(Row(name, [call(200, *args, **kwargs)[0] for _ in range(times)]))
    create, stop, delete = [], [], []
    for i in range(creates):
        sample, response = call(201, "POST", "/v1/sessions", body={"name": f"bench {i}", "streamUri": STREAM})
        create.append(sample)
        new_id = json.loads(response["body"])["_id"]
        stop.append(call(200, "POST", f"/v1/sessions/{new_id}/stop")[0])
        delete.append(call(204, "DELETE", f"/v1/sessions/{new_id}")[0])
    rows += [Row("POST /v1/sessions", create), Row("POST …/{id}/stop", stop), Row("DELETE /v1/sessions/{id}", delete)]
    return rows


# ------------------------------------------------------------------ report
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per read route (default 200)")
    parser.add_argument("--creates", type=int, default=30, help="create/stop/delete cycles (default 30)")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh handler processes (default 5)")
    parser.add_argument("--cold-stacks", type=int, default=3, help="fresh stacks for the gateway cold start")
    parser.add_argument("--heavy-requests", type=int, default=20,
                        help="requests per emotions/timeline route (default 20: moto serves them slowly)")
    parser.add_argument("--data-seconds", type=int, default=60,
                        help="seconds of emotion data (3 faces) the emotions routes read (default 60)")
    parser.add_argument("--child-cold-handler", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_cold_handler:
        child_cold_handler(args.child_cold_handler)
        return 0

    out = sys.stdout
    with TemporaryDirectory(prefix="bench-api-") as tmp:
        # -- gateway cold start: fresh stacks; the last one stays up for the rest
        stack_starts: list[float] = []
        first_requests: list[float] = []
        stack: Stack | None = None
        try:
            for i in range(max(1, args.cold_stacks)):
                if stack is not None:
                    stack.stop()
                state_dir = Path(tmp) / f"stack{i}"
                state_dir.mkdir()
                progress(f"starting local stack {i + 1}/{args.cold_stacks}")
                stack, started_s = start_stack(state_dir)
                stack_starts.append(started_s * 1000)
                token = stack.token(USER)
                began = time.perf_counter()
                response = requests.get(stack.url + "/v1/sessions", headers={"Authorization": f"Bearer {token}"},
                                        timeout=30)
                first_requests.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.text
            assert stack is not None
            state_file = stack.state_dir / "stack.json"
            # -- handler cold start: fresh processes against the running stack
            progress(f"{args.cold_runs} cold handler processes")
            cold = [cold_handler(state_file) for _ in range(args.cold_runs)]
            # -- data for the read routes
            headers = {"Authorization": f"Bearer {token}"}
            created = requests.post(stack.url + "/v1/sessions", json={"name": "bench data", "streamUri": STREAM},
                                    headers=headers, timeout=30)
            assert created.status_code == 201, created.text
            sid = created.json()["_id"]
            progress(f"seeding {args.data_seconds} s of emotion data")
            _seed_emotions(stack, sid, args.data_seconds)
            progress("warm requests through the gateway")
            gateway_rows = warm_gateway(stack, token, args.requests, args.heavy_requests, args.creates, sid)
            progress("warm requests to the handler in process")
            handler_rows = warm_handler(stack, args.requests, args.heavy_requests, args.creates, sid)
        finally:
            if stack is not None:
                stack.stop()

    med = statistics.median
    out.write("\nbench/api — REST API on the local stack\n\n")
    out.write(f"Cold start (median of {len(cold)} new processes / {len(stack_starts)} new stacks)\n")
    cold_lines = [
        ("handler: child set-up before the import (read state, env)", med([c["python_start_ms"] for c in cold])),
        ("handler: import functions/api/app.py (Lambda init)", med([c["import_ms"] for c in cold])),
        ("handler: first request, GET /v1/sessions", med([c["first_request_ms"] for c in cold])),
        ("handler: whole new process (spawn -> response)", med([c["process_ms"] for c in cold])),
        ("gateway: `emotionctl local up` -> /health answers", med(stack_starts)),
        ("gateway: first authenticated request (cold authorizer + handler)", med(first_requests)),
    ]
    for label, value in cold_lines:
        out.write(f"  {label:66} {value:8.1f} ms\n")
    out.write("\n")
    out.write("Warm, through the local gateway (HTTP keep-alive, authorizer cached, DynamoDB on moto)\n")
    out.write(f"  {'route':32} {'n':>5} {'p50 ms':>8} {'p99 ms':>8}\n")
    for row in gateway_rows:
        ms = row.col("ms")
        out.write(f"  {row.name:32} {len(ms):5d} {percentile(ms, 50):8.2f} {percentile(ms, 99):8.2f}\n")

    out.write("\nWarm, handler in process — DynamoDB = time inside botocore calls (moto), overhead = the rest\n")
    out.write(f"  {'route':32} {'n':>5} {'calls':>5} {'total p50':>9} {'total p99':>9} {'ddb p50':>8} "
              f"{'overhead p50':>12} {'overhead p99':>12}\n")
    worst = 0.0
    for row in handler_rows:
        overhead = [s["total_ms"] - s["aws_ms"] for s in row.samples]
        worst = max(worst, percentile(overhead, 50))
        out.write(f"  {row.name:32} {len(overhead):5d} {med(row.col('calls')):5.0f} "
                  f"{percentile(row.col('total_ms'), 50):9.2f} {percentile(row.col('total_ms'), 99):9.2f} "
                  f"{percentile(row.col('aws_ms'), 50):8.2f} {percentile(overhead, 50):12.2f} "
                  f"{percentile(overhead, 99):12.2f}\n")
    verdict = "met" if worst < TARGET_OVERHEAD_MS else "NOT met"
    out.write(f"\nTarget: warm handler overhead p50 < {TARGET_OVERHEAD_MS:.0f} ms excluding DynamoDB — {verdict} "
              f"(worst route p50 {worst:.2f} ms)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
