"""Black box over HTTP against `emotionctl local up`: the API contract details that the handler-level tests
prove against moto — idempotent create, exact pagination, rate limiting — checked through the real gateway."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from stack_support import StackProcess, assert_reference_error

pytestmark = pytest.mark.stack

UNREACHABLE_STREAM = "rtmp://127.0.0.1:9/live/nothing-here"


def _create(stack: StackProcess, user: str, name: str, **kwargs: object) -> dict:
    response = stack.request(
        "POST", "/v1/sessions", user=user, json={"name": name, "streamUri": UNREACHABLE_STREAM}, **kwargs
    )
    assert response.status_code == 201, response.text
    return response.json()


def _stop(stack: StackProcess, user: str, sid: str) -> None:
    # frees the capacity at once, so this module never crowds the shared stack
    assert stack.request("POST", f"/v1/sessions/{sid}/stop", user=user).status_code in (200, 400)


def test_idempotent_create_replays_the_same_session(local_stack: StackProcess) -> None:
    # Given a create with an Idempotency-Key
    user, key = "idem-user", uuid.uuid4().hex
    first = _create(local_stack, user, "idempotent", headers={"Idempotency-Key": key})
    try:
        # When it is retried with the same key and body, Then the same session comes back
        again = _create(local_stack, user, "idempotent", headers={"Idempotency-Key": key})
        assert again["_id"] == first["_id"]
        listed = local_stack.request("GET", "/v1/sessions", user=user, params={"limit": 100}).json()["data"]
        assert [s["_id"] for s in listed].count(first["_id"]) == 1 and len(listed) == 1
        # And the same key with another body is refused
        other = local_stack.request(
            "POST", "/v1/sessions", user=user, headers={"Idempotency-Key": key},
            json={"name": "something else", "streamUri": UNREACHABLE_STREAM},
        )
        assert_reference_error(other, 400)
    finally:
        _stop(local_stack, user, first["_id"])


def test_pagination_is_newest_first_with_an_exact_has_more(local_stack: StackProcess) -> None:
    # Given three sessions of one user
    user = "pager"
    ids = []
    for n in range(3):
        ids.append(_create(local_stack, user, f"page {n}")["_id"])
        _stop(local_stack, user, ids[-1])
    newest_first = list(reversed(ids))

    def page(**params: int) -> dict:
        response = local_stack.request("GET", "/v1/sessions", user=user, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    # Then the pages cut the list exactly
    first = page(limit=2)
    assert ([s["_id"] for s in first["data"]], first["hasMore"]) == (newest_first[:2], True)
    assert (first["offset"], first["limit"]) == (0, 2)
    second = page(limit=2, offset=2)
    assert ([s["_id"] for s in second["data"]], second["hasMore"]) == (newest_first[2:], False)
    exact = page(limit=3)
    assert (len(exact["data"]), exact["hasMore"]) == (3, False)
    past = page(limit=2, offset=3)
    assert (past["data"], past["hasMore"]) == ([], False)
    # And bad pagination is a 400
    assert_reference_error(local_stack.request("GET", "/v1/sessions", user=user, params={"limit": 101}), 400)
    assert_reference_error(local_stack.request("GET", "/v1/sessions", user=user, params={"offset": -1}), 400)


def test_rate_limit_headers_count_down_then_429(local_stack: StackProcess) -> None:
    # Given a user of their own (the bucket is per user)
    user = f"burst-{uuid.uuid4().hex[:6]}"
    first = local_stack.request("GET", "/v1/sessions", user=user)
    limit = int(first.headers["RateLimit-Limit"])
    assert first.headers["RateLimit-Policy"].startswith(f"{limit};w=")
    remaining = int(first.headers["RateLimit-Remaining"])
    assert remaining == limit - 1
    # When the whole bucket is spent (bounded: at most limit + 5 requests)
    statuses = [local_stack.request("GET", "/v1/sessions", user=user).status_code for _ in range(remaining + 5)]
    # Then the answers turn to 429 with the reference body and a Retry-After
    assert 429 in statuses
    limited = local_stack.request("GET", "/v1/sessions", user=user)
    body = assert_reference_error(limited, 429)
    assert body["message"]
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["RateLimit-Remaining"] == "0"
    # And another user is not affected
    assert local_stack.request("GET", "/v1/sessions", user="alice").status_code == 200


def test_concurrent_requests_never_mix_users_and_each_function_has_its_own_processes(
    local_stack: StackProcess,
) -> None:
    # Given four users with a session each
    users = [f"concurrent-{n}" for n in range(4)]
    sids = {user: _create(local_stack, user, "concurrent")["_id"] for user in users}
    try:
        # When they read their sessions at the same time, through the gateway (concurrent invocations)
        def reads(user: str) -> list[str]:
            seen = []
            for _ in range(6):
                response = local_stack.request("GET", f"/v1/sessions/{sids[user]}", user=user)
                seen.append(f"{response.status_code}:{response.json().get('user')}")
            return seen

        with ThreadPoolExecutor(max_workers=len(users)) as pool:
            answers = dict(zip(users, pool.map(reads, users), strict=True))
        # Then every answer is the caller's own session
        assert answers == {user: [f"200:{user}"] * 6 for user in users}
        # And the functions ran in worker processes of their own: none shared by two functions, none the stack's
        functions = json.loads(local_stack.state_file.read_text(encoding="utf-8"))["components"]["functions"]
        assert {"ApiFunction", "AuthorizerFunction", "WebSocketFunction", "PublisherFunction",
                "SweeperFunction", "WebSocketSweeperFunction"} <= set(functions)
        workers = [pid for described in functions.values() for pid in described["workers"]]
        assert workers and len(workers) == len(set(workers))
        assert local_stack.state["pid"] not in workers
    finally:
        for user, sid in sids.items():
            _stop(local_stack, user, sid)
