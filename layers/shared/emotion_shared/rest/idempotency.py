"""Idempotent create: ``Idempotency-Key`` → Powertools idempotency on the idempotency table.

The record key is the user plus the key (two users can use the same key). The stored result is the
session object answered the first time, so a replay returns the same ``201`` body and never starts a
second workflow. The same key with a different (normalized) body → ``IdempotencyValidationError`` (400); a
replay while the first request is still running → ``IdempotencyAlreadyInProgressError`` (409). A create
that fails (400/503) leaves no record: retrying with the same key tries again.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from ..auth import Principal
from ..errors import InvalidRequest
from ..session_models import CreateSessionRequest
from ..session_service import SessionService

HEADER = "Idempotency-Key"
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


def validate_key(value: str) -> str:
    if not _KEY_RE.match(value):
        raise InvalidRequest(f"header '{HEADER}' must be 1-255 visible ASCII characters (e.g. a UUID)")
    return value


class IdempotentCreate:
    def __init__(self, service: SessionService, client: Any, table: str, ttl_seconds: int) -> None:
        self._service = service
        self._config = IdempotencyConfig(
            event_key_jmespath="[user, key]",
            payload_validation_jmespath="[product, request]",
            expires_after_seconds=ttl_seconds,
        )
        persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
        self._run = idempotent_function(
            self._create,
            data_keyword_argument="command",
            persistence_store=persistence,
            config=self._config,
            key_prefix="sessions.create",
        )

    def _create(self, command: dict[str, Any]) -> dict[str, Any]:
        principal = Principal(user=command["user"], product=command["product"])
        request = CreateSessionRequest.model_validate(command["request"])
        return self._service.create(principal, request).session

    def create(
        self, principal: Principal, request: CreateSessionRequest, key: str, lambda_context: Any = None
    ) -> dict[str, Any]:
        """The created (or replayed) session object."""
        if lambda_context is not None and hasattr(lambda_context, "get_remaining_time_in_millis"):
            # Lets an in-progress record expire with the invocation if it dies mid-way.
            self._config.register_lambda_context(lambda_context)
        command = {
            "user": principal.user,
            "product": principal.product,
            "key": validate_key(key),
            "request": request.model_dump(mode="json"),
        }
        result: dict[str, Any] = self._run(command=command)
        return result
