"""The WebSocket API's routes: ``$connect``, ``$disconnect``, ``$default`` (every client message), and the
idle sweeper. Nothing here knows whether it runs in AWS or on the local gateway.

Every reply goes out through the management API (not as an integration response), so that a
``channels:subscribe`` reply is always sent before the subscription's first ``sws`` event, and a last error
reply before a close.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import access
from ..auth import Principal, hash_token
from ..clock import now_ms
from ..errors import DomainError, ErrorCode, NotFound
from ..ratelimit import RateDecision
from ..session_models import WorkerState
from . import protocol
from .config import WsSettings
from .protocol import AUTH, PATHS, PING, SUBSCRIBE, UNSUBSCRIBE, Channel, ProtocolViolation, Request
from .push import Outcome, Pusher
from .store import Connection, ConnectionGone, ConnectionStore, SubscriptionLimit

logger = logging.getLogger(__name__)

CONNECT = "$connect"
DISCONNECT = "$disconnect"


class TokenLookup(Protocol):
    def lookup_hash(self, token_hash: str) -> Principal | None: ...


class Limiter(Protocol):
    def consume(self, user: str) -> RateDecision: ...


class SessionReader(Protocol):
    def get_owned(self, session_id: str, user: str) -> dict[str, Any]: ...


# Keys of the WebSocket limits in the shared token-bucket limiter (``ratelimit#<key>`` in the control
# table). ``#`` never occurs in user names, so they cannot collide with the REST API's buckets.
def message_bucket(user: str) -> str:
    return f"ws-messages#{user}"


def connect_bucket(ip: str) -> str:
    return f"ws-connects#{ip}"


def worker_state_of(session: Mapping[str, Any]) -> str:
    return str((session.get("meta") or {}).get("workerState") or WorkerState.PENDING.value)


@dataclass
class WebSocketService:
    store: ConnectionStore
    sessions: SessionReader
    tokens: TokenLookup
    message_limiter: Limiter
    connect_limiter: Limiter
    pusher: Pusher
    settings: WsSettings
    clock: Callable[[], int] = now_ms
    new_subscription_id: Callable[[], str] = lambda: secrets.token_hex(8)

    # ------------------------------------------------------------------ entry point
    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """An API Gateway WebSocket event → the integration response."""
        context = event.get("requestContext") or {}
        route = context.get("routeKey")
        connection_id = str(context.get("connectionId", ""))
        if not connection_id:
            raise ValueError("not an API Gateway WebSocket event: requestContext.connectionId is missing")
        if route == CONNECT:
            ip = str((context.get("identity") or {}).get("sourceIp") or "unknown")
            return self.connect(connection_id, ip)
        if route == DISCONNECT:
            self.store.remove(connection_id)
            return {"statusCode": 200}
        body = event.get("body")
        if body is not None and event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(body).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                body = "\x00"  # not text: a protocol violation below
        self.message(connection_id, body)
        return {"statusCode": 200}

    # ------------------------------------------------------------------ $connect
    def connect(self, connection_id: str, ip: str) -> dict[str, Any]:
        decision = self.connect_limiter.consume(connect_bucket(ip))
        if not decision.allowed:
            message = (
                f"too many new connections from {ip}: at most {self.settings.connect_limit} per "
                f"{self.settings.connect_window_seconds} s; retry in {decision.retry_after} s"
            )
            logger.info("rejected connection from %s: %s", ip, message)
            return {
                "statusCode": 429,
                "headers": {"Content-Type": "application/json", "Retry-After": str(decision.retry_after)},
                "body": protocol.dumps(protocol.error_body(429, message, ErrorCode.RATE_LIMITED,
                                                           retryAfter=decision.retry_after)),
            }
        self.store.open(connection_id, ip, self.clock())
        return {"statusCode": 200}

    # ------------------------------------------------------------------ $default
    def _send(self, connection_id: str, payload: str) -> None:
        if self.pusher.send(connection_id, payload) is Outcome.GONE:
            logger.info("client %s left before its reply was sent", connection_id)

    def _close(self, connection_id: str) -> None:
        if not self.pusher.close(connection_id):
            self.store.remove(connection_id)

    def _reject(self, connection_id: str, request_id: Any, path: str | None, status: int, message: str,
                code: ErrorCode) -> None:
        """A last reply that says why, then close."""
        self._send(connection_id, protocol.error_reply(request_id, path, status, message, code))
        self._close(connection_id)

    def message(self, connection_id: str, raw: str | None) -> None:
        try:
            request = protocol.parse_request(raw)
        except ProtocolViolation as violation:
            logger.info("closing %s: %s", connection_id, violation.message)
            self._reject(connection_id, violation.request_id, violation.path, 400, violation.message,
                         ErrorCode.PROTOCOL_ERROR)
            return
        try:
            self._handle(connection_id, request)
        except Exception:  # a dependency failed: say so rather than drop the message silently
            logger.exception("%s on %s failed", request.path, connection_id)
            self._send(connection_id, protocol.error_reply(request.id, request.path, 500,
                                                           "internal error; retry the request",
                                                           ErrorCode.INTERNAL_ERROR))

    def _handle(self, connection_id: str, request: Request) -> None:
        connection = self.store.touch(connection_id, self.clock())
        if connection is None:  # swept or never opened
            self._close(connection_id)
            return
        if not connection.authenticated:
            self._authenticate(connection, request)
            return
        # The token is checked again on every message (through the token store's short cache): a revoked or
        # expired token stops working on connections it opened, not only on new ones.
        principal = self.tokens.lookup_hash(connection.token_hash) if connection.token_hash else None
        if principal is None:
            self._reject(connection_id, request.id, request.path, 401,
                         "this connection's token was revoked or has expired; connect again with a valid token",
                         ErrorCode.UNAUTHORIZED)
            return
        try:
            self._authenticated_message(connection, principal, request)
        except DomainError as err:
            self._send(connection_id, protocol.error_reply(request.id, request.path, err.status, err.message,
                                                           err.code))
        except ConnectionGone:
            self._close(connection_id)

    def _authenticate(self, connection: Connection, request: Request) -> None:
        if request.path != AUTH:
            self._reject(connection.id, request.id, request.path, 401,
                         'not authenticated: the first message must be {"path": "auth:token", "body": {"token": …}}',
                         ErrorCode.UNAUTHORIZED)
            return
        token = (request.body or {}).get("token")
        token_hash = hash_token(token) if isinstance(token, str) and 0 < len(token) <= 256 else None
        principal = self.tokens.lookup_hash(token_hash) if token_hash else None
        if principal is None or token_hash is None:
            self._reject(connection.id, request.id, AUTH, 401, "unknown, revoked or expired token: auth:token"
                         " needs body {token} with a valid API token (emotionctl token create --user NAME)",
                         ErrorCode.UNAUTHORIZED)
            return
        try:
            self.store.authenticate(connection.id, principal.limit_subject, principal.product, self.clock(),
                                    token_hash)
        except ConnectionGone:
            self._close(connection.id)
            return
        self._send(connection.id, protocol.reply(request.id, AUTH, 200))

    def _authenticated_message(self, connection: Connection, principal: Principal, request: Request) -> None:
        assert connection.user is not None
        decision = self.message_limiter.consume(message_bucket(connection.user))
        if not decision.allowed:
            message = (
                f"too many messages: at most {self.settings.message_limit} per "
                f"{self.settings.message_window_seconds} s per user; retry in {decision.retry_after} s"
            )
            self._send(connection.id, protocol.error_reply(request.id, request.path, 429, message,
                                                           ErrorCode.RATE_LIMITED, retryAfter=decision.retry_after))
            return
        if request.path == PING:
            self._send(connection.id, protocol.reply(request.id, PING, 200, {"ts": self.clock()}))
        elif request.path == SUBSCRIBE:
            self._subscribe(connection, principal, request)
        elif request.path == UNSUBSCRIBE:
            subscription_id = protocol.parse_subscription_id(request.body)
            if not self.store.unsubscribe(connection, subscription_id):
                raise NotFound(f"no subscription {subscription_id} on this connection",
                               code=ErrorCode.SUBSCRIPTION_NOT_FOUND)
            self._send(connection.id, protocol.reply(request.id, UNSUBSCRIBE, 200,
                                                     {"subscriptionId": subscription_id}))
        elif request.path == AUTH:
            self._send(connection.id, protocol.error_reply(request.id, AUTH, 400,
                                                           "already authenticated on this connection",
                                                           ErrorCode.ALREADY_AUTHENTICATED))
        else:
            raise NotFound(f"unknown path {request.path!r}: one of {', '.join(PATHS)}", code=ErrorCode.UNKNOWN_PATH)

    def _subscribe(self, connection: Connection, principal: Principal, request: Request) -> None:
        assert connection.user is not None
        target = protocol.parse_target(request.body)
        access.check(principal, access.Operation.READ, target.session_id)  # a viewer: its own session only
        session = self.sessions.get_owned(target.session_id, principal.user)  # 404 if missing or not yours
        existing = connection.find(target.channel.value, target.key)
        if existing is not None:
            subscription_id = existing.id  # subscribing twice to the same channel and key is idempotent
        else:
            subscription_id = self.new_subscription_id()
            try:
                self.store.subscribe(
                    connection,
                    target,
                    subscription_id,
                    origin_ms=int(session.get("createdAtMs", 0)),
                    now_ms=self.clock(),
                    max_per_connection=self.settings.max_subscriptions_per_connection,
                    max_per_user=self.settings.max_subscriptions_per_user,
                )
            except SubscriptionLimit as limit:
                self._send(connection.id, protocol.error_reply(request.id, SUBSCRIBE, 429, limit.message,
                                                               ErrorCode.SUBSCRIPTION_LIMIT))
                return
        self._send(connection.id, protocol.reply(request.id, SUBSCRIBE, 200, {"subscriptionId": subscription_id}))
        if target.channel is Channel.WORKER_STATE:
            # The last known state at once, read after the subscription was stored: every later change is
            # the publisher's to send.
            current = self.sessions.get_owned(target.session_id, principal.user)
            self._send(connection.id, protocol.event(subscription_id, self.clock(), target.channel.event_type,
                                                     worker_state_of(current)))

    # ------------------------------------------------------------------ idle sweeper
    def sweep_once(self) -> int:
        """Close every connection idle for longer than ``WS_IDLE_SECONDS``. Returns how many."""
        cutoff = self.clock() - self.settings.idle_seconds * 1000
        closed = 0
        for connection_id in self.store.idle_candidates(cutoff):
            current = self.store.get(connection_id)  # the index lags: re-read before closing
            if current is None or current.last_seen_ms >= cutoff:
                continue
            logger.info("closing %s: idle for more than %d s", connection_id, self.settings.idle_seconds)
            self._close(connection_id)
            closed += 1
        return closed

    def sweep(self, passes: int = 1, period_seconds: float = 60.0,
              sleep: Callable[[float], None] = time.sleep) -> int:
        """``passes`` sweeps spread evenly over ``period_seconds`` (one scheduled invocation a minute with 4
        passes closes an idle connection within idle_seconds + 15 s)."""
        closed = 0
        for i in range(passes):
            if i:
                sleep(period_seconds / passes)
            closed += self.sweep_once()
        return closed
