"""Helpers for the REST API tests: call the real Lambda handler with real API Gateway events (from events/)
against the moto server, and check answers against docs/openapi.yaml."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from openapi_schema_validator import OAS31Validator

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
OPENAPI = REPO / "docs" / "openapi.yaml"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / "api" / f"{name}.json").read_text())


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: Any
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


def response_headers(raw: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, values in (raw.get("multiValueHeaders") or {}).items():
        headers[key] = ",".join(str(v) for v in values)
    for key, value in (raw.get("headers") or {}).items():
        headers[key] = str(value)
    return headers


_ROUTE_TEMPLATES = [
    (re.compile(r"^/v1/sessions/[^/]+/viewer-tokens/[^/]+$"), "/v1/sessions/{id}/viewer-tokens/{tokenId}"),
    (re.compile(r"^/v1/sessions/[^/]+/viewer-tokens$"), "/v1/sessions/{id}/viewer-tokens"),
    (
        re.compile(r"^/v1/sessions/[^/]+/audio/transcription-sentiment$"),
        "/v1/sessions/{id}/audio/transcription-sentiment",
    ),
    (re.compile(r"^/v1/sessions/[^/]+/audio/transcript$"), "/v1/sessions/{id}/audio/transcript"),
    (re.compile(r"^/v1/sessions/[^/]+/emotions/timeline$"), "/v1/sessions/{id}/emotions/timeline"),
    (re.compile(r"^/v1/sessions/[^/]+/emotions$"), "/v1/sessions/{id}/emotions"),
    (re.compile(r"^/v1/sessions/[^/]+/stop$"), "/v1/sessions/{id}/stop"),
    (re.compile(r"^/v1/sessions/[^/]+$"), "/v1/sessions/{id}"),
    (re.compile(r"^/v1/sessions$"), "/v1/sessions"),
]


def resource_of(path: str) -> str:
    path = path.rstrip("/") or "/"
    for pattern, resource in _ROUTE_TEMPLATES:
        if pattern.match(path):
            return resource
    return "/{proxy+}"


def make_event(
    method: str,
    path: str,
    *,
    user: str | None = "alice",
    product: str = "standard",
    authorizer: dict[str, str] | None = None,
    body: Any = None,
    raw_body: str | None = None,
    query: dict[str, str] | None = None,
    multi_query: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A REST proxy event built from the real one in events/api/get_session.json."""
    event = copy.deepcopy(load_event("get_session"))
    resource = resource_of(path)
    event["resource"] = resource
    event["path"] = path
    event["httpMethod"] = method
    event["requestContext"]["httpMethod"] = method
    event["requestContext"]["resourcePath"] = resource
    event["requestContext"]["path"] = "/prod" + path
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    match = re.match(r"^/v1/sessions/([^/]+)(?:/viewer-tokens/([^/]+))?", path)
    event["pathParameters"] = (
        ({"id": match.group(1)} | ({"tokenId": match.group(2)} if match.group(2) else {})) if match else None
    )
    hdrs = dict(event["headers"])
    if body is not None or raw_body is not None:
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    event["headers"] = hdrs
    event["multiValueHeaders"] = {k: [v] for k, v in hdrs.items()}
    if multi_query is not None:
        event["multiValueQueryStringParameters"] = multi_query
        event["queryStringParameters"] = {k: v[-1] for k, v in multi_query.items()}
    else:
        event["queryStringParameters"] = query or None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["body"] = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    if authorizer is not None:  # a context as the authorizer returns it (e.g. a viewer token's)
        event["requestContext"]["authorizer"] = {**authorizer, "principalId": authorizer["user"],
                                                 "integrationLatency": 3}
    elif user is None:
        event["requestContext"].pop("authorizer", None)
    else:
        event["requestContext"]["authorizer"] = {
            "user": user,
            "product": product,
            "principalId": user,
            "integrationLatency": 3,
        }
    return event


def invoke(event: dict[str, Any]) -> Resp:
    from emotion_shared.rest import handler

    from emotionctl.local.lambda_runtime import local_context

    raw = handler(event, local_context("test-ApiFunction", timeout_seconds=29))
    text = raw.get("body")
    body = json.loads(text) if text else None
    return Resp(status=int(raw["statusCode"]), headers=response_headers(raw), body=body, raw=raw)


class Api:
    """Calls the handler as API Gateway would, and checks every answer against the OpenAPI document."""

    def __init__(self, check_openapi: bool = True) -> None:
        self.check_openapi = check_openapi
        self.seen: set[tuple[str, str, int]] = set()

    def call(self, method: str, path: str, **kwargs: Any) -> Resp:
        resp = invoke(make_event(method, path, **kwargs))
        assert resp.status < 500 or resp.status == 503, f"{method} {path} → {resp.status} {resp.body}"
        if self.check_openapi:
            check_against_openapi(method, path, resp)
            self.seen.add((resource_of(path), method.lower(), resp.status))
        return resp

    def create(self, name: str = "demo", uri: str = "rtmp://127.0.0.1/live/key", **kwargs: Any) -> Resp:
        return self.call("POST", "/v1/sessions", body={"name": name, "streamUri": uri}, **kwargs)


