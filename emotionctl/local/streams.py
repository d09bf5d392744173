"""DynamoDB stream → Lambda, locally: the template's event source mappings, played by a poller.

For each ``AWS::Lambda::EventSourceMapping`` of template.yaml whose source is a table's stream
(``!GetAtt <Table>.StreamArn``), a thread reads the embedded DynamoDB stream (``describe_stream`` for new
shards, parents before children, ``get_shard_iterator`` / ``get_records``), applies the mapping's
``FilterCriteria`` (``eventName``-style equality patterns), and invokes the function with real
DynamoDB-stream Lambda events, in batches of at most ``BatchSize`` records. It polls every 100 ms, busy or
not (records that arrive meanwhile are delivered as one batch, as a Lambda batching window does): live events
stay fast, and many live sessions cost a bounded 10 polls a second per mapping instead of a poll loop that
never sleeps. A batch whose handler reports ``batchItemFailures`` is retried from the first failed
record, up to ``MaximumRetryAttempts`` times; a batch that keeps failing is logged and skipped (the
on-failure destination, locally).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .lambda_runtime import FunctionError, LambdaFunction

if TYPE_CHECKING:
    from .stack import LocalStack

logger = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 0.1
SHARD_REFRESH_SECONDS = 1.0


class UnsupportedFilter(ValueError):
    pass


# ------------------------------------------------------------------ filters
def _matches(pattern: Any, value: Any) -> bool:
    if isinstance(pattern, dict):
        if not isinstance(value, Mapping):
            return False
        return all(key in value and _matches(sub, value[key]) for key, sub in pattern.items())
    if isinstance(pattern, list):
        for option in pattern:
            if isinstance(option, dict | list):
                raise UnsupportedFilter(f"content filters like {option!r} are not supported locally")
        return value in pattern
    raise UnsupportedFilter(f"a filter pattern leaf must be a list of values, got {pattern!r}")


def compile_filters(criteria: Mapping[str, Any] | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over Lambda stream records from ``FilterCriteria`` (no criteria: everything passes)."""
    patterns = [json.loads(f["Pattern"]) for f in (criteria or {}).get("Filters", [])]
    if not patterns:
        return lambda record: True
    probe = {"eventName": "INSERT", "dynamodb": {}}
    for pattern in patterns:
        _matches(pattern, probe)  # raises UnsupportedFilter early, at start-up

    return lambda record: any(_matches(p, record) for p in patterns)


