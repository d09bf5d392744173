"""The REST API function's composition root: its collaborators, built once per cold start from the validated
settings (never per request). Routes reach them through :func:`get`; tests inject their own with
``runtime.override(build(settings))``."""

from __future__ import annotations

from dataclasses import dataclass

from .. import aws
from ..audio import SegmentStore
from ..composition import CompositionRoot
from ..config import Settings
from ..emotions import EmotionStore
from ..ratelimit import TokenBucketLimiter
from ..session_service import SessionService, StepFunctionsStarter
from ..sessions import SessionRepository
from ..viewers import ViewerTokens
from .idempotency import IdempotentCreate
from .observability import MetricsObserver


@dataclass(frozen=True)
class ApiRuntime:
    settings: Settings
    service: SessionService
    limiter: TokenBucketLimiter
    idempotent_create: IdempotentCreate


def build(settings: Settings) -> ApiRuntime:
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
    return ApiRuntime(
        settings=settings,
        service=service,
        limiter=TokenBucketLimiter(
            dynamodb, control, settings.rate_limit_capacity, settings.rate_limit_window_seconds
        ),
        idempotent_create=IdempotentCreate(
            service, dynamodb, settings.require("idempotency_table"), settings.idempotency_ttl_seconds
        ),
    )


runtime: CompositionRoot[ApiRuntime] = CompositionRoot("REST API", lambda: build(Settings.from_env()))


def get() -> ApiRuntime:
    """The REST API's collaborators (built at the first request of this execution environment)."""
    return runtime.get()
