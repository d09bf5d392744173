"""Composition roots of the WebSocket functions: the WebSocket API (and its idle sweeper, a function of its
own on the same service) and the publisher. Built once per cold start from the validated settings.

Clients come from :mod:`emotion_shared.aws`; the management API client is pointed explicitly at
``WEBSOCKET_MANAGEMENT_ENDPOINT``. Tests pass their own ``management`` client to :func:`build_service` /
:func:`build_publisher` and install the result with ``service.override(...)`` / ``publisher.override(...)``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import aws
from ..auth import TokenStore
from ..composition import CompositionRoot
from ..config import Settings
from ..emotions import EmotionStore
from ..ratelimit import TokenBucketLimiter
from ..sessions import SessionRepository
from .config import WsSettings
from .publisher import Publisher
from .push import Pusher
from .store import ConnectionStore
from .websocket_service import WebSocketService


def management_client(settings: Settings) -> Any:
    return aws.client("apigatewaymanagementapi", endpoint_url=settings.require("websocket_endpoint"))


def _store(settings: Settings, ws: WsSettings) -> ConnectionStore:
    return ConnectionStore(aws.client("dynamodb"), settings.require("connections_table"),
                           ttl_seconds=ws.connection_ttl_seconds)


def build_service(settings: Settings, ws: WsSettings, *, management: Any = None) -> WebSocketService:
    db = aws.client("dynamodb")
    control = settings.require("control_table")
    return WebSocketService(
        store=_store(settings, ws),
        sessions=SessionRepository(db, settings.sessions_table),
        # Tokens are checked on every message; the in-process cache (TOKEN_CACHE_SECONDS, at most the
        # authorizer cache TTL) bounds how long a revoked token keeps working on an open connection.
        tokens=TokenStore(db, control, cache_seconds=settings.token_cache_seconds),
        message_limiter=TokenBucketLimiter(db, control, ws.message_limit, ws.message_window_seconds),
        connect_limiter=TokenBucketLimiter(db, control, ws.connect_limit, ws.connect_window_seconds),
        pusher=Pusher(management if management is not None else management_client(settings)),
        settings=ws,
    )


def build_publisher(settings: Settings, ws: WsSettings, *, management: Any = None) -> Publisher:
    db = aws.client("dynamodb")
    return Publisher(
        _store(settings, ws),
        EmotionStore(db, settings.emotions_table),
        Pusher(management if management is not None else management_client(settings)),
        sessions_table=settings.sessions_table,
        emotions_table=settings.emotions_table,
        pool=ThreadPoolExecutor(max_workers=ws.push_concurrency, thread_name_prefix="push"),
    )


service: CompositionRoot[WebSocketService] = CompositionRoot(
    "WebSocket API", lambda: build_service(Settings.from_env(), WsSettings.from_env())
)
publisher: CompositionRoot[Publisher] = CompositionRoot(
    "publisher", lambda: build_publisher(Settings.from_env(), WsSettings.from_env())
)
