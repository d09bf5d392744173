"""The REST API: a Powertools ``APIGatewayRestResolver`` behind a small gateway step.

Request path (``handler``):

1. **gateway step** — the caller's identity comes from the authorizer context
   (``requestContext.authorizer.user`` / ``.product`` / ``.scope`` / ``.sessionId``; missing → 401). The
   per-user token bucket takes one token (denied → 429 with ``Retry-After``). Every answer to an
   authenticated request then carries the ``RateLimit-*`` headers. The token's scope is checked against the
   route table once (:func:`emotion_shared.access.check`): a viewer token reaches only the read routes of
   its session.
2. **resolver** — Powertools routing and request validation (pydantic models), the route calls one
   :class:`~emotion_shared.session_service.SessionService` operation. Every exception becomes an error body in
   :mod:`.errors`.

Why rate limiting is not a Powertools middleware: Powertools runs its request validation before any user
middleware, so a middleware would neither count nor label the 400s of invalid requests. The gateway step
wraps the resolver instead; it is the same idea (a middleware around the app), placed where it sees every
request.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths

from .. import access
from ..auth import Principal
from ..errors import DomainError, InvalidRequest, NotFound, RateLimited, Unauthorized
from . import deps
from .errors import JSON_ONLY, ApiError, MethodNotAllowed, api_error, header_value, proxy_response
from .observability import logger, metrics, tracer
from .routes import allowed_methods, route_operation, router

SESSION_NOT_FOUND = "session not found (ids are 24 lowercase hex characters)"


def _json_loads(text: str | bytes) -> Any:
    """Body parser for the resolver: any failure is a JSON syntax error (→ 400), never a crash (deep
    nesting raises ``RecursionError``)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        reason = "nested too deeply" if isinstance(exc, RecursionError) else "not UTF-8 text"
        raise json.JSONDecodeError(reason, str(text)[:64], 0) from None


app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=_json_loads)
app.include_router(router)


def _accept(event: Mapping[str, Any]) -> str | None:
    headers = event.get("headers")
    return header_value(headers if isinstance(headers, Mapping) else None, "accept")


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _instance(event: Mapping[str, Any]) -> str | None:
    """The problem's ``instance``: ``urn:uuid:<request id>`` (the answer's ``x-amzn-RequestId``, as API
    Gateway's own error responses give it), else the request path."""
    context = event.get("requestContext")
    request_id = context.get("requestId") if isinstance(context, Mapping) else None
    if isinstance(request_id, str) and _UUID.match(request_id.lower()):
        return "urn:uuid:" + request_id.lower()
    path = event.get("path")
    return path if isinstance(path, str) and path else None


@app.exception_handler(Exception)
def _any_error(exc: Exception) -> Response:
    event = app.current_event.raw_event
    return api_error(exc).response(_accept(event), _instance(event))


def _unrouted_error(method: str, path: str) -> ApiError:
    """The answer for a request no route took: a missing session, a wrong method (405) or an unknown path."""
    methods = allowed_methods(path)
    if method in methods:
        # A known route and method whose ``{id}`` holds characters Powertools' path pattern refuses (control
        # characters, ``"``, ``#``…): no session can have such an id, so it is a missing session, not a 405.
        return api_error(NotFound(SESSION_NOT_FOUND))
    if methods:
        return api_error(MethodNotAllowed(method, path, methods))
    return api_error(NotFoundError())


@app.not_found
def _not_found(exc: NotFoundError) -> Response:
    path = str(app.context.get("_path") or app.current_event.path)
    event = app.current_event.raw_event
    return _unrouted_error(app.current_event.http_method, path).response(_accept(event), _instance(event))


def _has_control_characters(path: str) -> bool:
    """Powertools matches routes with ``$``, which also matches before a trailing newline: ``/v1/sessions/%0A``
    would be answered as the list. No route has control characters, so such paths never reach the resolver."""
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in path)


def principal_from_event(event: Mapping[str, Any]) -> Principal | None:
    """The authorizer context API Gateway (or the local gateway) put into ``requestContext.authorizer``."""
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    if not isinstance(authorizer, Mapping):
        return None
    return Principal.from_context(authorizer)


