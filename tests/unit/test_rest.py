"""REST building blocks without AWS: error mapping, validation messages, identity, routes table, tokens,
rate-limit header math."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from botocore.exceptions import ClientError, EndpointConnectionError
from emotion_shared import auth
from emotion_shared.errors import (
    CapacityExceeded,
    Conflict,
    ErrorCode,
    Forbidden,
    InvalidRequest,
    InvalidState,
    NotFound,
    RateLimited,
)
from emotion_shared.ratelimit import TokenBucketLimiter
from emotion_shared.rest.api import principal_from_event
from emotion_shared.rest.errors import (
    MethodNotAllowed,
    api_error,
    proxy_response,
    validation_message,
    wants_problem_json,
)
from emotion_shared.rest.routes import ROUTES, allowed_methods

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- error mapping
@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidRequest("x"), 400, "validation_failed"),
        (InvalidRequest("x", code=ErrorCode.INVALID_STREAM_URI), 400, "invalid_stream_uri"),
        (InvalidState("x"), 400, "session_not_active"),
        (InvalidState("x", code=ErrorCode.SESSION_ACTIVE), 400, "session_active"),
        (Forbidden("x"), 403, "forbidden"),
        (NotFound("x"), 404, "session_not_found"),
        (Conflict("x"), 409, "viewer_token_limit"),
        (CapacityExceeded("x"), 503, "capacity_exhausted"),
        (RateLimited("x", 7), 429, "rate_limited"),
        (IdempotencyValidationError("x"), 400, "idempotency_key_reused"),
        (IdempotencyAlreadyInProgressError("x"), 409, "idempotency_in_progress"),
        (NotFoundError(), 404, "route_not_found"),
        (MethodNotAllowed("PUT", "/v1/sessions", ["GET", "POST"]), 405, "method_not_allowed"),
        (ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "Query"), 503,
         "service_unavailable"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), 503, "service_unavailable"),
        (ClientError({"Error": {"Code": "ValidationException", "Message": "bug"}}, "Query"), 500, "internal_error"),
        (KeyError("bug"), 500, "internal_error"),
    ],
)
def test_every_exception_has_one_answer(exc: Exception, status: int, code: str) -> None:
    error = api_error(exc)
    assert error.status == status
    assert error.body() == {"error": True, "status": status, "message": error.message, "code": code}
    assert error.message
    problem = error.problem("/v1/sessions/x")
    assert problem == {"type": f"urn:emotion-stream:error:{code}", "title": problem["title"], "status": status,
                       "detail": error.message, "instance": "/v1/sessions/x", "code": code}
    assert problem["title"]


@pytest.mark.parametrize(
    ("accept", "problem"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/*", False),
        ("application/json", False),
        ("text/html", False),
        ("application/problem+json", True),
        ("application/problem+json, application/json;q=0.9", True),
        ("application/json;q=0.1, application/problem+json", True),
        ("application/problem+json;q=0.5, application/json", False),
        ("application/problem+json;q=0", False),
        ("application/problem+json;q=0.8, */*;q=0.1", True),
        ("not a media type;;", False),
    ],
)
def test_problem_json_is_negotiated_with_q_values(accept: str | None, problem: bool) -> None:
    assert wants_problem_json(accept) is problem
    content_type, body = api_error(NotFound("gone")).render(accept, "/v1/sessions/x")
    assert content_type == ("application/problem+json" if problem else "application/json")
    assert ("type" in json.loads(body)) is problem


def test_error_codes_match_the_openapi_document() -> None:
    """One list of codes: the ErrorCode enum and the OpenAPI ErrorCode schema are the same set, each
    described there."""
    doc = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
    schema = doc["components"]["schemas"]["ErrorCode"]
    assert set(schema["enum"]) == {c.value for c in ErrorCode}
    for code in ErrorCode:
        assert f"`{code.value}`" in schema["description"], f"{code.value} is not described in openapi.yaml"


def test_gateway_responses_carry_codes() -> None:
    from emotion_shared.rest.errors import TITLES

    template = yaml.load((REPO / "template.yaml").read_text(), Loader=_CfnLoader)
    responses = template["Resources"]["Api"]["Properties"]["GatewayResponses"]
    assert set(TITLES) == set(ErrorCode)
    for kind, spec in responses.items():
        templates = spec["ResponseTemplates"]
        assert set(templates) == {"application/json", "application/problem+json"}, kind
        plain = json.loads(templates["application/json"].replace("$context.error.messageString", '"m"'))
        problem = json.loads(templates["application/problem+json"].replace("$context.error.messageString", '"m"'))
        assert ErrorCode(plain["code"]) == ErrorCode(problem["code"]), kind
        assert plain["status"] == problem["status"] == spec["StatusCode"], kind
        assert problem["type"] == "urn:emotion-stream:error:" + plain["code"]


class _CfnLoader(yaml.SafeLoader):
    pass


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_internal_errors_do_not_leak_details() -> None:
    error = api_error(KeyError("secret-table-name"))
    assert "secret" not in error.message


def test_429_and_405_carry_their_headers() -> None:
    assert api_error(RateLimited("slow down", 7)).headers == {"Retry-After": "7"}
    assert api_error(MethodNotAllowed("PUT", "/v1/sessions", ["POST", "GET"])).headers == {"Allow": "GET, POST"}


def test_proxy_response_shape() -> None:
    response = proxy_response(api_error(RateLimited("slow", 2)), {"RateLimit-Limit": "5"})
    assert response["statusCode"] == 429
    assert response["headers"] == {"Content-Type": "application/json", "Retry-After": "2", "RateLimit-Limit": "5"}
    assert json.loads(response["body"]) == {"error": True, "status": 429, "message": "slow", "code": "rate_limited"}
    problem = proxy_response(api_error(RateLimited("slow", 2)), accept="application/problem+json", instance="/v1/x")
    assert problem["headers"]["Content-Type"] == "application/problem+json"
    assert json.loads(problem["body"])["instance"] == "/v1/x"


# ---------------------------------------------------------------------- validation messages
def errors(*items: dict[str, Any]) -> RequestValidationError:
    return RequestValidationError(list(items))


def test_validation_messages_name_the_field_and_the_rule() -> None:
    msg = validation_message(
        [
            {"type": "missing", "loc": ("body", "name"), "msg": "Field required"},
            {"type": "extra_forbidden", "loc": ("body", "colour"), "msg": "Extra inputs are not permitted"},
            {
                "type": "less_than_equal",
                "loc": ("query", "query", "limit"),
                "msg": "Input should be less than or equal to 100",
            },
            {"type": "int_parsing", "loc": ("query", "query", "offset"), "msg": "Input should be a valid integer"},
        ]
    )
    assert msg == (
        "body field 'name' is required; body field 'colour' is not allowed (unknown field); "
        "query parameter 'limit' must be less than or equal to 100; query parameter 'offset' must be an integer"
    )


def test_validation_messages_for_whole_body_problems() -> None:
    assert validation_message([{"type": "model_attributes_type", "loc": ("body",), "msg": "x"}]) == (
        "request body must be a JSON object"
    )
    assert validation_message([{"type": "json_invalid", "loc": ("body", 3), "msg": "x", "ctx": {"error": "bad"}}]) == (
        "request body is not valid JSON (bad)"
    )
    # our own validators already name the field
    assert validation_message(
        [
            {
                "type": "value_error",
                "loc": ("body", "streamUri"),
                "msg": "Value error, streamUri must use one of the protocols rtmp, rtsp or rtmps",
            }
        ]
    ) == "streamUri must use one of the protocols rtmp, rtsp or rtmps"


def test_validation_message_is_bounded() -> None:
    many = [{"type": "missing", "loc": ("body", f"f{i}"), "msg": "Field required"} for i in range(9)]
    assert validation_message(many).endswith("(and 4 more problems)")
    assert api_error(errors(*many)).status == 400


# ---------------------------------------------------------------------- identity
def test_principal_comes_from_the_authorizer_context() -> None:
    event = json.loads((REPO / "events/api/get_session.json").read_text())
    principal = principal_from_event(event)
    assert principal is not None and (principal.user, principal.product) == ("alice", "standard")
    event["requestContext"]["authorizer"] = {"user": "bob"}
    assert principal_from_event(event) == auth.Principal("bob", "standard")  # default product
    for broken in ({}, {"requestContext": None}, {"requestContext": {"authorizer": {"user": ""}}},
                   {"requestContext": {"authorizer": {"principalId": "x"}}}):
        assert principal_from_event(broken) is None


# ---------------------------------------------------------------------- routes
def test_routes_table_matches_the_openapi_document() -> None:
    doc = yaml.safe_load((REPO / "docs/openapi.yaml").read_text())
    documented = {
        path: tuple(sorted(m.upper() for m in ops if m in {"get", "post", "put", "delete", "patch"}))
        for path, ops in doc["paths"].items()
    }
    assert documented == {path: tuple(sorted(methods)) for path, methods in ROUTES.items()}


def test_allowed_methods() -> None:
    assert allowed_methods("/v1/sessions") == ("GET", "POST")
    assert allowed_methods("/v1/sessions/abc/emotions/timeline") == ("GET",)
    assert allowed_methods("/v1/sessions/abc/stop") == ("POST",)
    assert allowed_methods("/v1/nothing") == ()
    assert allowed_methods("/v1/sessions/a/b") == ()


# ---------------------------------------------------------------------- tokens (pure parts)
@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({"Authorization": "Bearer emo_abc"}, "emo_abc"),
        ({"authorization": "bearer   emo_abc  "}, "emo_abc"),
        ({"AUTHORIZATION": "Bearer emo_abc"}, "emo_abc"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"Authorization": "Bearer"}, None),
        ({"Authorization": "Bearer " + "x" * 300}, None),
        ({"X-Other": "Bearer emo_abc"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_bearer_token(headers: dict[str, str] | None, token: str | None) -> None:
    assert auth.bearer_token(headers) == token


def test_token_hash_is_sha256_hex() -> None:
    # sha256("abc"), a published test vector
    assert auth.hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert auth.token_key("abc").startswith("token#ba7816bf")


def test_policy_allows_the_whole_stage() -> None:
    arn = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3/prod/GET/v1/sessions/65ea1530bb50af72b6e3dc1e"
    result = auth.policy({"user": "alice", "product": "standard"}, arn)
    assert result["principalId"] == "alice"
    assert result["context"] == {"user": "alice", "product": "standard"}
    (statement,) = result["policyDocument"]["Statement"]
    assert statement == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        "Resource": ["arn:aws:execute-api:us-east-1:123456789012:a1b2c3/prod/*/*"],
    }


@pytest.mark.parametrize("arn", ["", "not-an-arn", "arn:aws:execute-api:us-east-1:123456789012:a1b2c3"])
def test_policy_refuses_a_malformed_method_arn(arn: str) -> None:
    with pytest.raises(ValueError, match="method ARN"):
        auth.policy({"user": "alice"}, arn)


@pytest.mark.parametrize("name", ["alice", "user.1@example.com", "a" * 128, "65d7a8fb532f66218ecd4cab"])
def test_valid_names(name: str) -> None:
    assert auth.validate_name("user", name) == name


@pytest.mark.parametrize("name", ["", " alice", "a b", "a" * 129, "ali/ce", "-x", "é"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValueError, match="user must be"):
        auth.validate_name("user", name)


# ---------------------------------------------------------------------- rate-limit math
class _NoDb:
    def get_item(self, **_: Any) -> dict[str, Any]:
        return {}

    def put_item(self, **_: Any) -> dict[str, Any]:
        return {}


def test_rate_limit_headers_and_refill_math() -> None:
    # capacity 4 per 8 s → one token every 2 s; the fake clock is in ms
    now = [1_000_000]
    limiter = TokenBucketLimiter(_NoDb(), "control", capacity=4, window_seconds=8, clock=lambda: now[0])
    decisions = [limiter.consume("u") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, True, False]
    assert [d.remaining for d in decisions] == [3, 2, 1, 0, 0]
    assert decisions[0].headers() == {
        "RateLimit-Limit": "4",
        "RateLimit-Remaining": "3",
        "RateLimit-Reset": "2",  # one token missing → 2 s until full
        "RateLimit-Policy": "4;w=8",
    }
    denied = decisions[4]
    assert denied.headers()["Retry-After"] == "2" and denied.reset_seconds == 8
    now[0] += 1_500  # ~0.75 token back: still denied, under a second to wait → 1
    again = limiter.consume("u")
    assert not again.allowed and again.retry_after == 1
    now[0] += 600  # one token back
    assert limiter.consume("u").allowed
    now[0] += 60_000  # long idle: full again, never above capacity
    assert limiter.consume("u").remaining == 3