# ---------------------------------------------------------------------- OpenAPI checks
@cache
def openapi_doc() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    doc = openapi_doc()
    while "$ref" in node:
        parts = node["$ref"].lstrip("#/").split("/")
        target: Any = doc
        for part in parts:
            target = target[part]
        node = target
    return node


def check_against_openapi(method: str, path: str, resp: Resp) -> None:
    """The answer's status is documented for the route, its body matches the schema, its headers exist."""
    doc = openapi_doc()
    resource = resource_of(path)
    if resource not in doc["paths"] or method.lower() not in doc["paths"][resource]:
        # Unknown route or method: the generic error shape still applies.
        problem = (resp.header("Content-Type") or "").startswith("application/problem+json")
        schema = doc["components"]["schemas"]["Problem" if problem else "Error"]
        validate_schema(schema, resp.body)
        return
    operation = doc["paths"][resource][method.lower()]
    responses = operation["responses"]
    spec = responses.get(str(resp.status))
    assert spec is not None, f"{method} {resource} answered {resp.status}, not documented in openapi.yaml"
    spec = _resolve(spec)
    content = spec.get("content")
    if content:
        media_type = (resp.header("Content-Type") or "application/json").split(";")[0].strip()
        assert media_type in content, f"{method} {resource} {resp.status} answered {media_type}, not documented"
        schema = content[media_type]["schema"]
        validate_schema(schema, resp.body)
    else:
        assert resp.body is None, f"{method} {resource} {resp.status} should have no body"
    for name, header in (spec.get("headers") or {}).items():
        header = _resolve(header)
        if header.get("required"):
            assert resp.header(name) is not None, f"{method} {resource} {resp.status} lacks header {name}"


def validate_schema(schema: dict[str, Any], instance: Any) -> None:
    # The document's components ride along in the root, so "#/components/..." references resolve.
    wrapper = {"allOf": [schema], "components": openapi_doc()["components"]}
    OAS31Validator(wrapper).validate(instance)


# ---------------------------------------------------------------------- fixtures
PASS_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


_api_runtimes: contextlib.ExitStack | None = None


def rebuild_api_runtime() -> None:
    """A cold start of the REST function for this test: its collaborators built from the current environment
    and injected (``deps.runtime.override``) until the test ends."""
    from emotion_shared import auth
    from emotion_shared.config import Settings
    from emotion_shared.rest import deps

    assert _api_runtimes is not None, "rebuild_api_runtime() needs the api_env fixture"
    _api_runtimes.enter_context(deps.runtime.override(deps.build(Settings.from_env())))
    _api_runtimes.enter_context(auth.authorizer_runtime.override(auth.build_authorizer_store(Settings.from_env())))


@pytest.fixture
def api_env(tables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Tables of this test + API settings; the handler's collaborators are built for it (and only for it)."""
    global _api_runtimes

    env = {
        "ALLOW_PRIVATE_STREAM_HOSTS": "true",
        "RATE_LIMIT_CAPACITY": "1000",
        "RATE_LIMIT_WINDOW_SECONDS": "60",
        "MAX_ACTIVE_SESSIONS": "10",
        "MAX_ACTIVE_SESSIONS_PER_USER": "5",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "EmotionStream",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("STATE_MACHINE_ARN", raising=False)
    with contextlib.ExitStack() as runtimes:
        _api_runtimes = runtimes
        rebuild_api_runtime()
        yield {**tables, **env}
    _api_runtimes = None


@pytest.fixture
def api(api_env: dict[str, str]) -> Api:
    return Api()


@pytest.fixture
def state_machine(moto_server: Any, api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A throwaway state machine in moto; the API starts one execution per session on it."""
    sfn = boto3.session.Session().client("stepfunctions", endpoint_url=moto_server.endpoint)
    arn = sfn.create_state_machine(
        name=f"sm-{uuid.uuid4().hex[:8]}",
        definition=PASS_MACHINE,
        roleArn="arn:aws:iam::123456789012:role/session-machine",
    )["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    rebuild_api_runtime()
    return str(arn)


def executions(moto_server: Any, arn: str) -> list[dict[str, Any]]:
    sfn = boto3.session.Session().client("stepfunctions", endpoint_url=moto_server.endpoint)
    return list(sfn.list_executions(stateMachineArn=arn)["executions"])


@pytest.fixture
def atomic_moto_dynamodb(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2.5 defect: its DynamoDB backend is not thread-safe. ``TransactWriteItems`` checks conditions
    and writes without a lock (and restores a deep copy of the whole table when cancelled, which can undo a
    concurrent write), so concurrent transactions that DynamoDB serializes can all succeed in moto. Requests
    are serialized here, as DynamoDB's isolation guarantees. (Belongs in emotionctl/local/moto_patches.py
    for the local stack; applied here for the tests that race on purpose.)"""
    import threading

    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(DynamoHandler, "call_action", call_action)
