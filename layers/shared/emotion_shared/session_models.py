"""Enumerations, API request models and the public session view."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import SCHEMA_VERSION
from .clock import iso_ms, parse_iso
from .uri import validate_stream_uri

SESSION_TYPE: Final = "live_analysis"
MAX_NAME = 256
# Upper bound for timeline offsets (seconds from the session start): far beyond any session, small enough
# for DynamoDB number keys.
MAX_OFFSET_SECONDS = 1_000_000_000


def _utf8(field: str, value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field} must be valid Unicode text (no unpaired surrogates)") from None
    return value


class SessionState(StrEnum):
    ACTIVE = "active"
    FINISHED = "finished"
    FAILED = "failed"


class WorkerState(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    CONNECTING = "connecting"
    WORKING = "working"
    RECONNECTING = "reconnecting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


class StopReason(StrEnum):
    USER_REQUEST = "user_request"
    STREAM_ENDED = "stream_ended"
    MAX_DURATION = "max_duration"
    RESOLUTION_EXCEEDED = "resolution_exceeded"
    STREAM_UNREACHABLE = "stream_unreachable"
    WORKER_LOST = "worker_lost"
    WORKER_ERROR = "worker_error"

    @property
    def final_state(self) -> SessionState:
        """The session state a stop for this reason ends in."""
        if self in _FAILED_REASONS:
            return SessionState.FAILED
        return SessionState.FINISHED


_FAILED_REASONS = {StopReason.STREAM_UNREACHABLE, StopReason.WORKER_LOST, StopReason.WORKER_ERROR}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class SessionConfigIn(_Strict):
    removeMedia: bool = True
    # At least one analysis every 10 s ("> 0" let 5e-324 through, which DynamoDB cannot store: a 500).
    analysisFps: float = Field(
        default=5.0, ge=0.1, le=60, description="Analyses per second (≥ stream fps: every frame)"
    )
    audioAnalysis: bool = Field(
        default=True,
        strict=True,
        description="Transcribe the stream's audio track and score its sentiment (when it has one)",
    )


class CreateSessionRequest(_Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    streamUri: str = Field(min_length=1, max_length=2048)
    type: Literal["live_analysis"] = SESSION_TYPE
    config: SessionConfigIn = Field(default_factory=SessionConfigIn)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be blank")
        return _utf8("name", value)

    @field_validator("streamUri")
    @classmethod
    def _uri(cls, value: str) -> str:
        _utf8("streamUri", value)
        validate_stream_uri(value)
        return value


class ListSessionsQuery(_Strict):
    state: SessionState | None = None
    type: Literal["live_analysis"] | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    limit: int = Field(default=10, ge=1, le=100)
    offset: int = Field(default=0, ge=0)


# Viewer tokens: lifetime bounds (seconds) of ``expiresIn``.
VIEWER_TOKEN_MIN_SECONDS = 60
VIEWER_TOKEN_MAX_SECONDS = 30 * 86_400
VIEWER_TOKEN_DEFAULT_SECONDS = 86_400


class CreateViewerTokensRequest(_Strict):
    count: int = Field(default=1, ge=1, le=10, strict=True)
    expiresIn: int = Field(
        default=VIEWER_TOKEN_DEFAULT_SECONDS, ge=VIEWER_TOKEN_MIN_SECONDS, le=VIEWER_TOKEN_MAX_SECONDS, strict=True
    )


class TimelineQuery(_Strict):
    granularity: int = Field(default=60, ge=5, le=3600)
    start: int | None = Field(default=None, ge=0, le=MAX_OFFSET_SECONDS)
    end: int | None = Field(default=None, ge=0, le=MAX_OFFSET_SECONDS)

    @model_validator(mode="after")
    def _ordered(self) -> TimelineQuery:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("start must not be greater than end")
        return self


class TranscriptQuery(_Strict):
    start: int | None = Field(default=None, ge=0, le=MAX_OFFSET_SECONDS)
    end: int | None = Field(default=None, ge=0, le=MAX_OFFSET_SECONDS)

    @model_validator(mode="after")
    def _ordered(self) -> TranscriptQuery:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("start must not be greater than end")
        return self


def ended_at_ms(item: dict[str, Any]) -> int | None:
    """When the session ended: ``endedAtMs``, or ``endedAt`` (the state machine writes only the ISO form)."""
    if item.get("endedAtMs") is not None:
        return int(item["endedAtMs"])
    if item.get("endedAt"):
        try:
            return int(parse_iso(str(item["endedAt"])).timestamp() * 1000)
        except ValueError:
            return None
    return None


def duration_seconds(item: dict[str, Any], now_ms: int) -> int:
    """Live while active; fixed once ended."""
    end_ms = ended_at_ms(item)
    if end_ms is None:
        end_ms = now_ms
    return max(0, (end_ms - int(item["createdAtMs"])) // 1000)


def session_view(item: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The public session object (reference schema version 3). Never includes the stream URI."""
    meta_in = item.get("meta") or {}
    meta: dict[str, Any] = {
        "expires": meta_in.get("expires"),
        "healthCheck": meta_in.get("healthCheck"),
        "workerState": meta_in.get("workerState", WorkerState.PENDING.value),
    }
    for optional in ("stopReason", "error", "stats", "degraded"):
        if meta_in.get(optional) is not None:
            meta[optional] = meta_in[optional]
    config = item.get("config") or {}
    return {
        "_id": item["id"],
        "name": item["name"],
        "type": item.get("type", SESSION_TYPE),
        "state": item["state"],
        "timestamp": item.get("createdAt") or iso_ms(int(item["createdAtMs"])),
        "duration": duration_seconds(item, now_ms),
        "config": {
            "removeMedia": bool(config.get("removeMedia", True)),
            "analysisFps": float(config.get("analysisFps", 5.0)),
            "audioAnalysis": bool(config.get("audioAnalysis", True)),
        },
        "sources": item.get("sources") or [],
        "meta": meta,
        "product": item.get("product"),
        "user": item["user"],
        "version": SCHEMA_VERSION,
    }
