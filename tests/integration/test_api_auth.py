# ruff: noqa: F811 - pytest fixtures imported from api_support are redefined as parameters
"""Tokens and the Lambda authorizer against the moto server, with the real events/authorizer_request.json."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from api_support import EVENTS, api_env  # noqa: F401 - fixture
from emotion_shared import auth

from emotionctl.local.lambda_runtime import local_context


@pytest.fixture
def control(dynamodb: Any, api_env: dict[str, str]) -> str:
    return api_env["CONTROL_TABLE"]  # api_env injected the authorizer's store for these tables


def authorizer_event(token: str | None) -> dict[str, Any]:
    event = json.loads((EVENTS / "authorizer_request.json").read_text())
    event = copy.deepcopy(event)
    for key in ("headers", "multiValueHeaders"):
        event[key] = {k: v for k, v in event[key].items() if k.lower() != "authorization"}
    if token is not None:
        event["headers"]["Authorization"] = f"Bearer {token}"
        event["multiValueHeaders"]["Authorization"] = [f"Bearer {token}"]
    return event


def test_tokens_are_opaque_and_stored_only_as_hashes(dynamodb: Any, control: str) -> None:
    token = auth.create_token(dynamodb, control, "alice", "pro", name="laptop")
    assert re.fullmatch(r"emo_[A-Za-z0-9_-]{43}", token)
    assert auth.create_token(dynamodb, control, "alice") != token
    items = dynamodb.scan(TableName=control)["Items"]
    assert all(token not in json.dumps(item) for item in items)
    stored = dynamodb.get_item(TableName=control, Key={"pk": {"S": "token#" + auth.hash_token(token)}})["Item"]
    assert stored["user"]["S"] == "alice" and stored["product"]["S"] == "pro"
    assert stored["name"]["S"] == "laptop" and stored["scope"]["S"] == "user"
    assert stored["tokenId"]["S"] == auth.hash_token(token)[:16]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stored["createdAt"]["S"])


def test_lookup_authorize_and_revoke(dynamodb: Any, control: str) -> None:
    token = auth.create_token(dynamodb, control, "alice")
    token_id = auth.hash_token(token)[:16]
    assert auth.lookup(token) == auth.Principal("alice", "standard", token_id=token_id)
    assert auth.lookup("emo_unknown") is None
    assert auth.lookup("") is None
    context = {"user": "alice", "product": "standard", "scope": "user", "tokenId": token_id}
    assert auth.authorize({"Authorization": f"Bearer {token}"}) == context
    assert auth.authorize({"authorization": f"bearer {token}"}) == context
    assert auth.authorize({"Authorization": f"Basic {token}"}) is None
    assert auth.authorize({}) is None
    store = auth.TokenStore(dynamodb, control)  # no cache: revocation is immediate
    assert store.revoke(token) is True
    assert store.lookup(token) is None
    assert store.revoke(token) is False
    # Revoked tokens stay listable (with their status) until their TTL.
    (info,) = [i for i in store.list_for_user("alice") if i.token_id == token_id]
    assert info.revoked and info.status(auth.now_ms()) == "revoked"


def test_an_expired_token_is_refused(dynamodb: Any, control: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = auth.now_ms()
    store = auth.TokenStore(dynamodb, control, cache_seconds=3600)  # even a long cache never outlives expiry
    token = store.create("alice", expires_ms=now + 60_000)
    assert store.lookup(token) is not None  # now cached
    monkeypatch.setattr(auth, "now_ms", lambda: now + 60_000)
    assert store.lookup(token) is None
    assert auth.TokenStore(dynamodb, control).lookup(token) is None
    with pytest.raises(ValueError, match="future"):
        store.create("alice", expires_ms=now - 1)


def test_the_in_process_cache_lasts_at_most_its_ttl(dynamodb: Any, control: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    cached = auth.TokenStore(dynamodb, control, cache_seconds=5)
    token = cached.create("alice")
    assert cached.lookup(token) is not None
    assert auth.TokenStore(dynamodb, control).revoke(token)  # revoked elsewhere (another process)
    clock[0] += 4.9
    assert cached.lookup(token) is not None  # still inside the cache TTL
    clock[0] += 0.2
    assert cached.lookup(token) is None  # past it: refused


def test_last_use_is_recorded_at_most_once_a_minute(dynamodb: Any, control: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    now = auth.now_ms()
    store = auth.TokenStore(dynamodb, control)
    token = store.create("carol")
    (info,) = store.list_for_user("carol")
    assert info.last_used_at is None
    calls: list[dict[str, Any]] = []
    real_update = dynamodb.update_item

    def counting_update(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_update(**kwargs)

    monkeypatch.setattr(dynamodb, "update_item", counting_update)
    monkeypatch.setattr(auth, "now_ms", lambda: now)
    store.lookup(token)
    store.lookup(token)
    monkeypatch.setattr(auth, "now_ms", lambda: now + 59_000)
    store.lookup(token)
    assert len(calls) == 1  # one write for three uses within a minute
    (info,) = store.list_for_user("carol")
    assert info.last_used_at == auth.iso_ms(now)
    monkeypatch.setattr(auth, "now_ms", lambda: now + 61_000)
    store.lookup(token)
    (info,) = store.list_for_user("carol")
    assert info.last_used_at == auth.iso_ms(now + 61_000) and len(calls) == 2


def test_tokens_are_listed_per_user_and_resolved_by_id_prefix(dynamodb: Any, control: str) -> None:
    store = auth.TokenStore(dynamodb, control)
    first = store.mint("dave", name="ci", expires_ms=auth.now_ms() + 86_400_000)
    second = store.mint("dave")
    store.mint("erin")
    listed = store.list_for_user("dave")
    assert [i.token_id for i in listed] == [first.info.token_id, second.info.token_id]
    assert listed[0].name == "ci" and listed[0].expires_at and listed[1].expires_at is None
    assert all(first.token not in repr(i) and second.token not in repr(i) for i in listed)
    assert store.resolve(first.info.token_id) == auth.hash_token(first.token)
    assert store.resolve(first.info.token_id[:8], "dave") == auth.hash_token(first.token)
    assert store.resolve(first.token) == auth.hash_token(first.token)
    with pytest.raises(auth.TokenNotFound):
        store.resolve("0123456789abcdef")
    with pytest.raises(auth.TokenNotFound):
        store.resolve("xyz")
    with pytest.raises(auth.TokenNotFound):
        store.resolve(first.info.token_id, "erin")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43_200), ("30d", 2_592_000), ("2w", 1_209_600), ("never", None)],
)
def test_expiry_durations(text: str, seconds: int | None) -> None:
    now = 1_700_000_000_000
    expected = None if seconds is None else now + seconds * 1000
    assert auth.parse_expiry(text, now) == expected


def test_expiry_dates_and_bad_values() -> None:
    now = 1_700_000_000_000  # 2023-11-14
    assert auth.parse_expiry("2027-01-01", now) == 1_798_761_600_000
    assert auth.parse_expiry("2027-01-01T10:00:00Z", now) == 1_798_797_600_000
    for bad in ("2020-01-01", "soon", "0d", "-1d", "10y"):
        with pytest.raises(ValueError):
            auth.parse_expiry(bad, now)


def test_invalid_user_names_are_refused(dynamodb: Any, control: str) -> None:
    with pytest.raises(ValueError, match="user must be"):
        auth.create_token(dynamodb, control, "bad user")


def test_authorizer_allows_the_whole_api_with_the_user_context(dynamodb: Any, control: str) -> None:
    from functions_authorizer import handler

    token = auth.create_token(dynamodb, control, "alice", "pro")
    result = handler(authorizer_event(token), local_context("test-AuthorizerFunction"))
    assert result == {
        "principalId": "alice",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": ["arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*/*"],
                }
            ],
        },
        "context": {"user": "alice", "product": "pro", "scope": "user", "tokenId": auth.hash_token(token)[:16]},
    }


def test_authorizer_refuses_revoked_and_expired_tokens(dynamodb: Any, control: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from functions_authorizer import handler

    revoked = auth.create_token(dynamodb, control, "alice")
    expiring = auth.create_token(dynamodb, control, "alice", expires_ms=auth.now_ms() + 60_000)
    for token in (revoked, expiring):
        handler(authorizer_event(token), local_context("test-AuthorizerFunction"))
    auth.TokenStore(dynamodb, control).revoke(revoked)
    later = auth.now_ms() + 61_000
    monkeypatch.setattr(auth, "now_ms", lambda: later)
    for token in (revoked, expiring):
        with pytest.raises(Exception, match=r"^Unauthorized$"):
            handler(authorizer_event(token), local_context("test-AuthorizerFunction"))


@pytest.mark.parametrize("token", [None, "emo_not-a-real-token", ""])
def test_authorizer_rejects_missing_and_unknown_tokens(dynamodb: Any, control: str, token: str | None) -> None:
    from functions_authorizer import handler

    with pytest.raises(Exception, match=r"^Unauthorized$"):
        handler(authorizer_event(token), local_context("test-AuthorizerFunction"))


@pytest.fixture(autouse=True)
def _authorizer_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """functions/authorizer/app.py loaded by path, as Lambda (and the local gateway) load it."""
    import importlib.util
    import sys

    path = EVENTS.parent / "functions" / "authorizer" / "app.py"
    spec = importlib.util.spec_from_file_location("functions_authorizer", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "functions_authorizer", module)
