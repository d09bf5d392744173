"""Issue 4's acceptance, end to end and black box: `emotionctl local up` as a subprocess (the real state machine in
the embedded AWS, the local Fargate agent running the REAL analyzer per session), real RTMP sources playing
clips made from a real face photo (emotionctl.media), driven over HTTP and the WebSocket.

One stack for the module (global cap 4, short reconnect window for the workers through ``--task-env``); the
sessions of a scenario group run in parallel. Every wait is a poll with a generous deadline: these tests assert
behaviour, not speed (bench/session_flow.py measures speed).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
import requests
import testsupport
from emotion_shared.auth import create_token
from emotion_shared.lifecycle_events import validate_event
from stack_support import StackProcess, start_stack
from websocket_support import Client, connected, ws_url

from emotionctl.local.orchestration import capture_events
from emotionctl.media import RtmpSource, make_face_clip

pytestmark = [pytest.mark.stack, pytest.mark.media]

CAP = 4
ORDER = ("pending", "provisioning", "connecting", "working")
SESSION_END = 60.0  # a session reaches its end (worker start, stream open, rejection…) well within this
DATA_WITHIN = 30.0  # the first analysed second is readable over HTTP within this after `working`
EXIT_WITHIN = 10.0  # the worker exits within 2 s of a stop by contract; generous on a busy 2-core machine
SOURCE_LIFETIME = 240.0  # every source stops by itself after this

def wait_for[T](probe: Callable[[], T | None], what: str, timeout: float = SESSION_END, interval: float = 0.1) -> T:
    """:func:`testsupport.wait_for` with this file's default timeout."""
    return cast(T, testsupport.wait_for(probe, timeout, what, interval=interval))


# ------------------------------------------------------------------------------------------------ events
@dataclass
class EventLog:
    """Everything the event bus delivered to a capture queue (a rule → SQS target in the embedded AWS), each event
    checked against the lifecycle event contract (``validate_event`` raises on any mismatch)."""

    sqs: Any
    queue_url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _drain(self) -> None:
        with self._lock:
            while True:
                batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
                if not batch:
                    return
                for message in batch:
                    event = json.loads(message["Body"])
                    validate_event(event)
                    self.received.append(event)
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def of(self, session_id: str) -> list[dict[str, Any]]:
        self._drain()
        return [e for e in self.received if e.get("detail", {}).get("sessionId") == session_id]

    def wait(self, session_id: str, *types: str) -> list[dict[str, Any]]:
        """The session's events once all of ``types`` arrived."""

        def arrived() -> list[dict[str, Any]] | None:
            events = self.of(session_id)
            return events if set(types) <= {e["detail-type"] for e in events} else None

        return wait_for(arrived, f"events {types} of session {session_id}", timeout=30)


