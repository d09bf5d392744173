"""Every error the REST API answers, decided in one place.

Body: ``{"error": true, "status": N, "message": "..."}`` (the reference API's shape), with a message that
says what to fix. Domain errors carry their status; request validation failures are 400 (Powertools would
say 422); AWS-side failures are 503; anything unexpected is logged with its stack and answered 500 with no
detail.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
from ..errors import DomainError, RateLimited
from ..service import is_transient

logger = logging.getLogger(__name__)

JSON_ONLY = "request body must be JSON: send it with Content-Type: application/json"

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class ApiError:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": True, "status": self.status, "message": self.message}

    def response(self) -> Response:
        return Response(
            status_code=self.status,
            content_type=content_types.APPLICATION_JSON,
            body=self.body(),
            headers=dict(self.headers),
        )


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
def api_error(exc: BaseException) -> ApiError:
    """The HTTP answer for an exception. The one place where errors become status codes."""
    if isinstance(exc, RateLimited):
        return ApiError(429, exc.message, {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, DomainError) and 400 <= exc.status < 600:
        return ApiError(exc.status, exc.message)
    if isinstance(exc, RequestValidationError):
        return ApiError(400, validation_message(exc.errors()))
    if isinstance(exc, RequestUnsupportedContentType):
        return ApiError(400, JSON_ONLY)
    if isinstance(exc, MethodNotAllowed):
        return ApiError(
            405,
            f"method {exc.method} is not allowed on {exc.path}; use {', '.join(exc.allowed)}",
            {"Allow": ", ".join(exc.allowed)},
        )
    if isinstance(exc, NotFoundError):
        return ApiError(404, "no such route; see the API reference (docs/openapi.yaml) for the routes under /v1")
    if isinstance(exc, IdempotencyValidationError):
        return ApiError(
            400,
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a different request",
        )
    if isinstance(exc, IdempotencyAlreadyInProgressError):
        return ApiError(409, "a request with this Idempotency-Key is still in progress; retry in a moment")
    if isinstance(exc, IdempotencyPersistenceLayerError | IdempotencyInconsistentStateError):
        logger.error("idempotency store failed: %s", exc)
        return ApiError(503, "the service is temporarily unavailable; retry later")
    if isinstance(exc, ClientError | BotoCoreError) and is_transient(exc):
        logger.error("AWS call failed: %s", exc)
        return ApiError(503, "the service is temporarily unavailable; retry later")
    if isinstance(exc, ConfigError):
        logger.error("misconfigured: %s", exc)
        return ApiError(500, "the service is misconfigured; the operator has been notified")
    logger.error("unhandled error", exc_info=exc)
    return ApiError(500, "internal error; the request was not completed")


def proxy_response(error: ApiError, extra_headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway proxy response for an error answered outside the resolver (401, 429, last resort)."""
    headers = {"Content-Type": content_types.APPLICATION_JSON, **error.headers, **(extra_headers or {})}
    return {
        "statusCode": error.status,
        "headers": headers,
        "multiValueHeaders": {},
        "body": json.dumps(error.body(), separators=(",", ":")),
        "isBase64Encoded": False,
    }
