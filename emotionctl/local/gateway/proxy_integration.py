"""API Gateway REST (v1) proxy events from HTTP requests, and proxy results back to HTTP responses.

Pure functions over plain data, so they are tested without a server.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .routes import Route


@dataclass(frozen=True)
class HttpRequest:
    """What the gateway needs of an HTTP request (decoded query values, raw header pairs)."""

    method: str
    path: str  # decoded path, e.g. /v1/sessions/abc
    headers: Sequence[tuple[str, str]]  # in arrival order, original case
    query: Sequence[tuple[str, str]]  # decoded, in order
    body: bytes
    source_ip: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time_epoch_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)


@dataclass(frozen=True)
class ApiContext:
    """Facts about the (local) API that events carry."""

    api_id: str
    stage: str
    region: str
    account_id: str
    domain_name: str


def _single_and_multi(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """API Gateway's two views of repeated keys: the last value, and all values in order. None when empty."""
    if not pairs:
        return None, None
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    return {k: v[-1] for k, v in multi.items()}, multi


def method_arn(api: ApiContext, method: str, path: str) -> str:
    return f"arn:aws:execute-api:{api.region}:{api.account_id}:{api.api_id}/{api.stage}/{method.upper()}{path}"


def _request_context(
    request: HttpRequest, route: Route, api: ApiContext, authorizer: Mapping[str, Any] | None
) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in request.headers}
    when = datetime.fromtimestamp(request.time_epoch_ms / 1000, tz=UTC)
    context: dict[str, Any] = {
        "resourceId": route.event,
        "resourcePath": route.resource,
        "httpMethod": request.method.upper(),
        "extendedRequestId": request.request_id,
        "requestTime": when.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "path": f"/{api.stage}{request.path}",
        "accountId": api.account_id,
        "protocol": "HTTP/1.1",
        "stage": api.stage,
        "domainPrefix": api.domain_name.split(".", 1)[0],
        "requestTimeEpoch": request.time_epoch_ms,
        "requestId": request.request_id,
        "identity": {
            "cognitoIdentityPoolId": None,
            "accountId": None,
            "cognitoIdentityId": None,
            "caller": None,
            "sourceIp": request.source_ip,
            "principalOrgId": None,
            "accessKey": None,
            "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None,
            "userArn": None,
            "userAgent": headers.get("user-agent"),
            "user": None,
        },
        "domainName": api.domain_name,
        "apiId": api.api_id,
    }
    if authorizer is not None:
        context["authorizer"] = dict(authorizer)
    return context


def _gateway_headers(request: HttpRequest, api: ApiContext) -> list[tuple[str, str]]:
    """The request headers plus what API Gateway adds in front of the integration."""
    headers = list(request.headers)
    present = {k.lower() for k, _ in headers}
    port = api.domain_name.rsplit(":", 1)[1] if ":" in api.domain_name else "443"
    for name, value in (
        ("X-Forwarded-For", request.source_ip),
        ("X-Forwarded-Port", port),
        ("X-Forwarded-Proto", "http"),
        ("X-Amzn-Trace-Id", f"Root=1-{request.time_epoch_ms // 1000:08x}-{uuid.uuid4().hex[:24]}"),
    ):
        if name.lower() not in present:
            headers.append((name, value))
    return headers


def _body(raw: bytes) -> tuple[str | None, bool]:
    if not raw:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


def proxy_event(
    request: HttpRequest,
    route: Route,
    path_parameters: Mapping[str, str],
    api: ApiContext,
    authorizer: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``AWS_PROXY`` integration event (payload format 1.0) for one request."""
    headers, multi_headers = _single_and_multi(_gateway_headers(request, api))
    query, multi_query = _single_and_multi(request.query)
    body, is_base64 = _body(request.body)
    return {
        "resource": route.resource,
        "path": request.path,
        "httpMethod": request.method.upper(),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": dict(path_parameters) or None,
        "stageVariables": None,
        "requestContext": _request_context(request, route, api, authorizer),
        "body": body,
        "isBase64Encoded": is_base64,
    }


def authorizer_event(
    request: HttpRequest, route: Route, path_parameters: Mapping[str, str], api: ApiContext
) -> dict[str, Any]:
    """The event of a ``REQUEST`` Lambda authorizer for one request."""
    headers, multi_headers = _single_and_multi(_gateway_headers(request, api))
    query, multi_query = _single_and_multi(request.query)
    return {
        "type": "REQUEST",
        "methodArn": method_arn(api, request.method, request.path),
        "resource": route.resource,
        "path": request.path,
        "httpMethod": request.method.upper(),
        "headers": headers or {},
        "multiValueHeaders": multi_headers or {},
        "queryStringParameters": query or {},
        "multiValueQueryStringParameters": multi_query or {},
        "pathParameters": dict(path_parameters),
        "stageVariables": {},
        "requestContext": _request_context(request, route, api, None),
    }


class MalformedProxyResult(ValueError):
    """The function's result is not a valid proxy result (API Gateway answers 502)."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


_PROXY_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded", "cookies"}


def proxy_response(result: Any) -> HttpResponse:
    """Map a proxy result to HTTP as API Gateway does; :class:`MalformedProxyResult` when it would 502."""
    if not isinstance(result, Mapping):
        raise MalformedProxyResult(f"the function returned {type(result).__name__}, not an object")
    unknown = set(result) - _PROXY_KEYS
    if unknown:
        raise MalformedProxyResult(f"unexpected keys in the proxy result: {', '.join(sorted(unknown))}")
    status = result.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int | str) or not str(status).isdigit():
        raise MalformedProxyResult(f"statusCode must be an integer, got {status!r}")
    code = int(status)
    if not 100 <= code <= 599:
        raise MalformedProxyResult(f"statusCode {code} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    multi = result.get("multiValueHeaders") or {}
    single = result.get("headers") or {}
    if not isinstance(multi, Mapping) or not isinstance(single, Mapping):
        raise MalformedProxyResult("headers and multiValueHeaders must be objects")
    multi_names = {str(k).lower() for k in multi}
    for name, value in single.items():
        if str(name).lower() not in multi_names:
            headers.append((str(name), _header(value)))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedProxyResult(f"multiValueHeaders[{name!r}] must be a list")
        headers.extend((str(name), _header(v)) for v in values)
    body = result.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raise MalformedProxyResult(f"body must be a string, got {type(body).__name__}")
    elif result.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedProxyResult(f"isBase64Encoded but the body is not base64: {exc}") from exc
    else:
        raw = body.encode("utf-8")
    if not any(k.lower() == "content-type" for k, _ in headers) and raw:
        headers.append(("Content-Type", "application/json"))  # API Gateway's default
    return HttpResponse(status=code, headers=headers, body=raw)


def _header(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
