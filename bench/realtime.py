#!/usr/bin/env python
"""bench/realtime — how fast live numbers reach a WebSocket client, and what one event costs the publisher.

    .venv/bin/python bench/realtime.py [--buckets 40] [--interval 0.25] [--tiers 1,10,100] [--source 20]

Runs the local stack in this process (moto, the gateway on a free port, the stream poller driving the
publisher) and real aiohttp WebSocket clients.

1. Bucket written → ``1s`` event received, p50/p95, with 1, 10 and 100 subscribers on one session: the
   bench writes one bucket (as the worker does) every ``--interval`` seconds and times each subscriber's
   event. This is the WebSocket path alone: DynamoDB stream poll, publisher, management API, socket.
2. Publisher cost per event at each tier, measured inside the publisher (``Publisher.process``): wall time
   per event, DynamoDB requests and management-API posts per event, and an AWS cost estimate from list
   prices (override them with ``--price-*``; they are assumptions, not quotes).
3. ``--source N`` (needs the analyzer worker in the local stack, and ffmpeg): frame published at the source →
   ``1s`` event received, over N seconds of a real session on a live RTMP face clip (emotionctl.media). A
   ``1s`` event covers the frames received in one second of the session; its timestamp is that second's end, so
   ``received − timestamp`` is the age of the newest frame it can contain when it arrives (loopback adds
   2–8 ms between publishing and receiving a frame).

Target: p95 ≤ 1.5 s. Numbers are wall-clock on whatever machine runs this.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import boto3

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emotion_shared import emotions  # noqa: E402
from emotion_shared.auth import create_token  # noqa: E402
from emotion_shared.clock import iso_ms  # noqa: E402
from emotion_shared.dynamo import serialize  # noqa: E402
from emotion_shared.emotions import Bucket, EmotionStore  # noqa: E402
from emotion_shared.ids import new_session_id  # noqa: E402
from emotion_shared.ws import publisher as publisher_module  # noqa: E402

from emotionctl.local.stack import LocalStack, StackConfig  # noqa: E402
from emotionctl.local.up import Started, serve  # noqa: E402

TARGET_P95_MS = 1500.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# ------------------------------------------------------------------ the stack, in process
@dataclass
class Running:
    stack: LocalStack
    state: dict[str, Any]
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(service, endpoint_url=self.state["aws"]["endpoint"],
                                              region_name=self.state["aws"]["region"])

    @property
    def ws_url(self) -> str:
        return str(self.state["components"]["websocket"]["url"])

    def table(self, logical: str) -> str:
        return str(self.state["tables"][logical])

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stack.stopping.set)
        self.thread.join(30)


# Fan-out needs many subscribers on one session, which the reference limits forbid for one user (10
# subscriptions, 80 messages a minute): the bench raises them for its own stack.
BENCH_ENV = {"WS_MAX_SUBSCRIPTIONS_PER_USER": "100000", "WS_MESSAGE_LIMIT": "100000"}


def start_stack(tmp: Path) -> Running:
    from emotionctl.local.components import default_components

    config = StackConfig(port=0, state_dir=tmp / "state", lifetime_seconds=1800,
                         parameters={"MaxActiveSessions": "100", "MaxActiveSessionsPerUser": "100"})
    components = default_components()
    for component in components:
        if component.name == "function-env":
            component.extra.update(BENCH_ENV)  # type: ignore[attr-defined]
    ready = threading.Event()
    started: list[Started] = []
    loop = asyncio.new_event_loop()

    def on_ready(s: Started) -> None:
        started.append(s)
        ready.set()

    thread = threading.Thread(target=lambda: loop.run_until_complete(
        serve(config, components, on_ready, handle_signals=False)), daemon=True)
    thread.start()
    if not ready.wait(120):
        raise SystemExit("the local stack did not start")
    return Running(started[0].stack, started[0].state, thread, loop)


# ------------------------------------------------------------------ publisher instrumentation
@dataclass
class PublisherProbe:
    results: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        original = publisher_module.Publisher.process
        probe = self

        def process(self: Any, records: Any) -> Any:
            result = original(self, records)
            with probe.lock:
                probe.results.append(result)
            return result

        publisher_module.Publisher.process = process  # type: ignore[method-assign]

    def take(self) -> list[Any]:
        with self.lock:
            out, self.results = self.results, []
        return out


# ------------------------------------------------------------------ clients
async def subscriber_clients(run: Running, session_id: str, token: str, subscribers: int,
                             http: aiohttp.ClientSession) -> list[tuple[aiohttp.ClientWebSocketResponse, set[str]]]:
    """``subscribers`` subscriptions to the session's 1 s channels, two per connection (counts, intensities)."""
    out = []
    remaining = subscribers
    while remaining > 0:
        ws = await http.ws_connect(run.ws_url)
        await ws.send_json({"id": 1, "path": "auth:token", "body": {"token": token}})
        assert (await ws.receive_json(timeout=20))["status"] == 200
        ids: set[str] = set()
        for n, channel in enumerate(("session_emotions_counts", "session_emotions_intensities")):
            if remaining == 0:
                break
            await ws.send_json({"id": 2 + n, "path": "channels:subscribe",
                                "body": {"channel": channel, "key": f"{session_id}:1s"}})
            reply = await ws.receive_json(timeout=20)
            assert reply["status"] == 200, reply
            ids.add(reply["body"]["subscriptionId"])
            remaining -= 1
        out.append((ws, ids))
    return out


