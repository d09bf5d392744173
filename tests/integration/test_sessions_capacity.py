# ruff: noqa: F811 - pytest fixtures imported from api_support are redefined as parameters
"""Admission, workflow start and capacity release, against the moto server."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest
from api_support import (  # noqa: F401 - fixtures
    Api,
    api,
    api_env,
    atomic_moto_dynamodb,
    executions,
    rebuild_api_runtime,
    state_machine,
)
from emotion_shared.auth import Principal
from emotion_shared.config import Settings
from emotion_shared.emotions import EmotionStore
from emotion_shared.errors import CapacityExceeded
from emotion_shared.rest.errors import api_error
from emotion_shared.session_models import CreateSessionRequest, StopReason, WorkerState
from emotion_shared.session_service import SessionService, StepFunctionsStarter
from emotion_shared.sessions import SessionRepository


def repo_for(moto_server: Any, env: dict[str, str]) -> SessionRepository:
    client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
    return SessionRepository(client, env["SESSIONS_TABLE"], env["CONTROL_TABLE"])


def race(moto_server: Any, env: dict[str, str], users: list[str]) -> list[int]:
    """One create per user name, all at once, each thread with its own clients and service (as separate
    Lambda instances). Returns the HTTP status each would answer."""
    settings = Settings.from_env()
    barrier = threading.Barrier(len(users))
    statuses: list[int] = []
    lock = threading.Lock()
    request = CreateSessionRequest(name="race", streamUri="rtmp://127.0.0.1/live/x")

    def one(user: str) -> None:
        client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
        service = SessionService(
            SessionRepository(client, env["SESSIONS_TABLE"], env["CONTROL_TABLE"]),
            EmotionStore(client, env["EMOTIONS_TABLE"]),
            settings,
        )
        barrier.wait()
        try:
            service.create(Principal(user, "standard"), request)
            status = 201
        except CapacityExceeded as exc:
            status = api_error(exc).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


def test_twenty_concurrent_creates_against_a_per_user_cap_of_five(
    api_env: dict[str, str], moto_server: Any, atomic_moto_dynamodb: None
) -> None:
    statuses = race(moto_server, api_env, ["alice"] * 20)
    assert sorted(statuses) == [201] * 5 + [503] * 15
    repo = repo_for(moto_server, api_env)
    assert repo.active_count("alice") == 5 and repo.active_count() == 5
    assert len(repo.active_ids()) == 5


def test_twenty_concurrent_creates_against_a_global_cap_of_five(
    api_env: dict[str, str], moto_server: Any, atomic_moto_dynamodb: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_ACTIVE_SESSIONS", "5")
    statuses = race(moto_server, api_env, [f"user{i}" for i in range(20)])
    assert sorted(statuses) == [201] * 5 + [503] * 15
    assert repo_for(moto_server, api_env).active_count() == 5


def test_capacity_messages_say_which_cap(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        api.create(name=f"s{i}")
    mine = api.create()
    assert mine.status == 503 and "you already have 5 active sessions" in mine.body["message"]
    monkeypatch.setenv("MAX_ACTIVE_SESSIONS", "5")
    rebuild_api_runtime()
    everyone = api.create(user="bob")
    assert everyone.status == 503 and "the service is at capacity" in everyone.body["message"]


def test_create_starts_one_execution_named_after_the_session(
    api: Api, state_machine: str, moto_server: Any, api_env: dict[str, str]
) -> None:
    sid = api.create().body["_id"]
    (run,) = executions(moto_server, state_machine)
    assert run["name"] == sid
    sfn = boto3.session.Session().client("stepfunctions", endpoint_url=moto_server.endpoint)
    described = sfn.describe_execution(executionArn=run["executionArn"])
    assert json.loads(described["input"]) == {"sessionId": sid}
    item = repo_for(moto_server, api_env).get(sid)
    assert item is not None and item["executionArn"] == run["executionArn"]
    assert "executionArn" not in api.call("GET", f"/v1/sessions/{sid}").body


def test_a_workflow_that_cannot_start_fails_the_session_and_frees_capacity(
    api: Api, moto_server: Any, api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:does-not-exist"
    )
    rebuild_api_runtime()
    resp = api.create()
    assert resp.status == 503 and "could not start an analysis worker" in resp.body["message"]
    (failed,) = api.call("GET", "/v1/sessions").body["data"]
    assert failed["state"] == "failed"
    assert failed["meta"]["stopReason"] == "worker_error"
    assert failed["meta"]["workerState"] == "error"
    assert "StateMachineDoesNotExist" in failed["meta"]["error"]
    repo = repo_for(moto_server, api_env)
    assert repo.active_count() == 0 and repo.active_count("alice") == 0
    assert repo.get(failed["_id"])["capacityHeld"] is False
    # the failed session is an ended one: it can be deleted
    assert api.call("DELETE", f"/v1/sessions/{failed['_id']}").status == 204


def test_capacity_is_released_exactly_once(
    api: Api, state_machine: str, moto_server: Any, api_env: dict[str, str]
) -> None:
    """With a workflow, a user stop leaves the release to the workflow; however many parties then try to
    release (state machine retry, sweeper), the counters go down once."""
    repo = repo_for(moto_server, api_env)
    sid = api.create().body["_id"]
    other = api.create().body["_id"]
    assert repo.active_count() == 2
    assert api.call("POST", f"/v1/sessions/{sid}/stop").body["state"] == "finished"
    assert repo.active_count() == 2  # still held: the worker may still be running
    assert repo.release_capacity(sid) is True  # the state machine's release step
    assert repo.release_capacity(sid) is False  # a retried or concurrent release
    assert repo.active_count() == 1 and repo.active_count("alice") == 1
    assert api.call("DELETE", f"/v1/sessions/{sid}").status == 204
    assert repo.active_count() == 1
    assert repo.release_capacity(other) is False  # an active session is never released
    assert repo.active_count() == 1


def test_without_a_workflow_a_stop_releases_capacity_itself(
    api: Api, moto_server: Any, api_env: dict[str, str]
) -> None:
    repo = repo_for(moto_server, api_env)
    sid = api.create().body["_id"]
    assert repo.active_count("alice") == 1
    api.call("POST", f"/v1/sessions/{sid}/stop")
    assert repo.active_count("alice") == 0 and repo.active_count() == 0
    assert repo.release_capacity(sid) is False
    assert repo.active_count() == 0


def test_deleting_an_ended_session_that_still_holds_capacity_releases_it(
    api: Api, state_machine: str, moto_server: Any, api_env: dict[str, str]
) -> None:
    """The worker ended the session (stream ended) but its workflow has not released yet: a delete gives
    the capacity back, and the workflow's later release is a no-op."""
    repo = repo_for(moto_server, api_env)
    sid = api.create().body["_id"]
    assert repo.end(sid, StopReason.STREAM_ENDED, 1, worker_state=WorkerState.STOPPED) is True
    assert repo.active_count() == 1
    assert api.call("DELETE", f"/v1/sessions/{sid}").status == 204
    assert repo.active_count() == 0 and repo.active_count("alice") == 0
    assert repo.release_capacity(sid) is False
    assert repo.active_count() == 0


def test_step_functions_starter_passes_the_session_id(state_machine: str, moto_server: Any) -> None:
    sfn = boto3.session.Session().client("stepfunctions", endpoint_url=moto_server.endpoint)
    arn = StepFunctionsStarter(sfn, state_machine).start("0123456789abcdef01234567")
    assert arn.endswith(":0123456789abcdef01234567")
