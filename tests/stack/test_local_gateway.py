"""The local gateway, in process, in front of tiny handler fixtures: the events it builds, the authorizer and its
cache, the gateway responses, the proxy-result mapping, and the functions' worker processes. Routes, authorizer
and gateway responses are the real ones of template.yaml (only the functions' code is swapped for fixtures)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from emotionctl.local.components import HttpServer, LambdaFunctions
from emotionctl.local.gateway.rest import RestGateway
from emotionctl.local.stack import Component, LocalStack, StackConfig, local_capacity
from emotionctl.local.state import read_state, state_path
from emotionctl.local.template import TEMPLATE_PATH, load_template
from emotionctl.local.up import Started, serve

API_HANDLER = '''
import base64, json, os

STATE = {"invocations": 0}  # module state of this execution environment

def handler(event, context):
    STATE["invocations"] += 1
    sid = (event.get("pathParameters") or {}).get("id")
    if sid == "boom":
        raise RuntimeError("handler failure")
    if sid == "malformed":
        return {"statusCode": "two hundred"}
    if sid == "binary":
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if sid == "empty":
        return {"statusCode": 204, "headers": {"X-Empty": "yes"}}
    env = {k: os.environ.get(k) for k in ("SESSIONS_TABLE", "CONTROL_TABLE", "ALLOW_PRIVATE_STREAM_HOSTS",
                                         "MAX_ACTIVE_SESSIONS", "POWERTOOLS_METRICS_DISABLED")}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Function": context.function_name},
        "multiValueHeaders": {"X-Multi": ["one", "two"]},
        "body": json.dumps({"event": event, "env": env, "pid": os.getpid(), "invocations": STATE["invocations"],
                            "remainingMs": context.get_remaining_time_in_millis()}),
    }
'''

AUTHORIZER = '''
import json, os, pathlib

CALLS = pathlib.Path(__file__).with_name("calls.jsonl")  # read by the test (another process)

def _policy(effect, resource, context=None):
    out = {"principalId": "alice", "policyDocument": {"Version": "2012-10-17", "Statement": [
        {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]}}
    if context is not None:
        out["context"] = context
    return out

def handler(event, context):
    with CALLS.open("a", encoding="utf-8") as calls:
        calls.write(json.dumps(event) + "\\n")
    token = event["headers"].get("Authorization") or event["headers"].get("authorization")
    arn = event["methodArn"]
    api_wide = "/".join(arn.split("/")[:2]) + "/*"
    if token == "Bearer good":
        return _policy("Allow", api_wide, {"user": "alice", "number": 1, "flag": True, "pid": os.getpid()})
    if token == "Bearer narrow":
        return _policy("Allow", arn, {"user": "alice"})
    if token == "Bearer deny":
        return _policy("Deny", api_wide)
    if token == "Bearer boom":
        raise ValueError("authorizer bug")
    if token == "Bearer nested-context":
        return _policy("Allow", api_wide, {"user": {"nested": True}})
    raise Exception("Unauthorized")
'''


@dataclass
class Gateway:
    url: str
    stack: LocalStack
    state: dict[str, Any]
    code_root: Path

    def authorizer_calls(self) -> list[dict[str, Any]]:
        calls = self.code_root / "AuthorizerFunction" / "calls.jsonl"
        if not calls.exists():
            return []
        return [json.loads(line) for line in calls.read_text(encoding="utf-8").splitlines()]

    def request(self, method: str, path: str, token: str | None = "good", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kwargs)


class FakeResources:
    """Registers a name and ARN for every template resource, without an AWS side (the fixtures call none)."""

    name = "fake-resources"

    async def start(self, stack: LocalStack) -> None:
        for logical in stack.template["Resources"]:
            stack.refs[logical] = f"fixture-{logical}"
            for attribute in ("Arn", "StreamArn", "Name"):
                stack.attributes[(logical, attribute)] = f"arn:aws:fixture:::{logical}/{attribute}"

    async def stop(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {}


def _fixture_template(tmp: Path) -> Path:
    """template.yaml with the two functions' CodeUri pointing at the fixtures."""
    template = load_template(TEMPLATE_PATH)
    template = json.loads(json.dumps(template))
    for logical, code in (("ApiFunction", API_HANDLER), ("AuthorizerFunction", AUTHORIZER)):
        code_dir = tmp / logical
        code_dir.mkdir()
        (code_dir / "app.py").write_text(textwrap.dedent(code), encoding="utf-8")
        template["Resources"][logical]["Properties"]["CodeUri"] = logical
    path = tmp / "template.yaml"
    path.write_text(yaml.safe_dump(template), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gateway")
    openapi = tmp / "openapi.yaml"
    openapi.write_text("openapi: 3.1.0\ninfo: {title: fixture, version: '1'}\npaths: {}\n", encoding="utf-8")
    config = StackConfig(port=0, state_dir=tmp / "state", template_path=_fixture_template(tmp))
    components: list[Component] = [
        FakeResources(), LambdaFunctions(only={"ApiFunction", "AuthorizerFunction"}),
        RestGateway(openapi_path=openapi), HttpServer(),
    ]
    saved_env = dict(os.environ)
    ready = threading.Event()
    started: list[Started] = []
    loop = asyncio.new_event_loop()

    def on_ready(s: Started) -> None:
        started.append(s)
        ready.set()

    def run() -> None:
        loop.run_until_complete(serve(config, components, on_ready, handle_signals=False))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        while not ready.wait(0.1):
            assert thread.is_alive(), "the gateway failed to start (see the captured log)"
        yield Gateway(url=started[0].stack.url, stack=started[0].stack, state=started[0].state, code_root=tmp)
    finally:
        if started:
            loop.call_soon_threadsafe(started[0].stack.stopping.set)
        thread.join(15)
        os.environ.clear()
        os.environ.update(saved_env)
    assert not thread.is_alive()
    assert not state_path(config.state_dir).exists(), "the state file is removed on stop"


def _reference_error(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] is True
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    return body


# ------------------------------------------------------------------ authorizer
def test_missing_token_is_401_without_calling_the_authorizer(gateway: Gateway) -> None:
    calls = len(gateway.authorizer_calls())
    response = gateway.request("GET", "/v1/sessions", token=None)
    body = _reference_error(response, 401)
    assert "Bearer" in body["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert len(gateway.authorizer_calls()) == calls


def test_unknown_token_is_401(gateway: Gateway) -> None:
    _reference_error(gateway.request("GET", "/v1/sessions", token="unknown"), 401)


def test_denied_token_is_401_not_403(gateway: Gateway) -> None:
    _reference_error(gateway.request("GET", "/v1/sessions", token="deny"), 401)


def test_failing_authorizer_is_500_in_the_reference_body(gateway: Gateway) -> None:
    _reference_error(gateway.request("GET", "/v1/sessions", token="boom"), 500)
    _reference_error(gateway.request("GET", "/v1/sessions", token="nested-context"), 500)


def test_authorizer_gets_a_request_event(gateway: Gateway) -> None:
    gateway.request("GET", "/v1/sessions/s1/emotions/timeline?granularity=5", token="fresh-unknown")
    event = gateway.authorizer_calls()[-1]
    assert event["type"] == "REQUEST"
    assert event["resource"] == "/v1/sessions/{id}/emotions/timeline"
    assert event["pathParameters"] == {"id": "s1"}
    assert event["queryStringParameters"] == {"granularity": "5"}
    assert event["methodArn"].endswith("/dev/GET/v1/sessions/s1/emotions/timeline")
    assert event["methodArn"].startswith("arn:aws:execute-api:")


def test_decisions_are_cached_per_token(gateway: Gateway) -> None:
    gateway.stack.component("gateway").cache.clear()  # type: ignore[attr-defined]
    before = len(gateway.authorizer_calls())
    for path in ("/v1/sessions", "/v1/sessions/a", "/v1/sessions/b/emotions"):
        assert gateway.request("GET", path, token="good").status_code == 200
    assert len(gateway.authorizer_calls()) == before + 1


def test_cached_policy_is_evaluated_against_each_route(gateway: Gateway) -> None:
    # Given an authorizer that allows only the method ARN it was asked about (a classic caching bug)
    assert gateway.request("GET", "/v1/sessions", token="narrow").status_code == 200
    # Then another route with the same token is denied from the cache, as in API Gateway
    _reference_error(gateway.request("GET", "/v1/sessions/x", token="narrow"), 401)


# ------------------------------------------------------------------ routing and gateway responses
def test_unknown_route_is_404_in_the_reference_body(gateway: Gateway) -> None:
    _reference_error(gateway.request("GET", "/v2/nothing"), 404)
    _reference_error(gateway.request("GET", "/v1/sessions/a/b/c/d"), 404)


def test_an_undeclared_method_on_a_known_path_reaches_the_function_through_any(gateway: Gateway) -> None:
    """template.yaml gives each path a catch-all ANY (the function answers 405): a declared method still takes
    precedence, as in API Gateway, and the authorizer runs first."""
    for method in ("PUT", "TRACE", "OPTIONS"):
        response = gateway.request(method, "/v1/sessions/abc")
        assert response.status_code == 200, (method, response.text)  # the fixture function echoes its event
        event = response.json()["event"]
        assert (event["httpMethod"], event["resource"]) == (method, "/v1/sessions/{id}")
        assert event["pathParameters"] == {"id": "abc"}
    assert gateway.request("POST", "/v1/sessions/abc/stop").json()["event"]["httpMethod"] == "POST"
    _reference_error(gateway.request("TRACE", "/v1/sessions", token=None), 401)


def test_function_error_is_502_in_the_reference_body(gateway: Gateway) -> None:
    _reference_error(gateway.request("GET", "/v1/sessions/boom"), 502)
    _reference_error(gateway.request("GET", "/v1/sessions/malformed"), 502)


# ------------------------------------------------------------------ the proxy event
def test_proxy_event_is_a_rest_v1_event(gateway: Gateway) -> None:
    response = gateway.request(
        "POST",
        "/v1/sessions/abc123/stop?x=1&x=2&y=%C3%A9",
        headers={"X-Repeat": "a", "Content-Type": "application/json"},
        data=json.dumps({"hello": "world"}),
    )
    assert response.status_code == 200
    event = response.json()["event"]
    assert event["resource"] == "/v1/sessions/{id}/stop"
    assert event["path"] == "/v1/sessions/abc123/stop"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"id": "abc123"}
    assert event["queryStringParameters"] == {"x": "2", "y": "é"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": ["é"]}
    assert event["headers"]["Authorization"] == "Bearer good"
    assert event["multiValueHeaders"]["X-Repeat"] == ["a"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert json.loads(event["body"]) == {"hello": "world"}
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "dev"
    assert context["resourcePath"] == "/v1/sessions/{id}/stop"
    assert context["path"] == "/dev/v1/sessions/abc123/stop"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] == response.headers["x-amzn-RequestId"]
    authorizer = context["authorizer"]
    assert authorizer["principalId"] == "alice"
    assert authorizer["user"] == "alice"
    assert (authorizer["number"], authorizer["flag"]) == ("1", "true")  # REST APIs pass context as strings


def test_request_without_query_or_body(gateway: Gateway) -> None:
    event = gateway.request("GET", "/v1/sessions").json()["event"]
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["body"] is None


def test_binary_request_body_is_base64(gateway: Gateway) -> None:
    payload = bytes(range(256))
    event = gateway.request("POST", "/v1/sessions", data=payload).json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_handlers_see_the_template_environment_with_local_overrides(gateway: Gateway) -> None:
    body = gateway.request("GET", "/v1/sessions").json()
    assert body["env"] == {
        "SESSIONS_TABLE": "fixture-SessionsTable",
        "CONTROL_TABLE": "fixture-ControlTable",
        "ALLOW_PRIVATE_STREAM_HOSTS": "true",
        "MAX_ACTIVE_SESSIONS": str(local_capacity()),  # the local default follows the machine's cores
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    assert 0 < body["remainingMs"] <= 10_000  # the template's Timeout


def test_each_function_runs_in_warm_worker_processes_of_its_own(gateway: Gateway) -> None:
    # Given the API function and its authorizer (a fresh decision: the cache is cleared)
    gateway.stack.component("gateway").cache.clear()  # type: ignore[attr-defined]
    # When two requests follow each other
    first = gateway.request("GET", "/v1/sessions").json()
    second = gateway.request("GET", "/v1/sessions").json()
    # Then the same warm API worker answered both (its module state kept), in a process of its own
    assert first["pid"] == second["pid"] != os.getpid()
    assert second["invocations"] == first["invocations"] + 1
    # and the authorizer ran in another process, never the API function's nor the stack's
    authorizer_pid = int(first["event"]["requestContext"]["authorizer"]["pid"])
    assert authorizer_pid not in (first["pid"], os.getpid())
    described = gateway.stack.component("functions").describe()
    assert first["pid"] in described["ApiFunction"]["workers"]
    assert authorizer_pid in described["AuthorizerFunction"]["workers"]
    assert not set(described["ApiFunction"]["workers"]) & set(described["AuthorizerFunction"]["workers"])


# ------------------------------------------------------------------ the proxy result
def test_proxy_result_headers_and_multi_value_headers(gateway: Gateway) -> None:
    response = gateway.request("GET", "/v1/sessions")
    assert response.headers["X-Function"] == "local-ApiFunction"
    assert response.raw.headers.getlist("X-Multi") == ["one", "two"]


def test_base64_result_is_decoded(gateway: Gateway) -> None:
    response = gateway.request("GET", "/v1/sessions/binary")
    assert response.status_code == 200
    assert response.content == bytes(range(256))


def test_empty_result_body(gateway: Gateway) -> None:
    response = gateway.request("DELETE", "/v1/sessions/empty")
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["X-Empty"] == "yes"


# ------------------------------------------------------------------ built-in routes and the state file
def test_health_and_openapi_need_no_token(gateway: Gateway) -> None:
    health = requests.get(gateway.url + "/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    openapi = requests.get(gateway.url + "/openapi.yaml", timeout=5)
    assert openapi.status_code == 200
    assert yaml.safe_load(openapi.text)["info"]["title"] == "fixture"
    assert requests.get(gateway.url + "/openapi.json", timeout=5).json()["openapi"] == "3.1.0"


def test_state_file_describes_the_stack(gateway: Gateway) -> None:
    state = read_state(gateway.stack.state_file)
    assert state == gateway.state
    assert state["pid"] == os.getpid()
    assert state["endpoint"] == gateway.url
    assert state["tables"]["ControlTable"] == "fixture-ControlTable"
    assert state["env"]["SESSIONS_TABLE"] == "fixture-SessionsTable"
    assert "POST /v1/sessions" in state["components"]["gateway"]["routes"]