def put_session(run: Running, user: str) -> tuple[str, int]:
    created = time.time_ns() // 1_000_000
    session_id = new_session_id(created // 1000)
    item = {"id": session_id, "user": user, "product": "standard", "name": "bench", "type": "live_analysis",
            "state": "active", "createdAt": iso_ms(created), "createdAtMs": created, "streamUri": "rtmp://h/x",
            "config": {"removeMedia": True, "analysisFps": 5.0}, "sources": [],
            "meta": {"workerState": "working"}, "version": 3}
    run.client("dynamodb").put_item(TableName=run.table("SessionsTable"), Item=serialize(item))
    return session_id, created


def bucket(sec: int) -> Bucket:
    b = Bucket(sec=sec, frames=5)
    for track in range(3):
        for _ in range(5):
            scores = [0.02] * len(emotions.EMOTIONS)
            scores[(sec + track) % len(scores)] = 0.88
            b.observe(f"t{track}", scores)
    return b


async def tier(run: Running, probe: PublisherProbe, subscribers: int, buckets: int, interval: float) -> dict[str, Any]:
    """``subscribers`` on one session; ``buckets`` written; per-subscriber event latency."""
    owner = f"bench-t{subscribers}"
    session_id, _ = put_session(run, owner)
    token = create_token(run.client("dynamodb"), run.table("ControlTable"), owner)
    store = EmotionStore(run.client("dynamodb"), run.table("EmotionsTable"))
    latencies: list[float] = []
    async with aiohttp.ClientSession() as http:
        clients = await subscriber_clients(run, session_id, token, subscribers, http)
        probe.take()
        loop = asyncio.get_running_loop()
        for sec in range(buckets):
            written = time.perf_counter()
            await loop.run_in_executor(None, store.write, session_id, [bucket(sec)])
            pending = [(ws, set(ids)) for ws, ids in clients]

            async def drain(ws: aiohttp.ClientWebSocketResponse, ids: set[str], sec: int = sec,
                            written: float = written) -> None:
                while ids:
                    event = json.loads((await ws.receive(timeout=30)).data)
                    if isinstance(event, list) and event[0] in ids:
                        ids.discard(event[0])
                        latencies.append((time.perf_counter() - written) * 1000)

            await asyncio.gather(*(drain(ws, ids) for ws, ids in pending))
            await asyncio.sleep(interval)
        for ws, _ in clients:
            await ws.close()
    results = [r for r in probe.take() if r.events]
    events = sum(r.events for r in results)
    elapsed = sum(r.elapsed_ms for r in results)
    reads = sum(r.reads for r in results)
    return {
        "subscribers": subscribers,
        "buckets": buckets,
        "events": len(latencies),
        "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p95": round(percentile(latencies, 95), 1),
                       "max": round(max(latencies), 1)},
        "publisher": {
            "batches": len(results),
            "events": events,
            "ms_per_batch": round(elapsed / max(1, len(results)), 2),
            "ms_per_event": round(elapsed / max(1, events), 3),
            "dynamodb_requests_per_batch": round(reads / max(1, len(results)), 2),
            "posts_per_event": 1.0,
        },
    }


