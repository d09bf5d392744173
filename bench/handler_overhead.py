"""Warm overhead of the REST handler per route, excluding the time spent in AWS calls.

Runs the real Lambda handler in-process against a moto server (tables from template.yaml) and measures,
for each request, the wall time of ``handler(event, context)`` and the time spent inside botocore API calls
(DynamoDB, Step Functions). Overhead = total − AWS time: Powertools routing and validation, the service
code, serialization, logging, the rate limiter's bookkeeping.

    .venv/bin/python bench/handler_overhead.py [--requests 300]

Also reports the cold start: a new process importing the handler and serving its first request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import botocore.client

from emotionctl.local.moto_server import local_aws_env, start_moto
from emotionctl.local.tables import create_tables, table_env

_aws_seconds = 0.0
_original_call = botocore.client.BaseClient._make_api_call


def _timed_call(self: Any, operation: str, params: Any) -> Any:
    global _aws_seconds
    start = time.perf_counter()
    try:
        return _original_call(self, operation, params)
    finally:
        _aws_seconds += time.perf_counter() - start


botocore.client.BaseClient._make_api_call = _timed_call


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(name: str, make: Callable[[], dict[str, Any]], n: int, handler: Any, context: Any) -> dict[str, Any]:
    global _aws_seconds
    totals, overheads = [], []
    statuses: set[int] = set()
    for _ in range(n):
        event = make()
        _aws_seconds = 0.0
        start = time.perf_counter()
        response = handler(event, context)
        total = time.perf_counter() - start
        statuses.add(int(response["statusCode"]))
        totals.append(total * 1000)
        overheads.append((total - _aws_seconds) * 1000)
    return {
        "route": name,
        "status": sorted(statuses),
        "total_p50_ms": round(statistics.median(totals), 2),
        "total_p99_ms": round(pct(totals, 0.99), 2),
        "overhead_p50_ms": round(statistics.median(overheads), 2),
        "overhead_p99_ms": round(pct(overheads, 0.99), 2),
    }


def cold_start(env: dict[str, str]) -> dict[str, float]:
    code = (
        "import time, json; t0 = time.perf_counter()\n"
        "from emotion_shared.rest import handler\n"
        "from emotionctl.local.lambda_runtime import local_context\n"
        "t1 = time.perf_counter()\n"
        f"event = json.loads({json.dumps(json.dumps(_event('GET', '/v1/sessions')))})\n"
        "r = handler(event, local_context()); t2 = time.perf_counter()\n"
        "assert r['statusCode'] == 200, r\n"
        "print(json.dumps({'import_ms': (t1 - t0) * 1000, 'first_request_ms': (t2 - t1) * 1000}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    line = [x for x in out.stdout.splitlines() if x.startswith('{"import_ms"')][-1]
    return {k: round(v, 1) for k, v in json.loads(line).items()}


def _event(method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> dict[str, Any]:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
    from api_support import make_event

    return make_event(method, path, body=body, query=query)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    moto = start_moto()
    try:
        os.environ.update(local_aws_env(moto.endpoint))
        client = boto3.session.Session().client("dynamodb", endpoint_url=moto.endpoint)
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        create_tables(client, prefix)
        os.environ.update(table_env(prefix))
        os.environ.update(
            {
                "ALLOW_PRIVATE_STREAM_HOSTS": "true",
                "RATE_LIMIT_CAPACITY": "1000000",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            }
        )
        cold = cold_start(dict(os.environ))

        from emotion_shared.emotions import Bucket, EmotionStore
        from emotion_shared.rest import handler

        from emotionctl.local.lambda_runtime import local_context

        context = local_context()
        created = handler(_event("POST", "/v1/sessions", {"name": "bench", "streamUri": "rtmp://127.0.0.1/x"}), context)
        sid = json.loads(created["body"])["_id"]
        # ten minutes of data, three faces
        buckets = [
            Bucket(sec, {f"t{f}": {"happiness": [3, 2.4], "neutral": [2, 1.1]} for f in range(3)}, 5)
            for sec in range(600)
        ]
        EmotionStore(client, os.environ["EMOTIONS_TABLE"]).write(sid, buckets)
        n = args.requests
        body = {"name": "bench", "streamUri": "rtmp://127.0.0.1/live/x"}
        cases: list[tuple[str, Callable[[], dict[str, Any]], int]] = [
            ("GET /v1/sessions/{id}", lambda: _event("GET", f"/v1/sessions/{sid}"), n),
            ("GET /v1/sessions", lambda: _event("GET", "/v1/sessions", query={"limit": "10"}), n),
            ("GET …/emotions (600 s)", lambda: _event("GET", f"/v1/sessions/{sid}/emotions"), n // 5),
            ("GET …/timeline (600 s, g=60)", lambda: _event("GET", f"/v1/sessions/{sid}/emotions/timeline"), n // 5),
            ("POST /v1/sessions (400)", lambda: _event("POST", "/v1/sessions", {"name": ""}), n),
            ("GET /v1/sessions/{missing} (404)", lambda: _event("GET", "/v1/sessions/" + "0" * 24), n),
        ]
        results = [measure(name, make, count, handler, context) for name, make, count in cases]
        # create + stop pairs (stop releases the capacity, so the cap never fills)
        pairs: list[str] = []

        def create_event() -> dict[str, Any]:
            return _event("POST", "/v1/sessions", body)

        def stop_event() -> dict[str, Any]:
            return _event("POST", f"/v1/sessions/{pairs.pop()}/stop")

        creates, stops = [], []
        global _aws_seconds
        for _ in range(n // 3):
            _aws_seconds = 0.0
            t = time.perf_counter()
            r = handler(create_event(), context)
            creates.append((time.perf_counter() - t - _aws_seconds) * 1000)
            pairs.append(json.loads(r["body"])["_id"])
            _aws_seconds = 0.0
            t = time.perf_counter()
            handler(stop_event(), context)
            stops.append((time.perf_counter() - t - _aws_seconds) * 1000)
        results.append({"route": "POST /v1/sessions (201)", "overhead_p50_ms": round(statistics.median(creates), 2),
                        "overhead_p99_ms": round(pct(creates, 0.99), 2)})
        results.append({"route": "POST …/stop (200)", "overhead_p50_ms": round(statistics.median(stops), 2),
                        "overhead_p99_ms": round(pct(stops, 0.99), 2)})
        print(f"cold start (new process): import {cold['import_ms']} ms, first request {cold['first_request_ms']} ms")
        print(f"{'route':40} {'total p50':>10} {'p99':>8} {'overhead p50':>13} {'p99':>8}  (ms)")
        for r in results:
            print(
                f"{r['route']:40} {r.get('total_p50_ms', '-'):>10} {r.get('total_p99_ms', '-'):>8} "
                f"{r['overhead_p50_ms']:>13} {r['overhead_p99_ms']:>8}"
            )
        print("RESULT " + json.dumps({"cold_start": cold, "warm": results}))
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
