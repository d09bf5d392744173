"""The WebSocket wire protocol: parsing client messages, building replies and channel events.

Pure functions, no AWS. Client messages are JSON objects ``{"id", "path", "body"}``; every reply echoes the
request's ``id`` and ``path`` with a ``status`` (HTTP semantics) and, when there is something to say, a
``body``. Channel events are JSON arrays ``[subscriptionId, eventTimestamp, type, [data]]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..errors import ErrorCode, InvalidRequest, NotFound
from ..ids import is_session_id

# API Gateway accepts frames up to 32 KB; no valid message of ours comes close.
MAX_MESSAGE_BYTES = 32 * 1024
MAX_ID_LENGTH = 128

AUTH = "auth:token"
PING = "ping"
SUBSCRIBE = "channels:subscribe"
UNSUBSCRIBE = "channels:unsubscribe"
PATHS = (AUTH, PING, SUBSCRIBE, UNSUBSCRIBE)

_ALLOWED_KEYS = frozenset({"id", "path", "body"})
_SUBSCRIPTION_ID_RE = re.compile(r"^[0-9a-f]{16}$")

# Period lengths of the emotion channels, in seconds.
FREQUENCIES: dict[str, int] = {"1s": 1, "3s": 3, "5s": 5, "10s": 10, "30s": 30, "1m": 60, "5m": 300, "10m": 600}


class ProtocolViolation(Exception):
    """The message breaks the framing rules (not JSON, not an object, bad ``id``/``path``/``body``): the
    connection is closed after a last reply that says why."""

    def __init__(self, message: str, request_id: Any = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.path = path


@dataclass(frozen=True)
class Request:
    id: int | str | None
    path: str
    body: dict[str, Any] | None


def parse_request(raw: str | bytes | None) -> Request:
    """A client message, or :class:`ProtocolViolation`.

    Rules: a JSON object of at most 32 KB with only the keys ``id``, ``path``, ``body``; ``path`` a non-empty
    string; ``id`` absent, null, an integer or a string of at most 128 characters; ``body`` absent, null or an
    object. An unknown ``path`` is *not* a violation (it gets a 404 reply).
    """
    if raw is None:
        raise ProtocolViolation("empty message: send a JSON object {id, path, body}")
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(f"message too large: at most {MAX_MESSAGE_BYTES} bytes")
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolViolation("message is not valid JSON: send a JSON object {id, path, body}") from None
    if not isinstance(message, dict):
        raise ProtocolViolation("message must be a JSON object {id, path, body}")
    request_id = message.get("id")
    if request_id is not None and (
        isinstance(request_id, bool)
        or not isinstance(request_id, int | str)
        or (isinstance(request_id, str) and len(request_id) > MAX_ID_LENGTH)
    ):
        raise ProtocolViolation(f"id must be an integer or a string of at most {MAX_ID_LENGTH} characters")
    path = message.get("path")
    if not isinstance(path, str) or not path:
        raise ProtocolViolation("path must be a non-empty string", request_id)
    extra = set(message) - _ALLOWED_KEYS
    if extra:
        raise ProtocolViolation(f"unknown key(s) {sorted(extra)}: a message has only id, path and body",
                                request_id, path)
    body = message.get("body")
    if body is not None and not isinstance(body, dict):
        raise ProtocolViolation("body must be a JSON object", request_id, path)
    return Request(id=request_id, path=path, body=body)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def reply(request_id: Any, path: str | None, status: int, body: dict[str, Any] | None = None) -> str:
    """``{"id", "path", "status"}`` plus ``body`` when given."""
    out: dict[str, Any] = {"id": request_id, "path": path, "status": status}
    if body is not None:
        out["body"] = body
    return dumps(out)


def error_body(status: int, message: str, code: ErrorCode, **extra: Any) -> dict[str, Any]:
    """The REST API's error body with its machine-readable ``code`` (plus e.g. ``retryAfter``)."""
    return {"error": True, "status": status, "message": message, "code": code.value, **extra}


