# ruff: noqa: F811 - pytest fixtures imported from api_support are redefined as parameters
"""Idempotent create (Idempotency-Key) through the handler, on the idempotency table in moto."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from api_support import Api, api, api_env, executions, state_machine  # noqa: F401 - fixtures
from emotion_shared.auth import Principal
from emotion_shared.config import Settings
from emotion_shared.emotions import EmotionStore
from emotion_shared.rest.idempotency import IdempotentCreate
from emotion_shared.session_models import CreateSessionRequest
from emotion_shared.session_service import SessionService
from emotion_shared.sessions import SessionRepository

from emotionctl.local.lambda_runtime import local_context

BODY = {"name": "retry me", "streamUri": "rtmp://127.0.0.1/live/key"}


def create(api: Api, key: str, body: dict[str, Any] | None = None, user: str = "alice") -> Any:
    return api.call("POST", "/v1/sessions", body=body or BODY, headers={"Idempotency-Key": key}, user=user)


def test_replay_returns_the_same_session_and_starts_one_worker(
    api: Api, state_machine: str, moto_server: Any
) -> None:
    first = create(api, "key-1")
    assert first.status == 201
    again = create(api, "key-1")
    assert again.status == 201 and again.body == first.body
    # the same request with the defaults spelled out is the same request
    spelled = create(api, "key-1", {**BODY, "type": "live_analysis", "config": {"removeMedia": True}})
    assert spelled.status == 201 and spelled.body["_id"] == first.body["_id"]
    runs = executions(moto_server, state_machine)
    assert [r["name"] for r in runs] == [first.body["_id"]]
    assert len(api.call("GET", "/v1/sessions").body["data"]) == 1
    # without a key, or with another key, it is a new session
    assert create(api, "key-2").body["_id"] != first.body["_id"]
    assert api.create(**{"name": BODY["name"], "uri": BODY["streamUri"]}).body["_id"] != first.body["_id"]
    assert len(executions(moto_server, state_machine)) == 3


def test_same_key_different_body_is_400(api: Api) -> None:
    first = create(api, "k")
    other = create(api, "k", {**BODY, "name": "something else"})
    assert other.status == 400
    assert "Idempotency-Key was already used with a different request body" in other.body["message"]
    assert [s["_id"] for s in api.call("GET", "/v1/sessions").body["data"]] == [first.body["_id"]]


def test_keys_are_scoped_per_user(api: Api) -> None:
    alice = create(api, "shared-key", user="alice")
    bob = create(api, "shared-key", user="bob")
    assert alice.status == bob.status == 201
    assert alice.body["_id"] != bob.body["_id"] and bob.body["user"] == "bob"


@pytest.mark.parametrize("key", ["", "x" * 256, "clé", "two words"])
def test_malformed_keys_are_400(api: Api, key: str) -> None:
    resp = create(api, key)
    assert resp.status == 400 and "Idempotency-Key" in resp.body["message"]


def test_a_failed_create_is_not_remembered(api: Api) -> None:
    held = [api.create(name=f"s{i}").body["_id"] for i in range(5)]  # per-user cap is 5
    full = create(api, "after-full")
    assert full.status == 503
    api.call("POST", f"/v1/sessions/{held[0]}/stop")
    retried = create(api, "after-full")
    assert retried.status == 201


class _BlockingStarter:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def start(self, session_id: str) -> str:
        self.entered.set()
        assert self.release.wait(30)
        return f"arn:aws:states:us-east-1:123456789012:execution:blocked:{session_id}"


def test_a_concurrent_duplicate_in_flight_is_409(api: Api, moto_server: Any, api_env: dict[str, str]) -> None:
    """Another instance is still creating with this key (its workflow start is slow): the duplicate gets a
    409, and once the first one finished the duplicate replays its session."""
    client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
    settings = Settings.from_env()
    starter = _BlockingStarter()
    service = SessionService(
        SessionRepository(client, api_env["SESSIONS_TABLE"], api_env["CONTROL_TABLE"]),
        EmotionStore(client, api_env["EMOTIONS_TABLE"]),
        settings,
        starter=starter,
    )
    other_instance = IdempotentCreate(service, client, api_env["IDEMPOTENCY_TABLE"], 3600)
    result: dict[str, Any] = {}

    def first() -> None:
        result["session"] = other_instance.create(
            Principal("alice", "standard"), CreateSessionRequest.model_validate(BODY), "in-flight",
            local_context("test-ApiFunction"),
        )

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert starter.entered.wait(30)
        duplicate = create(api, "in-flight")
        assert duplicate.status == 409 and duplicate.body["code"] == "idempotency_in_progress"
        assert "still in progress" in duplicate.body["message"]
        as_problem = api.call("POST", "/v1/sessions", body=BODY,
                              headers={"Idempotency-Key": "in-flight", "Accept": "application/problem+json"})
        assert as_problem.header("Content-Type") == "application/problem+json"
        assert (as_problem.status, as_problem.body["code"]) == (409, "idempotency_in_progress")
        assert as_problem.body["type"] == "urn:emotion-stream:error:idempotency_in_progress"
    finally:
        starter.release.set()
        thread.join(30)
    replay = create(api, "in-flight")
    assert replay.status == 201 and replay.body == result["session"]
