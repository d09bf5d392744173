"""Small helpers around the low-level DynamoDB client (faster than the resource API, and explicit)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from .errors import RetriesExhausted

_ser = TypeSerializer()
_deser = TypeDeserializer()

RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, set):
        return {_from_dynamo(v) for v in value}
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """Python dict → DynamoDB attribute-value map (floats become Decimals; ``None`` values are dropped)."""
    return {k: _ser.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def serialize_value(value: Any) -> dict[str, Any]:
    return _ser.serialize(_to_dynamo(value))


def plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item deserialized by boto3/Powertools (numbers as Decimals) → plain Python (int/float), as
    :func:`deserialize` gives."""
    return {k: _from_dynamo(v) for k, v in item.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute-value map → plain Python (Decimals become int/float)."""
    return {k: _from_dynamo(_deser.deserialize(v)) for k, v in item.items()}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_retryable(exc: ClientError) -> bool:
    return error_code(exc) in RETRYABLE_CODES


def backoff_delays(attempts: int, base: float = 0.05, cap: float = 2.0) -> Iterator[float]:
    """Full-jitter exponential backoff delays, ``attempts`` of them."""
    for attempt in range(attempts):
        yield random.uniform(0, min(cap, base * (2**attempt)))


def query_all(client: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """All items of a query, page after page, deserialized."""
    paginator = client.get_paginator("query")
    for page in paginator.paginate(**kwargs):
        for item in page.get("Items", []):
            yield deserialize(item)


def batch_write(
    client: Any,
    table: str,
    requests: Iterable[dict[str, Any]],
    *,
    attempts: int = 10,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write ``requests`` (``{"PutRequest": …}`` / ``{"DeleteRequest": …}``) in batches of 25.

    Unprocessed items and throttling errors are retried with exponential backoff. When the retry budget is
    spent, :class:`RetriesExhausted` is raised: nothing is dropped silently. Returns the number of retries.
    """
    pending = list(requests)
    retries = 0
    while pending:
        chunk, pending = pending[:25], pending[25:]
        delays = backoff_delays(attempts)
        while chunk:
            try:
                response = client.batch_write_item(RequestItems={table: chunk})
                chunk = response.get("UnprocessedItems", {}).get(table, [])
            except ClientError as exc:
                if not is_retryable(exc):
                    raise
            if not chunk:
                break
            delay = next(delays, None)
            if delay is None:
                lost = len(chunk) + len(pending)
                raise RetriesExhausted(f"{lost} writes to {table} still failing after {attempts} attempts")
            retries += 1
            sleep(delay)
    return retries