# ------------------------------------------------------------------------------------------------- stack
@dataclass
class E2E:
    stack: StackProcess
    events: EventLog
    _tokens: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        aws = self.stack.state["aws"]
        return boto3.session.Session().client(
            service, endpoint_url=aws["endpoint"], region_name=aws["region"],
            aws_access_key_id="local", aws_secret_access_key="local",
        )

    def table(self, logical: str) -> str:
        return str(self.stack.state["tables"][logical])

    def token(self, user: str) -> str:
        """A token minted as `emotionctl token create` does (straight into the stack's control table)."""
        if user not in self._tokens:
            self._tokens[user] = create_token(self.client("dynamodb"), self.table("ControlTable"), user)
        return self._tokens[user]

    def api(self, method: str, path: str, user: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        return requests.request(method, self.stack.url + path, headers=headers, timeout=30, **kwargs)

    def create(self, user: str, stream_uri: str, fps: float = 5.0, name: str = "e2e") -> requests.Response:
        body = {"name": name, "streamUri": stream_uri, "config": {"analysisFps": fps}}
        return self.api("POST", "/v1/sessions", user, json=body)

    def session(self, session_id: str, user: str) -> dict[str, Any]:
        response = self.api("GET", f"/v1/sessions/{session_id}", user)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ended(self, session_id: str, user: str, timeout: float = SESSION_END) -> dict[str, Any]:
        return wait_for(lambda: (s := self.session(session_id, user))["state"] != "active" and s,
                        f"session {session_id} to end", timeout)

    def timeline(self, session_id: str, user: str) -> list[dict[str, Any]]:
        response = self.api("GET", f"/v1/sessions/{session_id}/emotions/timeline?granularity=5", user)
        assert response.status_code == 200, response.text
        return list(response.json()["timeline"])

    def totals(self, session_id: str, user: str) -> dict[str, int]:
        response = self.api("GET", f"/v1/sessions/{session_id}/emotions", user)
        assert response.status_code == 200, response.text
        return dict(response.json()["emotions"])

    # -- the machinery, seen from outside: processes, the embedded AWS
    def worker_pid(self, session_id: str) -> int | None:
        """The analyzer process the local Fargate agent runs for the session (a child of the stack process)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent != self.stack.process.pid:
                    continue
                environ = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if f"SESSION_ID={session_id}".encode() in environ:
                return int(entry.name)
        return None

    def execution(self, session_id: str) -> dict[str, Any] | None:
        """The session's Step Functions execution (named after the session)."""
        sfn = self.client("stepfunctions")
        machine = self.stack.state["components"]["orchestration"]["stateMachine"]
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine):
            for execution in page["executions"]:
                if execution["name"] == session_id:
                    return dict(execution)
        return None

    def execution_done(self, session_id: str) -> dict[str, Any]:
        return wait_for(lambda: (e := self.execution(session_id)) and e["status"] != "RUNNING" and e,
                        f"the execution of {session_id} to end")

    def capacity_held(self, session_id: str) -> bool:
        item = self.client("dynamodb").get_item(TableName=self.table("SessionsTable"), Key={"id": {"S": session_id}},
                                                ConsistentRead=True)["Item"]
        return bool(item.get("capacityHeld", {}).get("BOOL"))

    def active_capacity(self) -> int:
        item = self.client("dynamodb").get_item(TableName=self.table("ControlTable"),
                                                Key={"pk": {"S": "capacity#global"}}, ConsistentRead=True).get("Item")
        return int(item["active"]["N"]) if item else 0

    def settle(self) -> None:
        """Stop what a failed test may have left running; wait until every capacity slot is free."""
        for user in list(self._tokens):
            listing = self.api("GET", "/v1/sessions?state=active&limit=100", user).json()
            for session in listing.get("data", []):
                self.api("POST", f"/v1/sessions/{session['_id']}/stop", user)
        wait_for(lambda: self.active_capacity() == 0, "every capacity slot to be free")


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    testsupport.needs("ffmpeg")
    stack = start_stack(
        tmp_path_factory.mktemp("e2e-stack"),
        f"MaxActiveSessions={CAP}", "MaxActiveSessionsPerUser=8", "RateLimitCapacity=100000",
        # a stream that ends is over 1 s later (not after the default 30 s of reconnection attempts)
        extra_args=("--task-env", "RECONNECT_WINDOW_SECONDS=1"),
    )
    try:
        env = E2E(stack, EventLog(None, ""))
        bus = stack.state["components"]["orchestration"]["eventBus"]
        sqs = env.client("sqs")
        env.events = EventLog(sqs, capture_events(env.client("events"), sqs, bus, "e2e-events"))
        yield env
    finally:
        code = stack.stop()
        assert code == 0, f"the local stack exited with {code}:\n{stack.log()}"


def face_clip(width: int = 320, height: int = 240, fps: int = 10, seconds: float = 6.0) -> Path:
    """A clip of the real face only (cached by the media package)."""
    return make_face_clip(width=width, height=height, fps=fps, segments=(("face", seconds),))


def dedup(states: list[str]) -> list[str]:
    out: list[str] = []
    for state in states:
        if not out or out[-1] != state:
            out.append(state)
    return out


def assert_started_in_order(states: list[str]) -> None:
    """pending/provisioning → connecting → working, in that order, nothing else before working."""
    sequence = dedup(states)
    assert "working" in sequence, sequence
    before = sequence[: sequence.index("working") + 1]
    assert before[0] in ("pending", "provisioning"), sequence
    assert "connecting" in before, sequence
    assert all(s in ORDER for s in before), sequence
    assert [ORDER.index(s) for s in before] == sorted(ORDER.index(s) for s in before), sequence


