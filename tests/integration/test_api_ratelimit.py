# ruff: noqa: F811 - pytest fixtures imported from api_support are redefined as parameters
"""The per-user token bucket: headers, 429, isolation between users, and concurrent consumers."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest
from api_support import Api, api_env, atomic_moto_dynamodb, rebuild_api_runtime  # noqa: F401 - fixtures
from emotion_shared.ratelimit import TokenBucketLimiter


@pytest.fixture
def limited(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Api:
    """Three requests per hour: one token back every 1200 s."""
    monkeypatch.setenv("RATE_LIMIT_CAPACITY", "3")
    monkeypatch.setenv("RATE_LIMIT_WINDOW_SECONDS", "3600")
    rebuild_api_runtime()
    return Api()


def test_bucket_empties_then_429_with_retry_after(limited: Api) -> None:
    answers = [limited.call("GET", "/v1/sessions") for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    assert [a.header("RateLimit-Remaining") for a in answers] == ["2", "1", "0"]
    assert {a.header("RateLimit-Limit") for a in answers} == {"3"}
    assert {a.header("RateLimit-Policy") for a in answers} == {"3;w=3600"}
    # one token missing → 1200 s until full; the bucket is refilling meanwhile, so allow a little slack
    assert 1190 <= int(answers[0].header("RateLimit-Reset") or 0) <= 1200
    denied = limited.call("GET", "/v1/sessions")
    assert denied.status == 429
    assert denied.body["error"] is True and "rate limit of 3 requests per 3600 s exceeded" in denied.body["message"]
    assert 1190 <= int(denied.header("Retry-After") or 0) <= 1200
    assert denied.header("RateLimit-Remaining") == "0"
    assert 3590 <= int(denied.header("RateLimit-Reset") or 0) <= 3600
    # every route is limited, invalid requests too; another user has their own bucket
    assert limited.call("POST", "/v1/sessions", raw_body="{").status == 429
    assert limited.create(user="bob").status == 201
    assert limited.call("GET", "/v1/sessions", user="bob").header("RateLimit-Remaining") == "1"


def test_a_denied_request_does_not_spend_tokens(limited: Api, moto_server: Any, api_env: dict[str, str]) -> None:
    for _ in range(3):
        limited.call("GET", "/v1/sessions")
    client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
    key = {"pk": {"S": "ratelimit#alice"}}
    before = client.get_item(TableName=api_env["CONTROL_TABLE"], Key=key)["Item"]
    for _ in range(3):
        assert limited.call("GET", "/v1/sessions").status == 429
    after = client.get_item(TableName=api_env["CONTROL_TABLE"], Key=key)["Item"]
    assert after == before
    assert int(after["ttl"]["N"]) > time.time() + 3600  # the item expires once it would be full again
    assert float(after["tokens"]["N"]) < 1


def test_concurrent_consumers_share_one_bucket_exactly(
    moto_server: Any, api_env: dict[str, str], atomic_moto_dynamodb: None
) -> None:
    """Twelve threads, each with its own client and limiter (as separate Lambda instances), race for five
    tokens: the optimistic writes let exactly five through."""
    barrier = threading.Barrier(12)
    results: list[bool] = []
    lock = threading.Lock()

    def consume() -> None:
        client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
        limiter = TokenBucketLimiter(client, api_env["CONTROL_TABLE"], capacity=5, window_seconds=3600, attempts=40)
        barrier.wait()
        decision = limiter.consume("racer")
        with lock:
            results.append(decision.allowed)

    threads = [threading.Thread(target=consume) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 12
    assert results.count(True) == 5


def test_a_stale_process_cache_is_corrected_by_the_conditional_write(
    moto_server: Any, api_env: dict[str, str]
) -> None:
    """Two limiters (two processes) alternate: each one's cached state goes stale and is refreshed from the
    failed condition's returned item, so the pair never hands out more than the capacity."""
    make = lambda: TokenBucketLimiter(  # noqa: E731
        boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint),
        api_env["CONTROL_TABLE"],
        capacity=4,
        window_seconds=3600,
    )
    first, second = make(), make()
    allowed = [(first if i % 2 == 0 else second).consume("pair").allowed for i in range(8)]
    assert allowed == [True] * 4 + [False] * 4
