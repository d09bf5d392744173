"""Settings of the WebSocket API (environment variables, validated at cold start).

The table names and the management endpoint come from :class:`emotion_shared.config.Settings`
(``CONNECTIONS_TABLE``, ``WEBSOCKET_MANAGEMENT_ENDPOINT``); the limits below default to the reference API's.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..config import EnvSettings


class WsSettings(EnvSettings):
    label: ClassVar[str] = "WebSocket configuration"

    idle_seconds: int = Field(default=65, alias="WS_IDLE_SECONDS", ge=1)
    max_subscriptions_per_connection: int = Field(default=5, alias="WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", ge=1)
    max_subscriptions_per_user: int = Field(default=10, alias="WS_MAX_SUBSCRIPTIONS_PER_USER", ge=1)
    message_limit: int = Field(default=80, alias="WS_MESSAGE_LIMIT", ge=1)
    message_window_seconds: int = Field(default=60, alias="WS_MESSAGE_WINDOW_SECONDS", ge=1)
    connect_limit: int = Field(default=90, alias="WS_CONNECT_LIMIT", ge=1)
    connect_window_seconds: int = Field(default=60, alias="WS_CONNECT_WINDOW_SECONDS", ge=1)
    # Connection items expire after this (API Gateway closes every connection after 2 hours anyway).
    connection_ttl_seconds: int = Field(default=3 * 3600, alias="WS_CONNECTION_TTL_SECONDS", ge=60)
    # Concurrent pushes of one publisher invocation.
    push_concurrency: int = Field(default=16, alias="WS_PUSH_CONCURRENCY", ge=1, le=64)
