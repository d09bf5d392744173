"""The WebSocket and publisher Lambda handlers, loaded by path and invoked with the real events of events/ws and
events/publisher (what `sam local invoke` uses), against moto; the management API is a recording fake."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from emotion_shared.auth import create_token
from emotion_shared.config import Settings
from emotion_shared.emotions import Bucket, totals
from emotion_shared.sessions import Limits, SessionRepository
from emotion_shared.ws import runtime
from emotion_shared.ws.config import WsSettings
from emotion_shared.ws.store import ConnectionStore

from emotionctl.local.lambda_runtime import load_handler, local_context

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
CONNECTION = "L0SM9cOFvHcCIhw="


class RecordingManagement:
    def __init__(self) -> None:
        self.posts: dict[str, list[Any]] = defaultdict(list)
        self.deleted: list[str] = []

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:
        self.posts[ConnectionId].append(json.loads(Data))

    def delete_connection(self, ConnectionId: str) -> None:
        self.deleted.append(ConnectionId)


@dataclass
class InProcessFunction:
    """A function's handler loaded by path and called in this process, so the test's injected collaborators
    (``runtime.service.override``…) are the ones it uses."""

    logical_id: str
    entry: Callable[[Any, Any], Any]

    def invoke(self, event: dict[str, Any]) -> Any:
        return self.entry(event, local_context(f"test-{self.logical_id}", timeout_seconds=10))


def function(logical: str, code: str) -> InProcessFunction:
    return InProcessFunction(logical, load_handler(REPO / "functions" / code, "app.handler", f"_test_{logical}"))


@contextmanager
def ws_runtimes(management: RecordingManagement) -> Iterator[None]:
    """The WebSocket and publisher composition roots built from the current environment, pushing to
    ``management``, injected until the block ends."""
    settings, ws = Settings.from_env(), WsSettings.from_env()
    publisher = runtime.build_publisher(settings, ws, management=management)
    try:
        with runtime.service.override(runtime.build_service(settings, ws, management=management)), \
                runtime.publisher.override(publisher):
            yield
    finally:
        publisher.close()


def event(path: str, **replace: str) -> dict[str, Any]:
    text = (EVENTS / path).read_text(encoding="utf-8")
    for old, new in replace.items():
        text = text.replace(old, new)
    return json.loads(text)


@pytest.fixture
def env(tables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("WEBSOCKET_MANAGEMENT_ENDPOINT", "http://127.0.0.1:9/unused")
    monkeypatch.setenv("WS_IDLE_SECONDS", "65")
    management = RecordingManagement()
    with ws_runtimes(management):
        yield management


def test_a_connection_through_the_handlers(env: RecordingManagement, dynamodb: Any, tables: dict[str, str]) -> None:
    ws = function("WebSocketFunction", "ws")
    publisher = function("PublisherFunction", "publisher")
    store = ConnectionStore(dynamodb, tables["CONNECTIONS_TABLE"])
    token = create_token(dynamodb, tables["CONTROL_TABLE"], "alice")
    session = SessionRepository(dynamodb, tables["SESSIONS_TABLE"], tables["CONTROL_TABLE"]).create(
        user="alice", product="standard", name="s", stream_uri="rtsp://h/x", config={}, now_ms=1_735_725_600_000,
        limits=Limits(10, 5, 30))
    sid = session["id"]

    # $connect
    assert ws.invoke(event("ws/connect.json")) == {"statusCode": 200}
    connection = store.get(CONNECTION)
    assert connection is not None and connection.ip == "203.0.113.7" and not connection.authenticated
    # auth:token, then a subscription with the current state at once
    assert ws.invoke(event("ws/message_auth.json", TOKEN=token)) == {"statusCode": 200}
    assert ws.invoke(event("ws/message_subscribe.json", SESSION_ID=sid)) == {"statusCode": 200}
    auth, subscribed, first = env.posts[CONNECTION]
    assert auth == {"id": 1, "path": "auth:token", "status": 200}
    subscription = subscribed["body"]["subscriptionId"]
    assert first[0] == subscription and first[2:] == ["sws", ["pending"]]
    # a worker-state change on the sessions stream
    sessions_arn = f"table/{tables['SESSIONS_TABLE']}/stream"
    result = publisher.invoke(event("publisher/sessions_worker_state.json", SESSION_ID=sid,
                                    **{"table/emotion-stream-dev-SessionsTable-DEF/stream": sessions_arn}))
    assert result == {"batchItemFailures": []}
    assert env.posts[CONNECTION][-1][2:] == ["sws", ["working"]]
    # a bucket on the emotions stream completes the 5 s period [0, 5)
    message = event("ws/message_auth.json")
    message["body"] = json.dumps({"id": 3, "path": "channels:subscribe",
                                  "body": {"channel": "session_emotions_counts", "key": f"{sid}:5s"}})
    ws.invoke(message)
    counts = env.posts[CONNECTION][-1]["body"]["subscriptionId"]
    emotions_arn = f"table/{tables['EMOTIONS_TABLE']}/stream"
    records = event("publisher/emotions_insert.json", SESSION_ID=sid,
                    **{"table/emotion-stream-dev-EmotionsTable-ABC/stream": emotions_arn})
    assert publisher.invoke(records) == {"batchItemFailures": []}
    expected = Bucket(sec=4, faces={"t1": {"happiness": [4, 3.6], "neutral": [1, 0.55]},
                                    "t2": {"surprise": [5, 3.5]}})
    assert env.posts[CONNECTION][-1] == [
        counts, session["createdAtMs"] + 5000, "sec", [totals([expected])], {"frames": {"received": 5, "analysed": 5}}
    ]
    # $disconnect forgets everything
    assert ws.invoke(event("ws/disconnect.json")) == {"statusCode": 200}
    assert store.get(CONNECTION) is None
    assert store.subscribers(sid) == []


def test_the_sweeper_closes_idle_connections(env: RecordingManagement, dynamodb: Any,
                                             tables: dict[str, str]) -> None:
    sweeper = function("WebSocketSweeperFunction", "ws_sweeper")
    store = ConnectionStore(dynamodb, tables["CONNECTIONS_TABLE"])
    store.open("idle-one", "127.0.0.1", 1_000)  # long ago
    store.open("fresh-one", "127.0.0.1", 2**52)  # far in the future: never idle
    assert sweeper.invoke(event("ws/sweep_schedule.json")) == {"closed": 1}
    assert env.deleted == ["idle-one"]


def test_a_failing_dependency_is_answered_not_dropped(env: RecordingManagement, monkeypatch: pytest.MonkeyPatch,
                                                      tables: dict[str, str]) -> None:
    from botocore.exceptions import ClientError

    ws = function("WebSocketFunction", "ws")
    assert ws.invoke(event("ws/connect.json")) == {"statusCode": 200}

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "UpdateItem")

    monkeypatch.setattr(ConnectionStore, "touch", unavailable)
    assert ws.invoke(event("ws/message_auth.json", TOKEN="x")) == {"statusCode": 200}
    (reply,) = env.posts[CONNECTION]
    assert reply["status"] == 500 and reply["id"] == 1 and reply["body"]["message"]
