"""Business operations of the sessions API: create, list, get, stop, delete, emotions, timeline.

Inputs are validated request models and the caller's :class:`~emotion_shared.auth.Principal`; outputs are
the public JSON shapes. Failures are typed :mod:`emotion_shared.errors` exceptions (the REST layer maps
them to status codes in one place). Nothing here knows about API Gateway.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from . import audio, emotions
from .audio import SegmentStore
from .auth import Principal
from .clock import now_ms, parse_iso
from .config import Settings
from .dynamo import error_code
from .emotions import EmotionStore
from .errors import CapacityExceeded, ErrorCode, InvalidRequest, InvalidState, NotFound, ServiceUnavailable
from .ids import is_session_id
from .session_models import (
    CreateSessionRequest,
    CreateViewerTokensRequest,
    ListSessionsQuery,
    SessionState,
    StopReason,
    TimelineQuery,
    TranscriptQuery,
    WorkerState,
    session_view,
)
from .sessions import Limits, SessionRepository
from .uri import UnsafeStreamHost, check_stream_host, redact_uri
from .viewers import ViewerTokens

logger = logging.getLogger(__name__)


class ExecutionStarter(Protocol):
    """Starts the per-session workflow; returns its id (execution ARN). Raises on failure."""

    def start(self, session_id: str) -> str: ...


class SessionObserver(Protocol):
    """Notified of outcomes (metrics). ``rejected`` reasons: ``capacity``, ``start_failed``."""

    def created(self, session_id: str) -> None: ...

    def rejected(self, reason: str) -> None: ...

    def stopped(self, session_id: str) -> None: ...


class NullObserver:
    def created(self, session_id: str) -> None:
        return None

    def rejected(self, reason: str) -> None:
        return None

    def stopped(self, session_id: str) -> None:
        return None


class StepFunctionsStarter:
    """``StartExecution`` named after the session (a retried start of the same session is a no-op in AWS)."""

    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._sfn = client
        self._arn = state_machine_arn

    def start(self, session_id: str) -> str:
        response = self._sfn.start_execution(
            stateMachineArn=self._arn, name=session_id, input=json.dumps({"sessionId": session_id})
        )
        return str(response["executionArn"])


@dataclass(frozen=True)
class Created:
    session: dict[str, Any]
    execution_arn: str | None


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return f"{error_code(exc) or 'ClientError'}: {exc.response.get('Error', {}).get('Message', '')}".strip()
    return type(exc).__name__


# What docs/openapi.yaml declares for ``from``/``to``: an RFC 3339 ``full-date`` or ``date-time`` (section 5.6;
# ``T`` and ``Z`` in either case, any number of second fractions, a leap second's ``:60``), nothing else.
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})(?:[Tt](\d{2}:\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2}))?", re.ASCII
)


def _parse_bound(name: str, value: str | None, *, end_of_day: bool) -> int | None:
    """RFC 3339 date or date-time → epoch ms (UTC without an offset). A bare date as ``to`` means the end of
    that day."""
    if value is None:
        return None
    found = _RFC3339.fullmatch(value)
    try:
        if found is None:
            raise ValueError("not an RFC 3339 date or date-time")
        day, minutes, seconds, fraction, offset = found.groups()
        try:
            if minutes is None:
                moment = parse_iso(day)
                if end_of_day:
                    moment = datetime.combine(moment.date() + timedelta(days=1), time(), tzinfo=UTC)
                    moment -= timedelta(milliseconds=1)
            else:
                leap = seconds == "60"  # a leap second: its instant is the next second's
                moment = parse_iso(f"{day}T{minutes}:{'59' if leap else seconds}{fraction or ''}{offset.upper()}")
                moment += timedelta(seconds=1 if leap else 0)
        except OverflowError:  # an offset or the end of the day takes it past year 1 or 9999: the end of time
            moment = (datetime.max if day.startswith("9999") else datetime.min).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(
            f"query parameter '{name}' must be an ISO-8601 date or date-time as RFC 3339 writes them, e.g. "
            f"2024-04-01 or 2024-04-01T10:30:00.000Z (got {value[:40]!r})"
        ) from None
    return int(moment.timestamp() * 1000)


class SessionService:
    def __init__(
        self,
        repository: SessionRepository,
        store: EmotionStore,
        settings: Settings,
        *,
        starter: ExecutionStarter | None = None,
        clock: Callable[[], int] = now_ms,
        host_check: Callable[[str, bool], list[str]] = check_stream_host,
        observer: SessionObserver | None = None,
        viewers: ViewerTokens | None = None,
        segments: SegmentStore | None = None,
    ) -> None:
        self._viewers = viewers
        self._observer: SessionObserver = observer or NullObserver()
        self._segments = segments
        self._repo = repository
        self._store = store
        self._settings = settings
        self._starter = starter
        self._clock = clock
        self._host_check = host_check
        self._limits = Limits(
            max_active=settings.max_active_sessions,
            max_active_per_user=settings.max_active_sessions_per_user,
            retention_days=settings.data_retention_days,
        )

    # ------------------------------------------------------------------ helpers
    def _owned(self, principal: Principal, session_id: str) -> dict[str, Any]:
        if not is_session_id(session_id):
            raise NotFound(f"session {session_id[:64]!r} not found (ids are 24 lowercase hex characters)")
        return self._repo.get_owned(session_id, principal.user)

    # ------------------------------------------------------------------ operations
    def create(self, principal: Principal, request: CreateSessionRequest) -> Created:
        """Admit a session (capacity transaction) and start its workflow.

        Raises :class:`InvalidRequest` for an unsafe or unresolvable stream host, ``CapacityExceeded`` when
        full, :class:`ServiceUnavailable` when the workflow cannot be started (the session then ends
        ``failed``/``worker_error`` and its capacity is released).
        """
        try:
            self._host_check(request.streamUri, self._settings.allow_private_stream_hosts)
        except UnsafeStreamHost as exc:
            raise InvalidRequest(str(exc), code=ErrorCode.INVALID_STREAM_URI) from None
        now = self._clock()
        try:
            item = self._repo.create(
                user=principal.user,
                product=principal.product,
                name=request.name,
                stream_uri=request.streamUri,
                config=request.config.model_dump(),
                now_ms=now,
                limits=self._limits,
            )
        except CapacityExceeded:
            self._observer.rejected("capacity")
            raise
        session_id = item["id"]
        logger.info(
            "session created",
            extra={"sessionId": session_id, "user": principal.user, "stream": redact_uri(request.streamUri)},
        )
        execution_arn: str | None = None
        if self._starter is None:
            logger.warning("no state machine configured: session %s gets no worker", session_id)
        else:
            try:
                execution_arn = self._starter.start(session_id)
            except (ClientError, BotoCoreError) as exc:
                self._abort_start(session_id, exc)
                self._observer.rejected("start_failed")
                raise ServiceUnavailable(
                    "could not start an analysis worker for the session; it was marked failed, retry later",
                    code=ErrorCode.WORKER_START_FAILED,
                ) from exc
            item["executionArn"] = execution_arn
            try:
                self._repo.set_execution(session_id, execution_arn)
            except ClientError:
                logger.exception("could not record execution %s of session %s", execution_arn, session_id)
        self._observer.created(session_id)
        return Created(session=session_view(item, self._clock()), execution_arn=execution_arn)

    def _abort_start(self, session_id: str, exc: BaseException) -> None:
        logger.error("starting the workflow of session %s failed: %s", session_id, _failure_text(exc))
        now = self._clock()
        self._repo.end(
            session_id,
            StopReason.WORKER_ERROR,
            now,
            worker_state=WorkerState.ERROR,
            error=f"could not start the analysis workflow ({_failure_text(exc)})",
        )
        self._repo.release_capacity(session_id)

    def list(self, principal: Principal, query: ListSessionsQuery) -> dict[str, Any]:
        from_ms = _parse_bound("from", query.from_, end_of_day=False)
        to_ms = _parse_bound("to", query.to, end_of_day=True)
        if from_ms is not None and to_ms is not None and from_ms > to_ms:
            raise InvalidRequest("query parameter 'from' must not be later than 'to'")
        items, has_more = self._repo.list_for_user(
            principal.user,
            state=query.state.value if query.state else None,
            session_type=query.type,
            from_ms=from_ms,
            to_ms=to_ms,
            limit=query.limit,
            offset=query.offset,
        )
        now = self._clock()
        return {
            "hasMore": has_more,
            "offset": query.offset,
            "limit": query.limit,
            "data": [session_view(item, now) for item in items],
        }

    def get(self, principal: Principal, session_id: str) -> dict[str, Any]:
        return session_view(self._owned(principal, session_id), self._clock())

    def stop(self, principal: Principal, session_id: str) -> dict[str, Any]:
        """User stop: ``active`` → ``finished`` (``user_request``); 400 when the session is not active.

        Capacity is released by the session's workflow when the worker exits; with no workflow (no state
        machine configured, or it never started) it is released here.
        """
        if not is_session_id(session_id):
            self._owned(principal, session_id)  # raises NotFound
        # The repository reads the session (404 if missing or not the caller's) and ends it conditionally
        # (400 if it is not active).
        updated = self._repo.request_stop(session_id, principal.user, self._clock())
        if not updated.get("executionArn"):
            self._repo.release_capacity(session_id)
        self._observer.stopped(session_id)
        return session_view(updated, self._clock())

    def delete(self, principal: Principal, session_id: str) -> None:
        """Delete an ended session and all its emotion data; 400 while it is active."""
        item = self._owned(principal, session_id)
        if item["state"] == SessionState.ACTIVE.value:
            raise InvalidState(f"session {session_id} is active; stop it (POST …/stop) before deleting it",
                               code=ErrorCode.SESSION_ACTIVE)
        # Emotion data first: if anything fails the session is still there and the delete can be retried.
        self._store.delete_session(session_id)
        self._repo.delete(session_id, principal.user)
        # A worker that was stopping may have flushed its last buckets meanwhile.
        self._store.delete_session(session_id)
        # Viewer tokens die with their session (none can be minted now: minting checks the session exists).
        if self._viewers is not None:
            self._viewers.delete_all(session_id)

    # ------------------------------------------------------------------ viewer tokens
    def _require_viewers(self) -> ViewerTokens:
        if self._viewers is None:
            raise ServiceUnavailable("viewer tokens are not configured on this deployment")
        return self._viewers

    def create_viewer_tokens(
        self, principal: Principal, session_id: str, request: CreateViewerTokensRequest
    ) -> dict[str, Any]:
        """Mint ``count`` read-only tokens for the caller's session; the secrets are in this answer only."""
        item = self._owned(principal, session_id)
        tokens = self._require_viewers().mint(
            session_id, principal.user, str(item.get("product") or principal.product), request.count,
            request.expiresIn, self._clock(),
        )
        return {"session": session_id, "tokens": tokens}

    def list_viewer_tokens(self, principal: Principal, session_id: str) -> dict[str, Any]:
        self._owned(principal, session_id)
        return {"session": session_id, "data": self._require_viewers().live(session_id, self._clock())}

    def revoke_viewer_token(self, principal: Principal, session_id: str, token_id: str) -> None:
        self._owned(principal, session_id)
        self._require_viewers().revoke(session_id, token_id, self._clock())

    def emotions(self, principal: Principal, session_id: str) -> dict[str, Any]:
        self._owned(principal, session_id)
        return {"session": session_id, "emotions": emotions.totals(self._store.read(session_id))}

    def timeline(self, principal: Principal, session_id: str, query: TimelineQuery) -> dict[str, Any]:
        """Intervals ``[start + k·granularity, …)`` from ``start`` (default 0), clipped to ``end``."""
        self._owned(principal, session_id)
        start = query.start or 0
        buckets = self._store.read(session_id, start, query.end)
        return {
            "session": session_id,
            "timeline": emotions.timeline(buckets, query.granularity, start, query.end),
        }


    # ------------------------------------------------------------------ audio
    def _segment_store(self) -> SegmentStore:
        if self._segments is None:
            raise RuntimeError("SessionService was built without a SegmentStore")
        return self._segments

    def audio_timeline(self, principal: Principal, session_id: str, query: TimelineQuery) -> dict[str, Any]:
        """The speech sentiment per interval (``emotion_shared.audio.timeline``), same intervals as the emotions'."""
        self._owned(principal, session_id)
        start = query.start or 0
        segments = self._segment_store().read(session_id, start, query.end)
        return {"session": session_id, "timeline": audio.timeline(segments, query.granularity, start, query.end)}

    def transcript(self, principal: Principal, session_id: str, query: TranscriptQuery) -> dict[str, Any]:
        """The speech segments overlapping ``[start, end)``, with their text and sentiment, in order."""
        self._owned(principal, session_id)
        segments = self._segment_store().read(session_id, query.start, query.end)
        return {"session": session_id, "segments": [s.view() for s in segments]}


def is_transient(exc: BaseException) -> bool:
    """An AWS-side failure the caller may retry (→ 503), as opposed to a bug."""
    return isinstance(exc, BotoCoreError | ClientError) and not (
        isinstance(exc, ClientError) and error_code(exc) in {"ValidationException", "SerializationException"}
    )


__all__ = [
    "Created",
    "ExecutionStarter",
    "NullObserver",
    "SessionObserver",
    "SessionService",
    "StepFunctionsStarter",
    "is_transient",
]