def _check_scope(principal: Principal, method: Any, path: Any) -> None:
    """The token's scope against the route table (:mod:`emotion_shared.access`), before any route runs.
    Unknown routes and methods are left to the resolver (404/405)."""
    if not principal.is_viewer or not isinstance(method, str) or not isinstance(path, str):
        return
    found = route_operation(method, path)
    if found is not None:
        access.check(principal, *found)


def _decode_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """Base64 bodies decoded up front, so a malformed one is a 400 rather than a crash inside the resolver."""
    if not event.get("isBase64Encoded") or not event.get("body"):
        return event
    try:
        text = base64.b64decode(str(event["body"]), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return {**event, "body": text, "isBase64Encoded": False}


def _is_form_body(event: Mapping[str, Any]) -> bool:
    """A form or multipart Content-Type: the API reads JSON bodies only. Powertools would parse these two
    itself (and crash on a multipart type without a boundary), so they are refused before the resolver."""
    headers = event.get("headers")
    if not isinstance(headers, Mapping):
        return False
    value = next((v for k, v in headers.items() if str(k).lower() == "content-type"), None)
    if not isinstance(value, str):
        return False
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type.startswith("multipart/") or media_type == "application/x-www-form-urlencoded"


def _with_headers(response: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
    multi = response.get("multiValueHeaders")
    if isinstance(multi, dict) and multi:
        for name, value in headers.items():
            multi[name] = [value]
    else:
        response.setdefault("headers", {})
        if response["headers"] is None:
            response["headers"] = {}
        response["headers"].update(headers)
    return response


def _gateway(event: dict[str, Any], context: Any) -> dict[str, Any]:
    accept, instance = _accept(event), _instance(event)

    def error(exc: BaseException | ApiError, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        mapped = exc if isinstance(exc, ApiError) else api_error(exc)
        return proxy_response(mapped, headers, accept=accept, instance=instance)

    principal = principal_from_event(event)
    if principal is None:
        return error(Unauthorized("missing or invalid bearer token: send 'Authorization: Bearer <token>'"))
    d = deps.get()
    decision = d.limiter.consume(principal.limit_subject)  # per user; per viewer token for viewer tokens
    limit_headers = decision.headers()
    if not decision.allowed:
        message = (
            f"rate limit of {decision.limit} requests per {decision.window_seconds} s exceeded; "
            f"retry in {decision.retry_after} s"
            if decision.reason != "too many concurrent requests"
            else "too many concurrent requests; retry in a moment"
        )
        return error(RateLimited(message, decision.retry_after), limit_headers)
    path, method = event.get("path"), event.get("httpMethod")
    if isinstance(path, str) and isinstance(method, str) and _has_control_characters(path):
        return error(_unrouted_error(method, path), limit_headers)
    try:
        _check_scope(principal, method, path)
    except DomainError as denied:
        return error(denied, limit_headers)
    if _is_form_body(event):
        return error(InvalidRequest(JSON_ONLY), limit_headers)
    decoded = _decode_body(event)
    if decoded is None:
        return error(InvalidRequest("request body is not valid base64-encoded UTF-8"), limit_headers)
    app.append_context(principal=principal)
    return _with_headers(app.resolve(decoded, context), limit_headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point of the REST API (proxy integration, REST API payload v1). Not re-entrant: Powertools
    keeps the current request on the resolver class and the logger's keys on the logger, and Lambda (the
    local stack too) invokes one request at a time per execution environment."""
    try:
        response = _gateway(event, context)
    except Exception as exc:  # last resort: the resolver maps its own errors; this guards the gateway step
        response = proxy_response(api_error(exc), accept=_accept(event), instance=_instance(event))
    finally:
        # Like @metrics.log_metrics, minus its warning for the (usual) requests that record no metric.
        if metrics.metric_set:
            metrics.flush_metrics()
            metrics.clear_metrics()  # flush keeps them when POWERTOOLS_METRICS_DISABLED is set
    response.setdefault("headers", {})
    if response["headers"] is None:
        response["headers"] = {}
    return response


__all__ = ["app", "handler", "principal_from_event"]
