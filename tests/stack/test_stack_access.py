"""Black box over HTTP and WebSocket against `emotionctl local up`: token lifecycle (expiry, revoke, list),
viewer tokens (what they may do, the 10-live limit, revoke, deletion with the session), the error code of
every error route, and problem+json content negotiation.

The stack is its own, with a 1-second authorizer cache (``AuthorizerCacheSeconds=1``: the documented bound on
how long a revoked or expired token keeps working), one active session per user (to reach
``capacity_exhausted`` cheaply) and a small rate limit for one user to reach ``rate_limited``. Waits are the
TTL itself (plus a tenth of a second), never a speed assertion.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from emotion_shared.errors import ErrorCode
from stack_support import REPO, StackProcess, emotionctl, start_stack
from websocket_support import aws_client, connected, put_session, run, table, ws_url

from emotionctl.local.stack import MAX_BODY_BYTES

pytestmark = pytest.mark.stack

TTL = 1.0  # AuthorizerCacheSeconds of this stack
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    started = start_stack(
        tmp_path_factory.mktemp("access-stack"),
        f"AuthorizerCacheSeconds={int(TTL)}", "MaxActiveSessionsPerUser=1", "RateLimitCapacity=30",
    )
    try:
        yield started
    finally:
        code = started.stop()
        assert code == 0, f"the local stack exited with {code}:\n{started.log()}"


def cli(stack: StackProcess, *args: str) -> str:
    return emotionctl("token", *args, "--stack-file", str(stack.state_file)).stdout


def call(stack: StackProcess, method: str, path: str, token: str | None, **kwargs: Any) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}) or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, stack.url + path, headers=headers, timeout=30, **kwargs)


def code_of(response: requests.Response, status: int) -> str:
    """The error's code, after checking the reference body (or the problem object) around it."""
    assert response.status_code == status, response.text
    body = response.json()
    if response.headers["Content-Type"].startswith(PROBLEM):
        assert set(body) <= {"type", "title", "status", "detail", "instance", "code"}, body
        assert body["type"] == "urn:emotion-stream:error:" + body["code"] and body["title"] and body["detail"]
        assert body["status"] == status and body["instance"] == "urn:uuid:" + response.headers["x-amzn-RequestId"]
    else:
        assert response.headers["Content-Type"].startswith("application/json"), response.headers
        assert set(body) >= {"error", "status", "message", "code"} and body["error"] is True, body
        assert body["status"] == status and body["message"]
    return str(ErrorCode(body["code"]))


def after_ttl() -> None:
    time.sleep(TTL + 0.1)


def session_of(stack: StackProcess, user: str, worker_state: str = "stopped") -> str:
    """A session item as the REST API writes it (no worker, no capacity), so reads are deterministic."""
    return put_session(stack, user, worker_state=worker_state)


def finish(stack: StackProcess, session_id: str) -> None:
    aws_client(stack, "dynamodb").update_item(
        TableName=table(stack, "SessionsTable"), Key={"id": {"S": session_id}},
        UpdateExpression="SET #s = :f", ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":f": {"S": "finished"}},
    )


# ---------------------------------------------------------------------- token lifecycle
def test_token_list_shows_the_lifecycle_and_never_a_secret(stack: StackProcess) -> None:
    named = cli(stack, "create", "--user", "lister", "--name", "ci-runner", "--expires", "30d").strip()
    forever = cli(stack, "create", "--user", "lister", "--expires", "never").strip()
    assert call(stack, "GET", "/v1/sessions", named).status_code == 200
    table = cli(stack, "list", "--user", "lister")
    rows = [json.loads(line) for line in cli(stack, "list", "--user", "lister", "--json").splitlines()]
    for secret in (named, forever):
        assert secret not in table and secret not in json.dumps(rows)
        assert secret[4:20] not in table  # not even a piece of it
    assert "ci-runner" in table and "active" in table
    by_name = {row["name"]: row for row in rows}
    assert by_name["ci-runner"]["expiresAt"] and by_name["ci-runner"]["lastUsedAt"]
    assert by_name[None]["expiresAt"] is None and by_name[None]["lastUsedAt"] is None
    assert {row["scope"] for row in rows} == {"user"}


