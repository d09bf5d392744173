"""Configuration: environment variables validated once, at cold start.

A missing or malformed setting fails loudly when the function or worker starts, not at 3 a.m. Settings
that only some components need are optional here and demanded with :meth:`Settings.require`. Every
component's settings are an :class:`EnvSettings` read by ``from_env()`` in that component's composition root
(:mod:`emotion_shared.composition`), never cached here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Product (analysis tier) recorded on tokens minted without ``--product`` and on their sessions.
DEFAULT_PRODUCT = "standard"


class ConfigError(RuntimeError):
    pass


class EnvSettings(BaseModel):
    """Base of every component's settings: fields are read from environment variables (their aliases)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    label: ClassVar[str] = "configuration"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        source: dict[str, Any] = dict(os.environ if env is None else env)
        try:
            return cls.model_validate(source)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid {cls.label}: {problems}") from exc


class Settings(EnvSettings):
    """The settings every function shares (the template's ``Globals``)."""

    sessions_table: str = Field(alias="SESSIONS_TABLE", min_length=1)
    emotions_table: str = Field(alias="EMOTIONS_TABLE", min_length=1)
    control_table: str | None = Field(default=None, alias="CONTROL_TABLE")
    idempotency_table: str | None = Field(default=None, alias="IDEMPOTENCY_TABLE")
    connections_table: str | None = Field(default=None, alias="CONNECTIONS_TABLE")
    state_machine_arn: str | None = Field(default=None, alias="STATE_MACHINE_ARN")
    event_bus_name: str | None = Field(default=None, alias="EVENT_BUS_NAME")
    websocket_endpoint: str | None = Field(default=None, alias="WEBSOCKET_MANAGEMENT_ENDPOINT")

    max_active_sessions: int = Field(default=10, alias="MAX_ACTIVE_SESSIONS", ge=1)
    max_active_sessions_per_user: int = Field(default=5, alias="MAX_ACTIVE_SESSIONS_PER_USER", ge=1)
    rate_limit_capacity: int = Field(default=60, alias="RATE_LIMIT_CAPACITY", ge=1)
    rate_limit_window_seconds: int = Field(default=60, alias="RATE_LIMIT_WINDOW_SECONDS", ge=1)
    allow_private_stream_hosts: bool = Field(default=False, alias="ALLOW_PRIVATE_STREAM_HOSTS")
    max_session_seconds: int = Field(default=14_400, alias="MAX_SESSION_SECONDS", ge=10)
    data_retention_days: int = Field(default=30, alias="DATA_RETENTION_DAYS", ge=1)
    heartbeat_stale_seconds: int = Field(default=60, alias="HEARTBEAT_STALE_SECONDS", ge=5)
    idempotency_ttl_seconds: int = Field(default=3600, alias="IDEMPOTENCY_TTL_SECONDS", ge=60)
    # In-process cache of positive token lookups (the WebSocket function): the authorizer cache TTL
    # (template parameter AuthorizerCacheSeconds), so a revoked token stops working within it there too.
    token_cache_seconds: float = Field(default=0, alias="TOKEN_CACHE_SECONDS", ge=0, le=3600)

    def require(self, name: str) -> str:
        """Return an optional setting that this component needs, or fail with the variable's name."""
        value = getattr(self, name)
        if not value:
            alias = type(self).model_fields[name].alias or name.upper()
            raise ConfigError(f"environment variable {alias} is required by this component")
        return str(value)

