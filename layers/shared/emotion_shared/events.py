"""Session lifecycle events on the service's EventBridge bus.

Every event has source ``emotion-stream``, a detail-type of :class:`SessionEventType` and the detail
``{"sessionId", "user", "state", "stopReason"}`` (``stopReason`` is ``null`` while the session is active).
The state machine publishes ``SessionFinished`` / ``SessionFailed`` with the same shape
(``statemachine/session.asl.json``); the worker publishes ``SessionStarted``, and ``SessionDegraded`` /
``SessionRecovered`` (at most one a minute, with the load figures added to the detail) when its analysis falls
behind the stream and catches up again; the sweeper publishes ``SessionFailed`` for sessions it ends when no
execution is left to do it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from .models import SessionState

logger = logging.getLogger(__name__)

EVENT_SOURCE = "emotion-stream"


class SessionEventType(StrEnum):
    STARTED = "SessionStarted"
    FINISHED = "SessionFinished"
    FAILED = "SessionFailed"
    # the worker cannot keep up with the stream (fewer analyses per second than asked, lag, frames skipped) /
    # keeps up again; the detail adds analysesPerSecond, targetAnalysesPerSecond, lagSeconds, lagP95Seconds
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
        entry: dict[str, Any] = {
            "EventBusName": self._bus,
            "Source": EVENT_SOURCE,
            "DetailType": event_type.value,
            "Detail": json.dumps(dict(detail), separators=(",", ":")),
        }
        if resources:
            entry["Resources"] = list(resources)
        response = self._client.put_events(Entries=[entry])
        if response.get("FailedEntryCount", 0):
            raise EventPublishError(f"{event_type} for {detail.get('sessionId')} rejected: {response.get('Entries')}")
        logger.info("published %s for %s", event_type, detail.get("sessionId"))

    def publish_end(self, item: Mapping[str, Any], *, resources: Sequence[str] = ()) -> None:
        """``SessionFinished`` or ``SessionFailed`` for an ended session item, with its real state and reason."""
        self.publish(SessionEventType.for_end_state(str(item["state"])), detail_from_item(item), resources=resources)