# ------------------------------------------------------------------------------------- a whole session
def test_a_session_on_a_live_face_stream_from_create_to_stop(e2e: E2E) -> None:
    e2e.settle()
    user = "e2e-life"
    with RtmpSource(face_clip(), loop=True, relisten=True, max_lifetime=SOURCE_LIFETIME) as source:
        created = e2e.create(user, source.url)
        assert created.status_code == 201, created.text
        session = created.json()
        session_id = session["_id"]
        assert session["state"] == "active" and session["meta"]["workerState"] == "pending"

        async def follow() -> dict[str, Any]:
            """Worker states over the WebSocket; meanwhile the HTTP checks, the stop and the worker's exit."""
            seen: dict[str, Any] = {"states": ["pending"]}
            async with authenticated_as(e2e, user) as client:
                reply = await client.subscribe("session_worker_state", session_id)
                assert reply["status"] == 200, reply
                while seen["states"][-1] != "working":
                    seen["states"].append((await client.event(timeout=SESSION_END))[3][0])
                    assert seen["states"][-1] not in ("stopped", "error"), seen["states"]
                pid = wait_for(lambda: e2e.worker_pid(session_id), "the worker process")
                # sources filled, data within seconds, the face is happy
                seen["sources"] = wait_for(lambda: e2e.session(session_id, user)["sources"], "sources")
                seen["timeline"] = wait_for(lambda: e2e.timeline(session_id, user), "timeline data", DATA_WITHIN)
                wait_for(lambda: sum(e2e.totals(session_id, user).values()) >= 10, "ten observations", DATA_WITHIN)
                # stop → 200 finished; the worker process exits
                stopped = e2e.api("POST", f"/v1/sessions/{session_id}/stop", user)
                asked = time.monotonic()
                seen["stop"] = stopped
                wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), "the worker to exit",
                         EXIT_WITHIN, interval=0.02)
                seen["exit_seconds"] = time.monotonic() - asked
                while seen["states"][-1] not in ("stopped", "error"):
                    seen["states"].append((await client.event(timeout=SESSION_END))[3][0])
            return seen

        seen = asyncio.run(follow())

    assert_started_in_order(seen["states"])
    assert dedup(seen["states"])[-1] == "stopped", seen["states"]
    assert any(s.get("type") == "video" for s in seen["sources"]), seen["sources"]
    assert seen["timeline"][0]["detectedFaces"] >= 1
    totals = e2e.totals(session_id, user)
    assert max(totals, key=lambda e: totals[e]) == "happiness", totals

    stop = seen["stop"]
    assert stop.status_code == 200, stop.text
    assert stop.json()["state"] == "finished" and stop.json()["meta"]["stopReason"] == "user_request", stop.json()
    print(f"states {dedup(seen['states'])}; worker exited {seen['exit_seconds']:.2f} s after the stop was answered")

    execution = e2e.execution_done(session_id)
    assert execution["status"] == "SUCCEEDED", execution
    final = e2e.session(session_id, user)
    assert (final["state"], final["meta"]["stopReason"], final["meta"]["workerState"]) == (
        "finished", "user_request", "stopped"), final
    assert not e2e.capacity_held(session_id)
    events = e2e.events.wait(session_id, "SessionStarted", "SessionFinished")
    assert "SessionFailed" not in {e["detail-type"] for e in events}, events
    finished = next(e for e in events if e["detail-type"] == "SessionFinished")
    assert finished["detail"]["state"] == "finished" and finished["detail"]["stopReason"] == "user_request"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@asynccontextmanager
async def authenticated_as(e2e: E2E, user: str) -> AsyncIterator[Client]:
    async with connected(ws_url(e2e.stack)) as client:
        reply = await client.auth(e2e.token(user))
        assert reply["status"] == 200, reply
        yield client


# ------------------------------------------------------------------------- how sessions end (in parallel)
@dataclass
class Ending:
    session_id: str
    source: RtmpSource | None = None


