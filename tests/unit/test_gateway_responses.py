"""The local gateway's own error responses from template.yaml: the code in every body, and the template picked
by the request's Accept header (problem+json on request, the reference body otherwise)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from emotion_shared.errors import ErrorCode

from emotionctl.local.gateway.responses import GatewayResponses
from emotionctl.local.template import load_template


@pytest.fixture(scope="module")
def responses() -> GatewayResponses:
    template = load_template()
    props = template["Resources"]["Api"]["Properties"]
    return GatewayResponses.from_api(props, lambda value: value)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/problem+json", "application/problem+json"),
        ("application/json;q=0.2, application/problem+json", "application/problem+json"),
        ("application/problem+json;q=0.2, application/json", "application/json"),
        ("text/html", "application/json"),
        ("bad;;", "application/json"),
    ],
)
def test_the_template_follows_the_accept_header(responses: GatewayResponses, accept: str | None,
                                                content_type: str) -> None:
    headers: dict[str, Any] = {"Accept": accept} if accept is not None else {}
    rendered = responses.render("UNAUTHORIZED", request_id="0b6e2b8e-1c1a-4c1e-9f51-0d6a8e5f0c11",
                                request_headers=headers)
    assert rendered.status == 401 and rendered.headers["Content-Type"] == content_type
    body = json.loads(rendered.body)
    assert body["code"] == ErrorCode.UNAUTHORIZED
    if content_type == "application/problem+json":
        assert body["instance"] == "urn:uuid:0b6e2b8e-1c1a-4c1e-9f51-0d6a8e5f0c11"
        assert body["type"] == "urn:emotion-stream:error:unauthorized"
    else:
        assert body["error"] is True and body["status"] == 401


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("MISSING_AUTHENTICATION_TOKEN", 404, ErrorCode.ROUTE_NOT_FOUND),
        ("THROTTLED", 429, ErrorCode.RATE_LIMITED),
        ("REQUEST_TOO_LARGE", 413, ErrorCode.REQUEST_TOO_LARGE),
        ("DEFAULT_4XX", 400, ErrorCode.VALIDATION_FAILED),
        ("DEFAULT_5XX", 502, ErrorCode.BAD_GATEWAY),
        ("AUTHORIZER_FAILURE", 500, ErrorCode.INTERNAL_ERROR),
        ("INTEGRATION_TIMEOUT", 504, ErrorCode.GATEWAY_TIMEOUT),
        ("BAD_REQUEST_BODY", 400, ErrorCode.VALIDATION_FAILED),
        ("UNAUTHORIZED", 401, ErrorCode.UNAUTHORIZED),
        ("ACCESS_DENIED", 401, ErrorCode.UNAUTHORIZED),
    ],
)
def test_every_gateway_error_has_its_documented_code(responses: GatewayResponses, kind: str, status: int,
                                                     code: ErrorCode) -> None:
    """The code each of API Gateway's own answers carries (docs/openapi.yaml, ErrorCode: bad_gateway and
    gateway_timeout come only from here)."""
    for accept in (None, "application/problem+json"):
        rendered = responses.render(kind, message='a "quoted" message', request_id="r",
                                    request_headers={"Accept": accept} if accept else {})
        body = json.loads(rendered.body)
        assert (rendered.status, body["status"], body["code"]) == (status, status, code), kind
