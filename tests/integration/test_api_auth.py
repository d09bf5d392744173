# ruff: noqa: F811 - pytest fixtures imported from api_support are redefined as parameters
"""Tokens and the Lambda authorizer against the moto server, with the real events/authorizer_request.json."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from api_support import EVENTS, api_env  # noqa: F401 - fixture
from emotion_shared import auth
from emotion_shared.rest.local import LocalLambdaContext


@pytest.fixture
def control(dynamodb: Any, api_env: dict[str, str]) -> Iterator[str]:
    auth.reset_default_store()
    yield api_env["CONTROL_TABLE"]
    auth.reset_default_store()


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
    token = auth.create_token(dynamodb, control, "alice", "pro")
    assert re.fullmatch(r"emo_[A-Za-z0-9_-]{43}", token)
    assert auth.create_token(dynamodb, control, "alice") != token
    items = dynamodb.scan(TableName=control)["Items"]
    assert all(token not in json.dumps(item) for item in items)
    stored = dynamodb.get_item(TableName=control, Key={"pk": {"S": "token#" + auth.hash_token(token)}})["Item"]
    assert stored["user"]["S"] == "alice" and stored["product"]["S"] == "pro"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stored["createdAt"]["S"])


def test_lookup_authorize_and_revoke(dynamodb: Any, control: str) -> None:
    token = auth.create_token(dynamodb, control, "alice")
    assert auth.lookup(token) == auth.Principal("alice", "standard")
    assert auth.lookup("emo_unknown") is None
    assert auth.lookup("") is None
    assert auth.authorize({"Authorization": f"Bearer {token}"}) == {"user": "alice", "product": "standard"}
    assert auth.authorize({"authorization": f"bearer {token}"}) == {"user": "alice", "product": "standard"}
    assert auth.authorize({"Authorization": f"Basic {token}"}) is None
    assert auth.authorize({}) is None
    store = auth.TokenStore(dynamodb, control)  # no cache: revocation is immediate
    assert store.revoke(token) is True
    assert store.lookup(token) is None
    assert store.revoke(token) is False


def test_invalid_user_names_are_refused(dynamodb: Any, control: str) -> None:
    with pytest.raises(ValueError, match="user must be"):
        auth.create_token(dynamodb, control, "bad user")


def test_authorizer_allows_the_whole_api_with_the_user_context(dynamodb: Any, control: str) -> None:
    from functions_authorizer import handler

    token = auth.create_token(dynamodb, control, "alice", "pro")
    result = handler(authorizer_event(token), LocalLambdaContext(function_name="authorizer"))
    assert result == {
        "principalId": "alice",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*",
                }
            ],
        },
        "context": {"user": "alice", "product": "pro"},
    }


@pytest.mark.parametrize("token", [None, "emo_not-a-real-token", ""])
def test_authorizer_rejects_missing_and_unknown_tokens(dynamodb: Any, control: str, token: str | None) -> None:
    from functions_authorizer import handler

    with pytest.raises(Exception, match=r"^Unauthorized$"):
        handler(authorizer_event(token), LocalLambdaContext(function_name="authorizer"))


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