@pytest.fixture(scope="module")
def endings(e2e: E2E) -> Iterator[dict[str, Ending]]:
    """Four sessions at once, one per way of ending: a stream that ends by itself, an unreachable URI, a 1440p
    stream, and a worker that will be killed."""
    e2e.settle()
    user = "e2e-end"
    with ExitStack() as stack:
        def source(clip: Path, loop: bool) -> RtmpSource:
            rtmp = RtmpSource(clip, loop=loop, relisten=loop, max_lifetime=SOURCE_LIFETIME)
            return stack.enter_context(rtmp)

        sources = {
            "ends": source(face_clip(seconds=3.0), loop=False),
            "large": source(make_face_clip(width=2560, height=1440, fps=5, segments=(("face", 2.0),)), loop=True),
            "killed": source(face_clip(), loop=True),
        }
        uris = {name: s.url for name, s in sources.items()}
        uris["unreachable"] = f"rtmp://127.0.0.1:{testsupport.free_port()}/live/nobody"
        out: dict[str, Ending] = {}
        for name, uri in uris.items():
            created = e2e.create(user, uri, name=name)
            assert created.status_code == 201, created.text
            out[name] = Ending(created.json()["_id"], sources.get(name))
        yield out
    e2e.settle()


def test_a_stream_that_ends_finishes_the_session(e2e: E2E, endings: dict[str, Ending]) -> None:
    session_id = endings["ends"].session_id
    ended = e2e.ended(session_id, "e2e-end")
    assert (ended["state"], ended["meta"]["stopReason"]) == ("finished", "stream_ended"), ended
    assert sum(e2e.totals(session_id, "e2e-end").values()) > 0  # it was analysed before it ended
    assert e2e.execution_done(session_id)["status"] == "SUCCEEDED"
    assert e2e.session(session_id, "e2e-end")["meta"]["workerState"] == "stopped"
    assert not e2e.capacity_held(session_id)
    e2e.events.wait(session_id, "SessionStarted", "SessionFinished")


def test_an_unreachable_stream_fails_the_session(e2e: E2E, endings: dict[str, Ending]) -> None:
    session_id = endings["unreachable"].session_id
    ended = e2e.ended(session_id, "e2e-end")
    assert (ended["state"], ended["meta"]["stopReason"]) == ("failed", "stream_unreachable"), ended
    assert "nobody" not in json.dumps(ended), "the stream URI leaked into the session"
    e2e.execution_done(session_id)
    assert not e2e.capacity_held(session_id)
    events = e2e.events.wait(session_id, "SessionFailed")
    failed = next(e for e in events if e["detail-type"] == "SessionFailed")
    assert failed["detail"]["stopReason"] == "stream_unreachable"
    assert "SessionStarted" not in {e["detail-type"] for e in events}


def test_a_1440p_stream_is_rejected_without_emotion_data(e2e: E2E, endings: dict[str, Ending]) -> None:
    session_id = endings["large"].session_id
    ended = e2e.ended(session_id, "e2e-end")
    assert (ended["state"], ended["meta"]["stopReason"]) == ("finished", "resolution_exceeded"), ended
    e2e.execution_done(session_id)
    assert set(e2e.totals(session_id, "e2e-end").values()) == {0}
    assert e2e.timeline(session_id, "e2e-end") == []
    assert not e2e.capacity_held(session_id)
    e2e.events.wait(session_id, "SessionFinished")


def test_a_killed_worker_fails_the_session_and_releases_capacity(e2e: E2E, endings: dict[str, Ending]) -> None:
    session_id = endings["killed"].session_id
    wait_for(lambda: e2e.session(session_id, "e2e-end")["meta"]["workerState"] == "working", "working")
    pid = wait_for(lambda: e2e.worker_pid(session_id), "the worker process")
    os.kill(pid, signal.SIGKILL)  # a child of the stack this module started
    ended = e2e.ended(session_id, "e2e-end")
    assert ended["state"] == "failed", ended
    assert ended["meta"]["stopReason"] in ("worker_error", "worker_lost"), ended
    assert e2e.execution_done(session_id)["status"] in ("SUCCEEDED", "FAILED")
    wait_for(lambda: not e2e.capacity_held(session_id), "the capacity to be released", 30)
    events = e2e.events.wait(session_id, "SessionFailed")
    assert [e["detail-type"] for e in events].count("SessionFailed") == 1, events


