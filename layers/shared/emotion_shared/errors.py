"""Typed domain errors and the stable, machine-readable error codes every REST and WebSocket error carries.

The REST and WebSocket layers map exceptions to a status and a code in one place
(:func:`emotion_shared.rest.errors.api_error`). A domain error may name its code when the domain knows the
precise reason (``InvalidState(..., code=ErrorCode.SESSION_NOT_ACTIVE)``); otherwise its class gives it.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every error code of the API. Values are stable: clients branch on them. ``docs/openapi.yaml`` lists the
    same values with their meaning (``components.schemas.ErrorCode``; a unit test keeps the two equal)."""

    VALIDATION_FAILED = "validation_failed"
    INVALID_STREAM_URI = "invalid_stream_uri"
    SESSION_NOT_ACTIVE = "session_not_active"
    SESSION_ACTIVE = "session_active"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    SESSION_NOT_FOUND = "session_not_found"
    VIEWER_TOKEN_NOT_FOUND = "viewer_token_not_found"  # noqa: S105 - an error code, not a secret
    ROUTE_NOT_FOUND = "route_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    VIEWER_TOKEN_LIMIT = "viewer_token_limit"  # noqa: S105 - an error code, not a secret
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMITED = "rate_limited"
    CAPACITY_EXHAUSTED = "capacity_exhausted"
    WORKER_START_FAILED = "worker_start_failed"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"
    BAD_GATEWAY = "bad_gateway"
    GATEWAY_TIMEOUT = "gateway_timeout"
    # WebSocket only
    PROTOCOL_ERROR = "protocol_error"
    ALREADY_AUTHENTICATED = "already_authenticated"
    UNKNOWN_PATH = "unknown_path"
    UNKNOWN_CHANNEL = "unknown_channel"
    SUBSCRIPTION_NOT_FOUND = "subscription_not_found"
    SUBSCRIPTION_LIMIT = "subscription_limit"


class DomainError(Exception):
    """Base class; ``status`` is the HTTP status the API answers with, ``code`` the machine-readable reason."""

    status = 500
    code = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(DomainError):
    status = 400
    code = ErrorCode.VALIDATION_FAILED


class InvalidState(DomainError):
    """The resource exists but is not in a state that allows the operation (e.g. stop a finished session)."""

    status = 400
    code = ErrorCode.SESSION_NOT_ACTIVE


class Unauthorized(DomainError):
    status = 401
    code = ErrorCode.UNAUTHORIZED


class Forbidden(DomainError):
    """The caller is known but its token may not do this (a viewer token asked to write)."""

    status = 403
    code = ErrorCode.FORBIDDEN


class NotFound(DomainError):
    status = 404
    code = ErrorCode.SESSION_NOT_FOUND


class Conflict(DomainError):
    status = 409
    code = ErrorCode.VIEWER_TOKEN_LIMIT


class RateLimited(DomainError):
    status = 429
    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, retry_after: int, *, code: ErrorCode | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class CapacityExceeded(DomainError):
    status = 503
    code = ErrorCode.CAPACITY_EXHAUSTED


class ServiceUnavailable(DomainError):
    status = 503
    code = ErrorCode.SERVICE_UNAVAILABLE


class RetriesExhausted(DomainError):
    """A write kept failing after its retry budget: the caller must fail loudly."""

    status = 503
    code = ErrorCode.SERVICE_UNAVAILABLE