# ------------------------------------------------------------------ the whole product
async def source_mode(run: Running, seconds: int) -> dict[str, Any]:
    from emotionctl.media import RtmpSource, ToolMissing, require_tools
    from emotionctl.media.clips import make_face_clip

    try:
        require_tools("ffmpeg")
    except ToolMissing as exc:
        return {"skipped": str(exc)}
    clip = await asyncio.to_thread(make_face_clip, 640, 360, 15, (("face", 10),))
    source = RtmpSource(clip, loop=True, max_lifetime=seconds + 60).start()
    url = source.url
    token = create_token(run.client("dynamodb"), run.table("ControlTable"), "bench-source")
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    states: list[str] = []
    try:
        await asyncio.to_thread(source.wait_ready)
        async with aiohttp.ClientSession() as http:
            async with http.post(run.stack.url + "/v1/sessions", json={"name": "bench", "streamUri": url},
                                 headers=headers) as response:
                body = await response.json()
                if response.status != 201:
                    return {"skipped": f"create answered {response.status}: {body}"}
            session_id = body["_id"]
            ws = await http.ws_connect(run.ws_url)
            await ws.send_json({"id": 1, "path": "auth:token", "body": {"token": token}})
            await ws.receive_json(timeout=20)
            for n, (channel, key) in enumerate((("session_worker_state", session_id),
                                                ("session_emotions_counts", f"{session_id}:1s"))):
                await ws.send_json({"id": 2 + n, "path": "channels:subscribe",
                                    "body": {"channel": channel, "key": key}})
            deadline = time.monotonic() + seconds + 60
            while time.monotonic() < deadline and len(latencies) < seconds:
                message = await ws.receive(timeout=60)
                now = time.time_ns() // 1_000_000
                data = json.loads(message.data)
                if isinstance(data, list) and data[2] == "sws":
                    states.append(data[3][0])
                    if data[3][0] in ("error", "stopped"):
                        break
                elif isinstance(data, list) and data[2] == "sec":
                    latencies.append(float(now - data[1]))
            async with http.post(f"{run.stack.url}/v1/sessions/{session_id}/stop", headers=headers):
                pass
            await ws.close()
    finally:
        source.stop()
    if not latencies:
        return {"skipped": f"no 1 s event arrived (worker states: {states})"}
    return {"events": len(latencies), "worker_states": states,
            "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p95": round(percentile(latencies, 95), 1),
                           "max": round(max(latencies), 1)}}


# ------------------------------------------------------------------ report
def estimate(tier_result: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    """AWS cost of one event from the measured units (list-price assumptions from the command line)."""
    pub = tier_result["publisher"]
    per_event_batches = pub["batches"] / max(1, pub["events"])
    lambda_usd = (pub["ms_per_event"] / 1000 * args.lambda_memory_gb * args.price_lambda_gb_second
                  + per_event_batches * args.price_lambda_request)
    dynamo_usd = pub["dynamodb_requests_per_batch"] * per_event_batches * args.price_dynamodb_read
    push_usd = args.price_websocket_message  # one management-API post = one message to the client
    return {"usd_per_million_events": round((lambda_usd + dynamo_usd + push_usd) * 1e6, 2),
            "of_which_lambda": round(lambda_usd * 1e6, 2), "of_which_dynamodb": round(dynamo_usd * 1e6, 2),
            "of_which_messages": round(push_usd * 1e6, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buckets", type=int, default=40, help="buckets written per tier")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between buckets")
    parser.add_argument("--tiers", default="1,10,100", help="subscriber counts")
    parser.add_argument("--source", type=int, default=0, help="seconds of a real session (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--lambda-memory-gb", type=float, default=0.5)
    parser.add_argument("--price-lambda-gb-second", type=float, default=0.0000133334, help="arm64, USD")
    parser.add_argument("--price-lambda-request", type=float, default=0.0000002, help="USD")
    parser.add_argument("--price-dynamodb-read", type=float, default=0.000000125, help="on-demand RRU, USD")
    parser.add_argument("--price-websocket-message", type=float, default=0.000001, help="USD")
    args = parser.parse_args()

    probe = PublisherProbe()
    probe.install()
    with tempfile.TemporaryDirectory() as tmp:
        run = start_stack(Path(tmp))
        try:
            report: dict[str, Any] = {"tiers": []}
            for subscribers in (int(t) for t in args.tiers.split(",")):
                result = asyncio.run(tier(run, probe, subscribers, args.buckets, args.interval))
                result["cost_estimate"] = estimate(result, args)
                report["tiers"].append(result)
                lat, pub = result["latency_ms"], result["publisher"]
                print(f"{subscribers:>4} subscribers: bucket written → event received p50 {lat['p50']:.0f} ms, "
                      f"p95 {lat['p95']:.0f} ms (max {lat['max']:.0f}, {result['events']} events); publisher "
                      f"{pub['ms_per_batch']:.1f} ms/batch = {pub['ms_per_event']:.2f} ms/event, "
                      f"{pub['dynamodb_requests_per_batch']:.1f} DynamoDB requests/batch; "
                      f"≈ ${result['cost_estimate']['usd_per_million_events']:.2f} per million events",
                      flush=True)
            if args.source:
                report["source"] = asyncio.run(source_mode(run, args.source))
                source = report["source"]
                if "latency_ms" in source:
                    print(f"source frame → 1 s event: p50 {source['latency_ms']['p50']:.0f} ms, "
                          f"p95 {source['latency_ms']['p95']:.0f} ms over {source['events']} events")
                else:
                    print(f"source mode skipped: {source['skipped']}")
        finally:
            run.stop()
    worst = max(t["latency_ms"]["p95"] for t in report["tiers"])
    print(f"target p95 ≤ {TARGET_P95_MS:.0f} ms: {'met' if worst <= TARGET_P95_MS else 'MISSED'} "
          f"(worst tier p95 {worst:.0f} ms)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
