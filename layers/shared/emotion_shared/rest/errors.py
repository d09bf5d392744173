"""Every error the REST API answers, decided in one place: status, stable ``code`` and message.

Body: ``{"error": true, "status": N, "message": "...", "code": "..."}`` (the reference API's shape plus a
machine-readable :class:`~emotion_shared.errors.ErrorCode`), with a message that says what to fix. A client
that prefers ``application/problem+json`` (``Accept``, q-values honoured) gets an RFC 9457 problem-details
object instead: ``{"type", "title", "status", "detail", "instance", "code"}``. Domain errors carry their status
and code; request validation failures are 400 (Powertools would say 422); AWS-side failures are 503; anything
unexpected is logged with its stack and answered 500 with no detail.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mimeparse
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from botocore.exceptions import BotoCoreError, ClientError

from ..config import ConfigError
from ..errors import DomainError, ErrorCode, RateLimited
from ..session_service import is_transient

logger = logging.getLogger(__name__)

JSON_ONLY = "request body must be JSON: send it with Content-Type: application/json"

PROBLEM_JSON = "application/problem+json"
# Offered in this order: on a tie (``*/*``, ``application/*``) the reference body wins.
_OFFERED = [PROBLEM_JSON, content_types.APPLICATION_JSON]
PROBLEM_TYPE_PREFIX = "urn:emotion-stream:error:"

# Short, stable titles (RFC 9457 ``title``): one per code.
TITLES: dict[ErrorCode, str] = {
    ErrorCode.VALIDATION_FAILED: "Invalid request",
    ErrorCode.INVALID_STREAM_URI: "Invalid stream URI",
    ErrorCode.SESSION_NOT_ACTIVE: "Session not active",
    ErrorCode.SESSION_ACTIVE: "Session still active",
    ErrorCode.IDEMPOTENCY_KEY_REUSED: "Idempotency key reused",
    ErrorCode.UNAUTHORIZED: "Unauthorized",
    ErrorCode.FORBIDDEN: "Forbidden",
    ErrorCode.SESSION_NOT_FOUND: "Session not found",
    ErrorCode.VIEWER_TOKEN_NOT_FOUND: "Viewer token not found",
    ErrorCode.ROUTE_NOT_FOUND: "No such route",
    ErrorCode.METHOD_NOT_ALLOWED: "Method not allowed",
    ErrorCode.IDEMPOTENCY_IN_PROGRESS: "Request in progress",
    ErrorCode.VIEWER_TOKEN_LIMIT: "Viewer token limit reached",
    ErrorCode.REQUEST_TOO_LARGE: "Request too large",
    ErrorCode.RATE_LIMITED: "Rate limited",
    ErrorCode.CAPACITY_EXHAUSTED: "No capacity",
    ErrorCode.WORKER_START_FAILED: "Worker could not be started",
    ErrorCode.SERVICE_UNAVAILABLE: "Service unavailable",
    ErrorCode.INTERNAL_ERROR: "Internal error",
    ErrorCode.BAD_GATEWAY: "Bad gateway",
    ErrorCode.GATEWAY_TIMEOUT: "Gateway timeout",
    ErrorCode.PROTOCOL_ERROR: "Protocol error",
    ErrorCode.ALREADY_AUTHENTICATED: "Already authenticated",
    ErrorCode.UNKNOWN_PATH: "Unknown path",
    ErrorCode.UNKNOWN_CHANNEL: "Unknown channel",
    ErrorCode.SUBSCRIPTION_NOT_FOUND: "Subscription not found",
    ErrorCode.SUBSCRIPTION_LIMIT: "Subscription limit reached",
}


def wants_problem_json(accept: str | None) -> bool:
    """True when the ``Accept`` header prefers ``application/problem+json`` to ``application/json`` (q-values
    honoured; absent, ``*/*``, ``application/*`` or unparsable → the reference body)."""
    if not accept or not accept.strip():
        return False
    try:
        return bool(mimeparse.best_match(_OFFERED, accept) == PROBLEM_JSON)
    except (ValueError, mimeparse.MimeTypeParseException):
        return False


def header_value(headers: Mapping[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == wanted), None)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ApiError:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def body(self) -> dict[str, Any]:
        """The reference API's error body plus ``code``."""
        return {"error": True, "status": self.status, "message": self.message, "code": self.code.value}

    def problem(self, instance: str | None) -> dict[str, Any]:
        """The RFC 9457 problem-details object."""
        out: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.code.value,
            "title": TITLES[self.code],
            "status": self.status,
            "detail": self.message,
            "code": self.code.value,
        }
        if instance:
            out["instance"] = instance
        return out

    def render(self, accept: str | None, instance: str | None) -> tuple[str, str]:
        """``(content type, body text)`` as the request's ``Accept`` header asks."""
        if wants_problem_json(accept):
            return PROBLEM_JSON, json.dumps(self.problem(instance), separators=(",", ":"))
        return content_types.APPLICATION_JSON, json.dumps(self.body(), separators=(",", ":"))

    def response(self, accept: str | None = None, instance: str | None = None) -> Response:
        content_type, body = self.render(accept, instance)
        return Response(status_code=self.status, content_type=content_type, body=body, headers=dict(self.headers))


class MethodNotAllowed(Exception):
    def __init__(self, method: str, path: str, allowed: Iterable[str]) -> None:
        super().__init__(f"{method} {path}")
        self.method = method
        self.path = path
        self.allowed = sorted(allowed)


# ---------------------------------------------------------------------- validation messages
_WHERE = {"body": "body field", "query": "query parameter", "header": "header", "path": "path parameter"}


def _describe(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "request"
    where = str(loc[0])
    if where == "query" and len(loc) > 2:
        loc = loc[:1] + loc[2:]  # ("query", <model parameter>, "limit") → ("query", "limit")
    rest = [str(p) for p in loc[1:] if not isinstance(p, int) or where != "body" or len(loc) > 2]
    if where == "body" and not rest:
        return "request body"
    name = ".".join(rest) if rest else where
    return f"{_WHERE.get(where, where)} '{name}'"


def _reason(err: Mapping[str, Any]) -> str:
    kind = str(err.get("type", ""))
    msg = str(err.get("msg", "is invalid"))
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not allowed (unknown field)"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return "must be a JSON object"
    if kind == "json_invalid":
        return f"is not valid JSON ({ctx.get('error', 'syntax error')})"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return "must be an integer"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if msg.startswith("Input should be "):
        return "must be " + msg.removeprefix("Input should be ")
    if msg.startswith("String should have "):
        return "must have " + msg.removeprefix("String should have ")
    return msg[:1].lower() + msg[1:]


def validation_message(errors: Iterable[Mapping[str, Any]]) -> str:
    """``body field 'name' must not be empty; query parameter 'limit' must be less than or equal to 100``."""
    parts: list[str] = []
    for err in errors:
        loc = tuple(err.get("loc") or ())
        if err.get("type") == "value_error" and str(err.get("msg", "")).startswith("Value error, "):
            # Our validators already name the field ("streamUri must use …").
            text = _reason(err)
            field_name = str(loc[-1]) if len(loc) > 1 else ""
            parts.append(text if field_name and text.startswith(field_name) else f"{_describe(loc)}: {text}")
        else:
            parts.append(f"{_describe(loc)} {_reason(err)}")
    unique = list(dict.fromkeys(parts))
    return "; ".join(unique[:5]) + ("" if len(unique) <= 5 else f" (and {len(unique) - 5} more problems)")


# ---------------------------------------------------------------------- the mapping
def _validation_code(errors: Iterable[Mapping[str, Any]]) -> ErrorCode:
    """``invalid_stream_uri`` when every problem is with ``streamUri``, else ``validation_failed``."""
    locations = [tuple(err.get("loc") or ()) for err in errors]
    if locations and all(loc and loc[-1] == "streamUri" for loc in locations):
        return ErrorCode.INVALID_STREAM_URI
    return ErrorCode.VALIDATION_FAILED


def api_error(exc: BaseException) -> ApiError:
    """The HTTP answer for an exception. The one place where errors become status codes and codes."""
    if isinstance(exc, RateLimited):
        return ApiError(429, exc.message, {"Retry-After": str(exc.retry_after)}, exc.code)
    if isinstance(exc, DomainError) and 400 <= exc.status < 600:
        return ApiError(exc.status, exc.message, code=exc.code)
    if isinstance(exc, RequestValidationError):
        return ApiError(400, validation_message(exc.errors()), code=_validation_code(exc.errors()))
    if isinstance(exc, RequestUnsupportedContentType):
        return ApiError(400, JSON_ONLY, code=ErrorCode.VALIDATION_FAILED)
    if isinstance(exc, MethodNotAllowed):
        return ApiError(
            405,
            f"method {exc.method} is not allowed on {exc.path}; use {', '.join(exc.allowed)}",
            {"Allow": ", ".join(exc.allowed)},
            ErrorCode.METHOD_NOT_ALLOWED,
        )
    if isinstance(exc, NotFoundError):
        return ApiError(404, "no such route; see the API reference (docs/openapi.yaml) for the routes under /v1",
                        code=ErrorCode.ROUTE_NOT_FOUND)
    if isinstance(exc, IdempotencyValidationError):
        return ApiError(
            400,
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a different request",
            code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
        )
    if isinstance(exc, IdempotencyAlreadyInProgressError):
        return ApiError(409, "a request with this Idempotency-Key is still in progress; retry in a moment",
                        code=ErrorCode.IDEMPOTENCY_IN_PROGRESS)
    if isinstance(exc, IdempotencyPersistenceLayerError | IdempotencyInconsistentStateError):
        logger.error("idempotency store failed: %s", exc)
        return ApiError(503, "the service is temporarily unavailable; retry later", code=ErrorCode.SERVICE_UNAVAILABLE)
    if isinstance(exc, ClientError | BotoCoreError) and is_transient(exc):
        logger.error("AWS call failed: %s", exc)
        return ApiError(503, "the service is temporarily unavailable; retry later", code=ErrorCode.SERVICE_UNAVAILABLE)
    if isinstance(exc, ConfigError):
        logger.error("misconfigured: %s", exc)
        return ApiError(500, "the service is misconfigured; the operator has been notified",
                        code=ErrorCode.INTERNAL_ERROR)
    logger.error("unhandled error", exc_info=exc)
    return ApiError(500, "internal error; the request was not completed", code=ErrorCode.INTERNAL_ERROR)


def proxy_response(
    error: ApiError,
    extra_headers: Mapping[str, str] | None = None,
    *,
    accept: str | None = None,
    instance: str | None = None,
) -> dict[str, Any]:
    """An API Gateway proxy response for an error answered outside the resolver (401, 429, last resort)."""
    content_type, body = error.render(accept, instance)
    headers = {"Content-Type": content_type, **error.headers, **(extra_headers or {})}
    return {
        "statusCode": error.status,
        "headers": headers,
        "multiValueHeaders": {},
        "body": body,
        "isBase64Encoded": False,
    }
