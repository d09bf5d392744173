"""The REST API's collaborators, built once per process from the validated settings (never per request)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .. import auth, aws
from ..audio import SegmentStore
from ..config import Settings, get_settings
from ..emotions import EmotionStore
from ..ratelimit import TokenBucketLimiter
from ..session_service import SessionService, StepFunctionsStarter
from ..sessions import SessionRepository
from ..viewers import ViewerTokens
from .idempotency import IdempotentCreate
from .observability import MetricsObserver


@dataclass(frozen=True)
class Deps:
    settings: Settings
    service: SessionService
    limiter: TokenBucketLimiter
    idempotent_create: IdempotentCreate


_deps: Deps | None = None
_lock = threading.Lock()


def build(settings: Settings) -> Deps:
    dynamodb = aws.client("dynamodb")
    control = settings.require("control_table")
    starter = (
        StepFunctionsStarter(aws.client("stepfunctions"), settings.state_machine_arn)
        if settings.state_machine_arn
        else None
    )
    service = SessionService(
        SessionRepository(dynamodb, settings.sessions_table, control),
        EmotionStore(dynamodb, settings.emotions_table),
        settings,
        starter=starter,
        observer=MetricsObserver(),
        viewers=ViewerTokens(dynamodb, control, settings.sessions_table),
        segments=SegmentStore(dynamodb, settings.emotions_table),
    )
    return Deps(
        settings=settings,
        service=service,
        limiter=TokenBucketLimiter(
            dynamodb, control, settings.rate_limit_capacity, settings.rate_limit_window_seconds
        ),
        idempotent_create=IdempotentCreate(
            service, dynamodb, settings.require("idempotency_table"), settings.idempotency_ttl_seconds
        ),
    )


def get() -> Deps:
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                _deps = build(get_settings())
    return _deps


def reset() -> None:
    """Forget settings, clients and collaborators (tests that switch tables or endpoints)."""
    global _deps
    with _lock:
        _deps = None
    get_settings.cache_clear()
    aws.reset_clients()
    auth.reset_default_store()