def error_reply(request_id: Any, path: str | None, status: int, message: str, code: ErrorCode, **extra: Any) -> str:
    """An error reply; its body is the REST API's error body with ``code``."""
    return reply(request_id, path, status, error_body(status, message, code, **extra))


# ------------------------------------------------------------------ channels
class Channel(StrEnum):
    EMOTION_COUNTS = "session_emotions_counts"
    EMOTION_INTENSITIES = "session_emotions_intensities"
    WORKER_STATE = "session_worker_state"
    AUDIO_SENTIMENT = "session_audio_sentiment"

    @property
    def event_type(self) -> str:
        return _EVENT_TYPES[self]

    @property
    def periodic(self) -> bool:
        """The emotion channels: keyed ``sessionId:freq``, one event per period."""
        return self in (Channel.EMOTION_COUNTS, Channel.EMOTION_INTENSITIES)


_EVENT_TYPES = {
    Channel.EMOTION_COUNTS: "sec",
    Channel.EMOTION_INTENSITIES: "sei",
    Channel.WORKER_STATE: "sws",
    Channel.AUDIO_SENTIMENT: "sas",
}


@dataclass(frozen=True)
class Target:
    """What a subscription listens to: a channel on one session (and a period length for emotion channels)."""

    channel: Channel
    key: str
    session_id: str
    freq_seconds: int | None


def _frequency_list() -> str:
    return " ".join(FREQUENCIES)


def parse_target(body: dict[str, Any] | None) -> Target:
    """The target of ``channels:subscribe``. A bad body is :class:`InvalidRequest` (400); an unknown channel or
    a key that names no possible session/period is :class:`NotFound` (404). Whether the session exists and
    belongs to the caller is checked by the caller."""
    if body is None:
        raise InvalidRequest("body must be {channel, key}")
    extra = set(body) - {"channel", "key"}
    if extra:
        raise InvalidRequest(f"unknown field(s) {sorted(extra)}: body must be {{channel, key}}")
    channel_name, key = body.get("channel"), body.get("key")
    if not isinstance(channel_name, str) or not channel_name:
        raise InvalidRequest("channel must be a non-empty string")
    if not isinstance(key, str) or not key:
        raise InvalidRequest("key must be a non-empty string")
    try:
        channel = Channel(channel_name)
    except ValueError:
        raise NotFound(
            f"unknown channel {channel_name!r}: one of {', '.join(c.value for c in Channel)}",
            code=ErrorCode.UNKNOWN_CHANNEL,
        ) from None
    if not channel.periodic:
        if not is_session_id(key):
            raise NotFound(f"unknown key {key!r}: {channel.value} takes a session id")
        return Target(channel, key, key, None)
    session_id, sep, freq = key.partition(":")
    if not sep or not is_session_id(session_id):
        raise NotFound(f"unknown key {key!r}: {channel.value} takes sessionId:freq, e.g. <sessionId>:5s")
    if freq not in FREQUENCIES:
        raise NotFound(f"unknown frequency {freq!r} in key: one of {_frequency_list()}",
                       code=ErrorCode.UNKNOWN_CHANNEL)
    return Target(channel, key, session_id, FREQUENCIES[freq])


def parse_subscription_id(body: dict[str, Any] | None) -> str:
    """The ``subscriptionId`` of ``channels:unsubscribe`` (400 if missing or not one of ours)."""
    if body is None or set(body) != {"subscriptionId"}:
        raise InvalidRequest("body must be {subscriptionId}")
    value = body["subscriptionId"]
    if not isinstance(value, str) or not _SUBSCRIPTION_ID_RE.match(value):
        raise InvalidRequest("subscriptionId must be the string a channels:subscribe reply returned")
    return value


def event(
    subscription_id: str, timestamp_ms: int, event_type: str, data: Any, extra: dict[str, Any] | None = None
) -> str:
    """``[subscriptionId, eventTimestamp, type, [data]]``, plus a fifth element ``extra`` when given (the emotion
    channels' ``{"frames": {"received", "analysed"}}``: the reference's four elements stay where they were)."""
    message: list[Any] = [subscription_id, timestamp_ms, event_type, [data]]
    if extra is not None:
        message.append(extra)
    return dumps(message)
