"""Process-wide wiring of the WebSocket service and the publisher (built once, at the first invocation).

Clients come from :mod:`emotion_shared.aws`; the management API client is pointed explicitly at
``WEBSOCKET_MANAGEMENT_ENDPOINT``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import aws
from ..auth import TokenStore
from ..config import get_settings
from ..emotions import EmotionStore
from ..ratelimit import TokenBucketLimiter
from ..sessions import SessionRepository
from .config import get_ws_settings
from .publisher import Publisher
from .push import Pusher
from .store import ConnectionStore
from .websocket_service import WebSocketService

_lock = threading.Lock()
_service: WebSocketService | None = None
_publisher: Publisher | None = None



def management_client() -> Any:
    endpoint = get_settings().require("websocket_endpoint")
    return aws.client("apigatewaymanagementapi", endpoint_url=endpoint)


def _store() -> ConnectionStore:
    settings = get_settings()
    return ConnectionStore(aws.client("dynamodb"), settings.require("connections_table"),
                           ttl_seconds=get_ws_settings().connection_ttl_seconds)


def service() -> WebSocketService:
    global _service
    with _lock:
        if _service is None:
            settings = get_settings()
            ws = get_ws_settings()
            db = aws.client("dynamodb")
            control = settings.require("control_table")
            _service = WebSocketService(
                store=_store(),
                sessions=SessionRepository(db, settings.sessions_table),
                # Tokens are checked on every message; the in-process cache (TOKEN_CACHE_SECONDS, at most the
                # authorizer cache TTL) bounds how long a revoked token keeps working on an open connection.
                tokens=TokenStore(db, control, cache_seconds=settings.token_cache_seconds),
                message_limiter=TokenBucketLimiter(db, control, ws.message_limit, ws.message_window_seconds),
                connect_limiter=TokenBucketLimiter(db, control, ws.connect_limit, ws.connect_window_seconds),
                pusher=Pusher(management_client()),
                settings=ws,
            )
        return _service


def publisher() -> Publisher:
    global _publisher
    with _lock:
        if _publisher is None:
            settings = get_settings()
            db = aws.client("dynamodb")
            _publisher = Publisher(
                _store(),
                EmotionStore(db, settings.emotions_table),
                Pusher(management_client()),
                sessions_table=settings.sessions_table,
                emotions_table=settings.emotions_table,
                pool=ThreadPoolExecutor(max_workers=get_ws_settings().push_concurrency,
                                        thread_name_prefix="push"),
            )
        return _publisher


def reset() -> None:
    """Forget the wiring and cached settings/clients (tests and the local stack after a table change)."""
    global _service, _publisher
    with _lock:
        _service = None
        if _publisher is not None:
            _publisher.close()
        _publisher = None
    get_settings.cache_clear()
    get_ws_settings.cache_clear()
    aws.reset_clients()