# ------------------------------------------------------------------ records
def lambda_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A ``get_records`` record → the record of a DynamoDB-stream Lambda event."""
    data = dict(record.get("dynamodb") or {})
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        data["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": record.get("eventID"),
        "eventName": record.get("eventName"),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion") or region,
        "dynamodb": data,
        "eventSourceARN": stream_arn,
    }


@dataclass(frozen=True)
class MappingSpec:
    logical_id: str
    function: str
    table: str
    batch_size: int
    max_retries: int
    starting_position: str
    filters: Any = None

    @classmethod
    def from_template(cls, template: dict[str, Any], resolve: Callable[[Any], Any]) -> list[MappingSpec]:
        out = []
        for logical, res in template.get("Resources", {}).items():
            if res.get("Type") != "AWS::Lambda::EventSourceMapping":
                continue
            props = res.get("Properties", {})
            source = props.get("EventSourceArn")
            if not (isinstance(source, dict) and "Fn::GetAtt" in source):
                continue
            table, attribute = source["Fn::GetAtt"]
            if attribute != "StreamArn":
                continue
            target = props.get("FunctionName")
            if isinstance(target, dict) and "Ref" in target:
                function = str(target["Ref"])
            elif isinstance(target, dict) and "Fn::GetAtt" in target:
                function = str(target["Fn::GetAtt"][0])
            else:
                raise ValueError(f"{logical}: FunctionName must be !Ref or !GetAtt of a function of the template")
            if not resolve(props.get("Enabled", True)):
                continue
            out.append(cls(
                logical_id=logical,
                function=function,
                table=str(table),
                batch_size=int(resolve(props.get("BatchSize", 100))),
                max_retries=int(resolve(props.get("MaximumRetryAttempts", 2))),
                starting_position=str(resolve(props.get("StartingPosition", "LATEST"))),
                filters=props.get("FilterCriteria"),
            ))
        return out


@dataclass
class _Shard:
    id: str
    parent: str | None
    iterator: str | None = None
    closed: bool = False


@dataclass
class StreamWorker:
    """Polls one stream and drives one function, on its own thread."""

    spec: MappingSpec
    stream_arn: str
    function: LambdaFunction
    client: Any
    region: str
    poll_seconds: float = DEFAULT_POLL_SECONDS
    stop_event: threading.Event = field(default_factory=threading.Event)
    invocations: int = 0
    records: int = 0
    errors: int = 0
    _shards: dict[str, _Shard] = field(default_factory=dict)
    _refreshed: float = 0.0
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._accept = compile_filters(self.spec.filters)

    def start(self) -> None:
        self._refresh(initial=True)
        self._thread = threading.Thread(target=self._run, name=f"stream-{self.spec.logical_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ shards
    def _refresh(self, initial: bool = False) -> None:
        description = self.client.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id in self._shards:
                continue
            state = _Shard(shard_id, shard.get("ParentShardId"))
            # Shards present at start follow the mapping's starting position; later ones are read whole.
            kind = self.spec.starting_position if initial else "TRIM_HORIZON"
            if kind == "LATEST" and shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber"):
                state.closed = True  # a closed shard has nothing new
            else:
                state.iterator = self.client.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=kind
                )["ShardIterator"]
            self._shards[shard_id] = state
        self._refreshed = time.monotonic()

    def _readable(self, shard: _Shard) -> bool:
        if shard.closed or shard.iterator is None:
            return False
        parent = self._shards.get(shard.parent) if shard.parent else None
        return parent is None or parent.closed

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.poll_once()
            except Exception:  # the stream or moto hiccuped: log, back off a little, keep going
                logger.exception("polling %s failed", self.stream_arn)
                self.stop_event.wait(0.5)
            self.stop_event.wait(self.poll_seconds)

    def poll_once(self) -> bool:
        """Read every readable shard once and deliver what came. True if records arrived."""
        if time.monotonic() - self._refreshed > SHARD_REFRESH_SECONDS:
            self._refresh()
        got = False
        for shard in list(self._shards.values()):
            if not self._readable(shard):
                continue
            response = self.client.get_records(ShardIterator=shard.iterator, Limit=1000)
            shard.iterator = response.get("NextShardIterator")
            if shard.iterator is None:
                shard.closed = True
            records = [lambda_record(r, self.stream_arn, self.region) for r in response.get("Records", [])]
            if records:
                got = True
                self.records += len(records)
                self._deliver([r for r in records if self._accept(r)])
        return got

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), self.spec.batch_size):
            batch = records[start:start + self.spec.batch_size]
            for attempt in range(self.spec.max_retries + 1):
                failed_from = self._invoke(batch)
                if failed_from is None:
                    break
                batch = batch[failed_from:]
                if attempt == self.spec.max_retries:
                    self.errors += 1
                    logger.error("%s: %d records still failing after %d retries; dropped (the on-failure "
                                 "destination in AWS)", self.spec.logical_id, len(batch), self.spec.max_retries)
                else:
                    time.sleep(min(1.0, 0.1 * 2**attempt))

    def _invoke(self, batch: list[dict[str, Any]]) -> int | None:
        """Invoke the function; None on success, else the index in ``batch`` to retry from."""
        self.invocations += 1
        try:
            result = self.function.invoke_sync({"Records": batch})
        except FunctionError as exc:
            logger.error("%s on a batch of %d records", exc.describe(), len(batch))
            return 0
        except Exception:  # a timeout, or the function's environment failed
            logger.exception("%s failed on a batch of %d records", self.function.logical_id, len(batch))
            return 0
        failures = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
        if not failures:
            return None
        failed = {str(f.get("itemIdentifier")) for f in failures}
        for index, record in enumerate(batch):
            if str(record["dynamodb"].get("SequenceNumber")) in failed:
                return index
        return 0


class StreamPoller:
    """Component (a background worker, after the HTTP server): one :class:`StreamWorker` per stream event
    source mapping of the template."""

    name = "streams"

    def __init__(self, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self.workers: list[StreamWorker] = []

    async def start(self, stack: LocalStack) -> None:
        import boto3

        resolve = stack.resolver().resolve
        specs = MappingSpec.from_template(stack.template, resolve)
        client = boto3.session.Session().client("dynamodbstreams", endpoint_url=stack.aws_endpoint,
                                                region_name=stack.region)
        loop = asyncio.get_running_loop()
        for spec in specs:
            if spec.function not in stack.functions:
                raise ValueError(f"{spec.logical_id} targets {spec.function}, which has no local code")
            stream_arn = stack.attributes.get((spec.table, "StreamArn"))
            if not stream_arn:
                raise ValueError(f"{spec.logical_id}: table {spec.table} has no stream registered locally")
            worker = StreamWorker(spec, stream_arn, stack.functions[spec.function], client, stack.region,
                                  poll_seconds=self.poll_seconds)
            await loop.run_in_executor(None, worker.start)
            self.workers.append(worker)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            worker.stop_event.set()
        for worker in self.workers:
            await loop.run_in_executor(None, worker.stop)

    def describe(self) -> dict[str, Any]:
        return {
            w.spec.logical_id: {"stream": w.stream_arn, "function": w.spec.function, "records": w.records,
                                "invocations": w.invocations, "errors": w.errors}
            for w in self.workers
        }
