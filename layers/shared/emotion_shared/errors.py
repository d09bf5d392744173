"""Typed domain errors. The REST and WebSocket layers map them to status codes in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base class; ``status`` is the HTTP status the API answers with."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(DomainError):
    status = 400


class InvalidState(DomainError):
    """The resource exists but is not in a state that allows the operation (e.g. stop a finished session)."""

    status = 400


class Unauthorized(DomainError):
    status = 401


class NotFound(DomainError):
    status = 404


class RateLimited(DomainError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CapacityExceeded(DomainError):
    status = 503


class ServiceUnavailable(DomainError):
    status = 503


class RetriesExhausted(DomainError):
    """A write kept failing after its retry budget: the caller must fail loudly."""

    status = 503