def test_a_revoked_token_is_refused_within_the_ttl(stack: StackProcess) -> None:
    token = cli(stack, "create", "--user", "revoker").strip()
    assert call(stack, "GET", "/v1/sessions", token).status_code == 200  # the authorizer decision is cached now
    (row,) = [json.loads(line) for line in cli(stack, "list", "--user", "revoker", "--json").splitlines()]
    assert cli(stack, "revoke", row["tokenId"][:8]).strip() == f"revoked {row['tokenId']}"
    after_ttl()
    assert code_of(call(stack, "GET", "/v1/sessions", token), 401) == "unauthorized"
    (row,) = [json.loads(line) for line in cli(stack, "list", "--user", "revoker", "--json").splitlines()]
    assert row["status"] == "revoked"
    # and on the WebSocket
    async def ws_auth() -> dict[str, Any]:
        async with connected(ws_url(stack)) as client:
            return await client.auth(token)
    reply = run(ws_auth())
    assert reply["status"] == 401 and reply["body"]["code"] == "unauthorized"


def test_an_expired_token_is_refused_within_the_ttl(stack: StackProcess) -> None:
    token = cli(stack, "create", "--user", "expirer", "--expires", "6s").strip()
    (row,) = [json.loads(line) for line in cli(stack, "list", "--user", "expirer", "--json").splitlines()]
    assert call(stack, "GET", "/v1/sessions", token).status_code == 200
    expires_at = time.mktime(time.strptime(row["expiresAt"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    time.sleep(max(0.0, expires_at + 1 - time.time()) + TTL + 0.1)  # past the expiry, then the TTL
    assert code_of(call(stack, "GET", "/v1/sessions", token), 401) == "unauthorized"
    (row,) = [json.loads(line) for line in cli(stack, "list", "--user", "expirer", "--json").splitlines()]
    assert row["status"] == "expired"


# ---------------------------------------------------------------------- viewer tokens
def mint(stack: StackProcess, owner: str, sid: str, count: int = 1) -> requests.Response:
    return call(stack, "POST", f"/v1/sessions/{sid}/viewer-tokens", owner, json={"count": count, "expiresIn": 600})


def test_the_viewer_token_matrix(stack: StackProcess) -> None:
    owner = stack.token("owner")
    sid, other = session_of(stack, "owner"), session_of(stack, "owner")
    stranger = session_of(stack, "someone-else")
    minted = mint(stack, owner, sid)
    assert minted.status_code == 201, minted.text
    (viewer,) = minted.json()["tokens"]
    token = viewer["token"]
    # reads of its session
    reads = ("", "/emotions", "/emotions/timeline", "/audio/transcription-sentiment", "/audio/transcript")
    for read in reads:
        assert call(stack, "GET", f"/v1/sessions/{sid}{read}", token).status_code == 200, read
    # every other session (its audio routes too), and the list: as for a stranger
    for path in (*(f"/v1/sessions/{other}{read}" for read in reads), f"/v1/sessions/{stranger}/emotions",
                 f"/v1/sessions/{stranger}/audio/transcription-sentiment", f"/v1/sessions/{sid}/viewer-tokens"):
        assert code_of(call(stack, "GET", path, token), 404) == "session_not_found", path
    assert code_of(call(stack, "GET", "/v1/sessions", token), 404) == "route_not_found"
    # writes: 403
    for method, path, body in [
        ("POST", "/v1/sessions", {"name": "x", "streamUri": "rtmp://127.0.0.1:1/x"}),
        ("POST", f"/v1/sessions/{sid}/stop", None),
        ("DELETE", f"/v1/sessions/{sid}", None),
        ("POST", f"/v1/sessions/{sid}/viewer-tokens", {"count": 1}),
        ("DELETE", f"/v1/sessions/{sid}/viewer-tokens/{viewer['tokenId']}", None),
    ]:
        assert code_of(call(stack, method, path, token, json=body), 403) == "forbidden", (method, path)
    # WebSocket: its session's channels only
    async def ws() -> tuple[dict[str, Any], dict[str, Any], list[Any], dict[str, Any]]:
        async with connected(ws_url(stack)) as client:
            auth = await client.auth(token)
            mine = await client.subscribe("session_worker_state", sid)
            event = await client.event()
            theirs = await client.subscribe("session_worker_state", other)
            return auth, mine, event, theirs
    auth, mine, event, theirs = run(ws())
    assert auth["status"] == 200 and mine["status"] == 200
    assert event[0] == mine["body"]["subscriptionId"] and event[2:] == ["sws", ["stopped"]]
    assert theirs["status"] == 404 and theirs["body"]["code"] == "session_not_found"
    # the owner lists it (no secret) and revokes it: 401 within the TTL, REST and WebSocket
    listed = call(stack, "GET", f"/v1/sessions/{sid}/viewer-tokens", owner)
    assert [t["tokenId"] for t in listed.json()["data"]] == [viewer["tokenId"]] and token not in listed.text
    assert call(stack, "DELETE", f"/v1/sessions/{sid}/viewer-tokens/{viewer['tokenId']}", owner).status_code == 204
    after_ttl()
    assert code_of(call(stack, "GET", f"/v1/sessions/{sid}", token), 401) == "unauthorized"


def test_an_open_websocket_of_a_revoked_viewer_token_is_closed(stack: StackProcess) -> None:
    owner = stack.token("watcher")
    sid = session_of(stack, "watcher")
    (viewer,) = mint(stack, owner, sid).json()["tokens"]

    async def scenario() -> tuple[dict[str, Any], Any]:
        async with connected(ws_url(stack)) as client:
            assert (await client.auth(viewer["token"]))["status"] == 200
            assert (await client.request("ping"))["status"] == 200
            revoked = call(stack, "DELETE", f"/v1/sessions/{sid}/viewer-tokens/{viewer['tokenId']}", owner)
            assert revoked.status_code == 204
            time.sleep(TTL + 0.1)  # the WebSocket function's token cache (AuthorizerCacheSeconds)
            await client.send("ping")
            closed = await client.closed()
            return closed.messages[-1], closed.code
    last, _ = run(scenario())
    assert last["status"] == 401 and last["body"]["code"] == "unauthorized"


def test_the_eleventh_viewer_token_is_refused(stack: StackProcess) -> None:
    owner = stack.token("many")
    sid = session_of(stack, "many")
    assert mint(stack, owner, sid, count=10).status_code == 201
    assert code_of(mint(stack, owner, sid, count=1), 409) == "viewer_token_limit"
    assert len(call(stack, "GET", f"/v1/sessions/{sid}/viewer-tokens", owner).json()["data"]) == 10


def test_viewer_tokens_die_with_their_session(stack: StackProcess) -> None:
    owner = stack.token("deleter")
    sid = session_of(stack, "deleter")
    tokens = [t["token"] for t in mint(stack, owner, sid, count=2).json()["tokens"]]
    assert call(stack, "GET", f"/v1/sessions/{sid}", tokens[0]).status_code == 200
    assert call(stack, "DELETE", f"/v1/sessions/{sid}", owner).status_code == 400  # still active
    finish(stack, sid)
    assert call(stack, "DELETE", f"/v1/sessions/{sid}", owner).status_code == 204
    after_ttl()
    for token in tokens:
        assert code_of(call(stack, "GET", f"/v1/sessions/{sid}", token), 401) == "unauthorized"


# ---------------------------------------------------------------------- every error route and its code
def error_routes(stack: StackProcess) -> list[tuple[str, str, str | None, dict[str, Any], int, str]]:
    """(method, path, token, request kwargs, status, code) — one request per documented error code that a
    client can provoke on a healthy stack."""
    user = stack.token("errors")
    finished = session_of(stack, "errors")
    finish(stack, finished)
    active = session_of(stack, "errors", worker_state="working")
    full = session_of(stack, "errors")
    mint(stack, user, full, count=10)
    (viewer,) = mint(stack, user, active).json()["tokens"]
    # A create remembered under an Idempotency-Key (another user: this one's capacity is taken on purpose).
    idem = stack.token(f"idempotent{time.time_ns()}")
    key = "key-" + str(time.time_ns())
    first = {"name": "a", "streamUri": "rtmp://127.0.0.1:1/x"}
    created = call(stack, "POST", "/v1/sessions", idem, json=first, headers={"Idempotency-Key": key})
    assert created.status_code == 201, created.text
    call(stack, "POST", f"/v1/sessions/{created.json()['_id']}/stop", idem)
    uri = "rtmp://127.0.0.1:1/y"
    return [
        ("GET", "/v1/sessions", None, {}, 401, "unauthorized"),
        ("GET", "/v1/sessions", "emo_not-a-token", {}, 401, "unauthorized"),
        ("GET", "/v2/nothing", None, {}, 404, "route_not_found"),
        # An undeclared method on a known path reaches the function through the path's catch-all ANY: 405.
        ("PUT", "/v1/sessions", user, {}, 405, "method_not_allowed"),
        ("GET", "/v1/sessions", user, {"params": {"limit": "0"}}, 400, "validation_failed"),
        ("POST", "/v1/sessions", user, {"json": {"name": "x", "streamUri": "http://x"}}, 400, "invalid_stream_uri"),
        ("GET", "/v1/sessions/" + "0" * 24, user, {}, 404, "session_not_found"),
        ("POST", f"/v1/sessions/{finished}/stop", user, {}, 400, "session_not_active"),
        ("DELETE", f"/v1/sessions/{active}", user, {}, 400, "session_active"),
        ("POST", "/v1/sessions", idem, {"json": {**first, "name": "b"}, "headers": {"Idempotency-Key": key}}, 400,
         "idempotency_key_reused"),
        ("POST", f"/v1/sessions/{active}/stop", viewer["token"], {}, 403, "forbidden"),
        ("DELETE", f"/v1/sessions/{active}/viewer-tokens/" + "0" * 16, user, {}, 404, "viewer_token_not_found"),
        ("POST", f"/v1/sessions/{full}/viewer-tokens", user, {"json": {}}, 409, "viewer_token_limit"),
        ("POST", "/v1/sessions", user, {"json": {"name": "c", "streamUri": uri}}, 503, "capacity_exhausted"),
        # the gateway's own answer: a body over API Gateway's 10 MB payload limit
        ("POST", "/v1/sessions", user, {"data": b"x" * (MAX_BODY_BYTES + 1),
                                        "headers": {"Content-Type": "application/json"}}, 413, "request_too_large"),
    ]


@pytest.mark.parametrize("accept", [None, PROBLEM])
def test_every_error_route_returns_its_documented_code(stack: StackProcess, accept: str | None) -> None:
    # One active session for this user (MaxActiveSessionsPerUser=1) makes the last create a 503.
    user = stack.token("errors")
    call(stack, "POST", "/v1/sessions", user, json={"name": "hold", "streamUri": "rtmp://127.0.0.1:1/hold"})
    doc = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
    documented = set(doc["components"]["schemas"]["ErrorCode"]["enum"])
    for method, path, token, kwargs, status, code in error_routes(stack):
        headers = dict(kwargs.pop("headers", {}))
        if accept:
            headers["Accept"] = accept
        response = call(stack, method, path, token, headers=headers, **kwargs)
        assert code_of(response, status) == code, (method, path, response.text)
        assert code in documented
        assert response.headers["Content-Type"].startswith(accept or "application/json")


def test_rate_limited_has_its_code(stack: StackProcess) -> None:
    token = stack.token("hammer")
    for _ in range(30):
        call(stack, "GET", "/v1/sessions", token)
    response = call(stack, "GET", "/v1/sessions", token)
    assert code_of(response, 429) == "rate_limited" and int(response.headers["Retry-After"]) >= 1
    # and as a problem object (the bucket refills 30 per 60 s while we ask: the refusal comes within a few)
    for _ in range(10):
        response = call(stack, "GET", "/v1/sessions", token, headers={"Accept": PROBLEM})
        if response.status_code == 429:
            break
    assert response.headers["Content-Type"].startswith(PROBLEM)
    assert code_of(response, 429) == "rate_limited" and int(response.headers["Retry-After"]) >= 1


# ---------------------------------------------------------------------- content negotiation
@pytest.mark.parametrize(
    ("accept", "problem"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("application/*", False),
        ("text/html", False),
        (PROBLEM, True),
        ("application/json;q=0.5, application/problem+json", True),
        ("application/problem+json;q=0.4, application/json;q=0.9", False),
        ("application/problem+json;q=0", False),
    ],
)
def test_problem_json_on_request_and_the_reference_body_otherwise(
    stack: StackProcess, accept: str | None, problem: bool
) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    for response in (
        call(stack, "GET", "/v1/sessions/" + "0" * 24, stack.token("negotiator"), headers=headers),  # the handler
        call(stack, "GET", "/v1/sessions", None, headers=headers),  # API Gateway's own (the authorizer's 401)
    ):
        content_type = response.headers["Content-Type"]
        assert content_type.startswith(PROBLEM if problem else "application/json"), (accept, content_type)
        body = response.json()
        assert ("type" in body) is problem and ("error" in body) is not problem and "code" in body