# ------------------------------------------------------------------------------------------ the global cap
def test_eight_sessions_at_a_global_cap_of_four(e2e: E2E) -> None:
    e2e.settle()
    user = "e2e-cap"
    clip = face_clip()
    with ExitStack() as stack:
        sources = [stack.enter_context(RtmpSource(clip, loop=True, relisten=True, max_lifetime=SOURCE_LIFETIME))
                   for _ in range(2 * CAP)]
        e2e.token(user)
        with ThreadPoolExecutor(len(sources)) as pool:  # all at once
            answers = list(pool.map(lambda s: e2e.create(user, s.url, fps=3.0), sources))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [201] * CAP + [503] * CAP, [a.text for a in answers]
        for refused in (a for a in answers if a.status_code == 503):
            assert refused.json()["error"] is True
        running = [a.json()["_id"] for a in answers if a.status_code == 201]

        for session_id in running:  # all four produce data
            wait_for(lambda s=session_id: e2e.timeline(s, user), f"timeline data of {session_id}", SESSION_END)
        assert e2e.active_capacity() == CAP
        at_cap = e2e.create(user, sources[0].url)
        assert at_cap.status_code == 503, at_cap.text

        for session_id in running:  # all end cleanly when stopped
            stopped = e2e.api("POST", f"/v1/sessions/{session_id}/stop", user)
            assert stopped.status_code == 200 and stopped.json()["state"] == "finished", stopped.text
        for session_id in running:
            assert e2e.execution_done(session_id)["status"] == "SUCCEEDED"
            final = e2e.session(session_id, user)
            assert (final["meta"]["stopReason"], final["meta"]["workerState"]) == ("user_request", "stopped"), final
            assert e2e.worker_pid(session_id) is None
        wait_for(lambda: e2e.active_capacity() == 0, "the capacity to be free again")

        # capacity is free again: a create succeeds (stopped at once; nothing needs to run)
        again = e2e.create(user, sources[-1].url)
        assert again.status_code == 201, again.text
        assert e2e.api("POST", f"/v1/sessions/{again.json()['_id']}/stop", user).status_code == 200
        e2e.execution_done(again.json()["_id"])
    e2e.settle()


# ---------------------------------------------------------------------------------------- a crowd (issue 8)
def test_every_face_of_a_crowd_is_counted_through_a_live_stream(e2e: E2E) -> None:
    """A 1080p30 stream of 30 faces 40–72 px tall (the evaluation set's crowd clip): the REST timeline's
    ``detectedFaces`` per 5 s interval is the number of faces in view, none counted twice.

    One face of the clip is not found: face-api's sample2 face 1, looking down with its eyes closed under its
    hair (CenterFace scores it 0.16, under the 0.35 threshold that keeps face-free frames clean; once known, the
    re-locator would hold it at 0.78). The test allows that one miss and no other; no face may count twice."""
    from emotionctl.media.evalset import build_evalset
    from emotionctl.media.evalset.clips import make_crowd_clip

    clip = make_crowd_clip(build_evalset())
    faces = len(clip.identities())
    e2e.settle()
    user = "e2e-crowd"
    with RtmpSource(clip.path, loop=True, relisten=True, max_lifetime=SOURCE_LIFETIME) as source:
        created = e2e.create(user, source.url)
        assert created.status_code == 201, created.text
        session_id = created.json()["_id"]

        def intervals() -> list[dict[str, Any]] | None:
            response = e2e.api("GET", f"/v1/sessions/{session_id}/emotions/timeline?granularity=5", user)
            assert response.status_code == 200, response.text
            timeline = list(response.json()["timeline"])
            return timeline if len(timeline) >= 4 else None

        timeline = wait_for(intervals, "four analysed 5 s intervals", SESSION_END + 30)
        stopped = e2e.api("POST", f"/v1/sessions/{session_id}/stop", user)
        assert stopped.status_code == 200, stopped.text
    counts = [interval["detectedFaces"] for interval in timeline[1:4]]  # the first interval holds the start-up
    print(f"faces in view {faces}; detectedFaces per 5 s {[i['detectedFaces'] for i in timeline]}")
    assert all(faces - 1 <= count <= faces for count in counts), counts
    whole = e2e.api("GET", f"/v1/sessions/{session_id}/emotions", user)
    assert whole.status_code == 200, whole.text
