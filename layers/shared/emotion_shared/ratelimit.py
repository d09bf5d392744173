"""Per-user token bucket in the control table (``ratelimit#<user>``: ``tokens``, ``updatedMs``, ``ttl``).

A bucket holds up to ``capacity`` tokens and refills continuously, from empty to full in ``window_seconds``.
Each request takes one token with **one conditional write**, optimistic on the previous ``updatedMs``
(``updatedMs`` strictly increases with every write, so it works as a version number). On a conflict the
write returns the current item (``ReturnValuesOnConditionCheckFailure``), the decision is recomputed and
written again, a few times. A denied request writes nothing. The last state seen is kept per process, so
the common case costs exactly one write and no read.

Headers (draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Limit`` (capacity), ``RateLimit-Remaining``
(whole tokens left), ``RateLimit-Reset`` (seconds until the bucket is full again), ``RateLimit-Policy``
(``{capacity};w={window}``), and ``Retry-After`` on a 429.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from .clock import now_ms
from .dynamo import deserialize, error_code

logger = logging.getLogger(__name__)

KEY_PREFIX = "ratelimit#"


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int
    window_seconds: int
    reason: str = ""

    def headers(self) -> dict[str, str]:
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": f"{self.limit};w={self.window_seconds}",
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


@dataclass(frozen=True)
class _State:
    tokens: float
    updated_ms: int


class TokenBucketLimiter:
    def __init__(
        self,
        client: Any,
        control_table: str,
        capacity: int,
        window_seconds: int,
        *,
        attempts: int = 6,
        clock: Callable[[], int] = now_ms,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if capacity < 1 or window_seconds < 1:
            raise ValueError("capacity and window_seconds must be positive")
        self._db = client
        self._table = control_table
        self.capacity = capacity
        self.window_seconds = window_seconds
        self._rate_per_ms = capacity / (window_seconds * 1000.0)
        self._attempts = attempts
        self._clock = clock
        self._sleep = sleep
        self._seen: dict[str, _State | None] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ math
    def _refilled(self, state: _State | None, now: int) -> float:
        if state is None:
            return float(self.capacity)
        elapsed = max(0, now - state.updated_ms)
        return min(float(self.capacity), state.tokens + elapsed * self._rate_per_ms)

    def _seconds_to(self, tokens: float, target: float) -> int:
        missing = target - tokens
        if missing <= 1e-9:
            return 0
        return max(1, math.ceil(missing / (self._rate_per_ms * 1000.0) - 1e-9))

    def _decision(self, allowed: bool, tokens: float, reason: str = "") -> RateDecision:
        return RateDecision(
            allowed=allowed,
            limit=self.capacity,
            remaining=max(0, math.floor(tokens + 1e-9)),
            reset_seconds=self._seconds_to(tokens, float(self.capacity)),
            retry_after=0 if allowed else max(1, self._seconds_to(tokens, 1.0)),
            window_seconds=self.window_seconds,
            reason=reason,
        )

    # ------------------------------------------------------------------ storage
    @staticmethod
    def _parse(item: dict[str, Any] | None) -> _State | None:
        if not item:
            return None
        data = deserialize(item)
        try:
            return _State(tokens=float(data["tokens"]), updated_ms=int(data["updatedMs"]))
        except (KeyError, TypeError, ValueError):
            return None

    def _read(self, key: str) -> _State | None:
        response = self._db.get_item(TableName=self._table, Key={"pk": {"S": key}}, ConsistentRead=True)
        return self._parse(response.get("Item"))

    def _write(self, key: str, previous: _State | None, tokens: float, updated_ms: int) -> None:
        item = {
            "pk": {"S": key},
            "tokens": {"N": str(Decimal(repr(round(tokens, 6))))},
            "updatedMs": {"N": str(updated_ms)},
            "ttl": {"N": str(updated_ms // 1000 + self.window_seconds + 60)},
        }
        if previous is None:
            condition = "attribute_not_exists(pk)"
            values: dict[str, Any] = {}
        else:
            condition = "updatedMs = :prev"
            values = {":prev": {"N": str(previous.updated_ms)}}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Item": item,
            "ConditionExpression": condition,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        self._db.put_item(**kwargs)

    # ------------------------------------------------------------------ API
    def consume(self, user: str) -> RateDecision:
        """Take one token for ``user``; the decision says whether the request may proceed."""
        key = KEY_PREFIX + user
        with self._lock:
            known = key in self._seen
            state = self._seen.get(key)
        if not known:
            state = self._read(key)
        tokens = 0.0
        for attempt in range(self._attempts):
            now = self._clock()
            tokens = self._refilled(state, now)
            if tokens < 1.0:
                # Denials write nothing: the stored state already implies this bucket.
                return self._decision(False, tokens, "rate limit exceeded")
            updated = now if state is None else max(now, state.updated_ms + 1)
            try:
                self._write(key, state, tokens - 1.0, updated)
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                returned = exc.response.get("Item")
                state = self._parse(returned) if returned else self._read(key)
                if attempt:
                    self._sleep(random.uniform(0.0, 0.005 * (2**attempt)))
                continue
            new_state = _State(tokens - 1.0, updated)
            with self._lock:
                if len(self._seen) > 10_000:
                    self._seen.clear()
                self._seen[key] = new_state
            return self._decision(True, tokens - 1.0)
        with self._lock:
            self._seen[key] = state
        logger.warning("rate-limit bucket of %s kept changing under us; refusing this request", user)
        return self._decision(False, min(tokens, 0.0), "too many concurrent requests")
