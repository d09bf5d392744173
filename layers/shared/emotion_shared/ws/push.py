"""Sending to WebSocket clients through the API Gateway management API (``@connections``).

The client is built once per process, on the endpoint ``WEBSOCKET_MANAGEMENT_ENDPOINT``
(``https://<api>.execute-api.<region>.amazonaws.com/<stage>`` in AWS, the local gateway locally — never
moto's stub, which accepts posts and delivers nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..dynamo import error_code

logger = logging.getLogger(__name__)

_RETRYABLE = frozenset({"LimitExceededException", "TooManyRequestsException", "ThrottlingException",
                        "InternalServerErrorException", "ServiceUnavailableException"})


class Outcome(Enum):
    SENT = "sent"
    GONE = "gone"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    """What happened to the messages for one connection."""

    connection_id: str
    sent: int
    failed: int
    gone: bool


def _is_gone(exc: ClientError) -> bool:
    return error_code(exc) == "GoneException" or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 410


class Pusher:
    def __init__(self, client: Any, *, attempts: int = 3, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._attempts = attempts
        self._sleep = sleep

    def send(self, connection_id: str, payload: str) -> Outcome:
        """Post one message. GONE when the client has disconnected (410); FAILED after retries (logged)."""
        data = payload.encode("utf-8")
        for attempt in range(self._attempts):
            try:
                self._client.post_to_connection(ConnectionId=connection_id, Data=data)
                return Outcome.SENT
            except ClientError as exc:
                if _is_gone(exc):
                    return Outcome.GONE
                if error_code(exc) not in _RETRYABLE or attempt == self._attempts - 1:
                    logger.warning("push to %s failed: %s", connection_id, error_code(exc) or exc)
                    return Outcome.FAILED
            except BotoCoreError as exc:
                if attempt == self._attempts - 1:
                    logger.warning("push to %s failed: %s", connection_id, exc)
                    return Outcome.FAILED
            self._sleep(0.05 * (2**attempt))
        return Outcome.FAILED

    def send_many(self, messages: Iterable[tuple[str, str]], pool: ThreadPoolExecutor | None) -> list[Delivery]:
        """Post ``(connectionId, payload)`` pairs, concurrently when a pool is given; messages to the same
        connection keep their order."""
        by_connection: dict[str, list[str]] = {}
        for connection_id, payload in messages:
            by_connection.setdefault(connection_id, []).append(payload)

        def deliver(connection_id: str, payloads: list[str]) -> Delivery:
            sent = failed = 0
            for payload in payloads:
                outcome = self.send(connection_id, payload)
                if outcome is Outcome.GONE:
                    return Delivery(connection_id, sent, failed, gone=True)
                if outcome is Outcome.SENT:
                    sent += 1
                else:
                    failed += 1
            return Delivery(connection_id, sent, failed, gone=False)

        if pool is None or len(by_connection) <= 1:
            return [deliver(c, p) for c, p in by_connection.items()]
        futures = [pool.submit(deliver, c, p) for c, p in by_connection.items()]
        return [f.result() for f in futures]

    def close(self, connection_id: str) -> bool:
        """Close a connection (API Gateway then runs ``$disconnect``). False if it was already gone."""
        try:
            self._client.delete_connection(ConnectionId=connection_id)
            return True
        except ClientError as exc:
            if _is_gone(exc):
                return False
            raise
