"""Session lifecycle events on the service's EventBridge bus: the one definition of their shapes.

Every event has source :data:`EVENT_SOURCE` (``emotion-stream``), a detail-type of :class:`SessionEventType` and
a detail whose shape :data:`DETAIL_MODELS` defines per detail-type (pydantic models, ``extra="forbid"``; their
JSON Schema is :func:`detail_schema`, documented for integrators in the README, "Events for integrators"):

- ``SessionStarted`` (the worker, on the first ``working``): ``{sessionId, user, state: "active", stopReason: null}``;
- ``SessionFinished`` / ``SessionFailed`` (the state machine, ``statemachine/session.asl.json``, from the re-read
  item; the sweeper for sessions it ends when no execution is left to do it): ``{sessionId, user, state,
  stopReason}`` with the end state and a reason that ends in it;
- ``SessionDegraded`` / ``SessionRecovered`` (the worker, at most one a minute, when its analysis falls behind the
  stream and catches up again): the ``SessionStarted`` fields plus ``analysesPerSecond``,
  ``targetAnalysesPerSecond``, ``lagSeconds``, ``lagP95Seconds``.

Every publisher in Python goes through :class:`EventPublisher`, which refuses a detail that does not match its
model; the state machine builds the same detail (a unit test compares its fields with the model).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .session_models import SessionState, StopReason

logger = logging.getLogger(__name__)

EVENT_SOURCE: Final = "emotion-stream"


class SessionEventType(StrEnum):
    STARTED = "SessionStarted"
    FINISHED = "SessionFinished"
    FAILED = "SessionFailed"
    # the worker cannot keep up with the stream (fewer analyses per second than asked, lag, frames skipped) /
    # keeps up again
    DEGRADED = "SessionDegraded"
    RECOVERED = "SessionRecovered"

    @classmethod
    def for_end_state(cls, state: str) -> SessionEventType:
        """The event announcing a session that ended in ``state``."""
        if state == SessionState.FINISHED.value:
            return cls.FINISHED
        if state == SessionState.FAILED.value:
            return cls.FAILED
        raise ValueError(f"a session in state {state!r} has not ended")


class EventPublishError(RuntimeError):
    """EventBridge rejected the event (``FailedEntryCount`` > 0)."""


class InvalidEvent(ValueError):
    """An event (or a detail) that does not match the shape of its detail-type."""


# ------------------------------------------------------------------------------------------ detail shapes
class _Detail(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sessionId: str = Field(min_length=1, description="The session's id")
    user: str = Field(min_length=1, description="The user who owns the session")


class SessionActiveDetail(_Detail):
    """``SessionStarted``: the worker analyses the stream."""

    state: Literal[SessionState.ACTIVE] = Field(description="Always `active`")
    stopReason: None = Field(description="Always null: the session has not ended")


class SessionFinishedDetail(_Detail):
    """``SessionFinished``: the session ended normally."""

    state: Literal[SessionState.FINISHED]
    stopReason: Literal[
        StopReason.USER_REQUEST, StopReason.STREAM_ENDED, StopReason.MAX_DURATION, StopReason.RESOLUTION_EXCEEDED
    ] = Field(description="Why it ended")


class SessionFailedDetail(_Detail):
    """``SessionFailed``: the session ended in failure."""

    state: Literal[SessionState.FAILED]
    stopReason: Literal[StopReason.STREAM_UNREACHABLE, StopReason.WORKER_LOST, StopReason.WORKER_ERROR] = Field(
        description="Why it failed"
    )


class SessionLoadDetail(SessionActiveDetail):
    """``SessionDegraded`` / ``SessionRecovered``: the worker's load over the last seconds."""

    analysesPerSecond: float = Field(ge=0, description="Frames analysed per second")
    targetAnalysesPerSecond: float | None = Field(
        ge=0, description="Analyses per second asked for (null: every frame, the stream's rate is not known yet)"
    )
    lagSeconds: float = Field(ge=0, description="How far the analysis is behind the live stream now")
    lagP95Seconds: float = Field(ge=0, description="95th percentile of that lag")


DETAIL_MODELS: Final[Mapping[SessionEventType, type[_Detail]]] = {
    SessionEventType.STARTED: SessionActiveDetail,
    SessionEventType.FINISHED: SessionFinishedDetail,
    SessionEventType.FAILED: SessionFailedDetail,
    SessionEventType.DEGRADED: SessionLoadDetail,
    SessionEventType.RECOVERED: SessionLoadDetail,
}


def detail_schema(event_type: SessionEventType) -> dict[str, Any]:
    """The JSON Schema of a detail-type's detail."""
    return DETAIL_MODELS[event_type].model_json_schema()


def validate_detail(event_type: SessionEventType, detail: Mapping[str, Any]) -> dict[str, Any]:
    """``detail`` as JSON data, checked against its detail-type's model; raises :class:`InvalidEvent`."""
    try:
        model = DETAIL_MODELS[event_type].model_validate(dict(detail))
    except ValidationError as exc:
        raise InvalidEvent(f"{event_type.value} detail does not match its shape: {exc}") from None
    return model.model_dump(mode="json")


def validate_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """An event as EventBridge delivers it (``source``, ``detail-type``, ``detail``, …) checked against the
    contract; returns its detail. Raises :class:`InvalidEvent`."""
    if event.get("source") != EVENT_SOURCE:
        raise InvalidEvent(f"source {event.get('source')!r} is not {EVENT_SOURCE!r}")
    try:
        event_type = SessionEventType(str(event.get("detail-type")))
    except ValueError:
        raise InvalidEvent(f"unknown detail-type {event.get('detail-type')!r}") from None
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidEvent(f"{event_type.value} has no detail object")
    return validate_detail(event_type, detail)


# ------------------------------------------------------------------------------------------ details
def session_event_detail(session_id: str, user: str, state: str, stop_reason: str | None) -> dict[str, Any]:
    return {"sessionId": session_id, "user": user, "state": state, "stopReason": stop_reason}


def detail_from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """The event detail for a session item (as :class:`~emotion_shared.sessions.SessionRepository` returns it)."""
    meta = item.get("meta") or {}
    return session_event_detail(str(item["id"]), str(item["user"]), str(item["state"]), meta.get("stopReason"))


class EventPublisher:
    """Publishes session events to one bus through an EventBridge client (``aws.client("events")``)."""

    def __init__(self, client: Any, bus_name: str) -> None:
        self._client = client
        self._bus = bus_name

    def publish(
        self, event_type: SessionEventType, detail: Mapping[str, Any], *, resources: Sequence[str] = ()
    ) -> None:
        """Publish one event; a detail that does not match its detail-type raises :class:`InvalidEvent` (nothing
        is sent), a rejected entry :class:`EventPublishError`."""
        checked = validate_detail(event_type, detail)
        entry: dict[str, Any] = {
            "EventBusName": self._bus,
            "Source": EVENT_SOURCE,
            "DetailType": event_type.value,
            "Detail": json.dumps(checked, separators=(",", ":")),
        }
        if resources:
            entry["Resources"] = list(resources)
        response = self._client.put_events(Entries=[entry])
        if response.get("FailedEntryCount", 0):
            raise EventPublishError(f"{event_type} for {checked['sessionId']} rejected: {response.get('Entries')}")
        logger.info("published %s for %s", event_type, checked["sessionId"])

    def publish_end(self, item: Mapping[str, Any], *, resources: Sequence[str] = ()) -> None:
        """``SessionFinished`` or ``SessionFailed`` for an ended session item, with its real state and reason."""
        self.publish(SessionEventType.for_end_state(str(item["state"])), detail_from_item(item), resources=resources)
