"""Data access for sessions: every state transition is a conditional write.

Capacity: a create is one transaction that puts the session and increments the global and per-user
counters only while they are under their caps (race-free admission). Capacity is released by one
transaction guarded by the session's ``capacityHeld`` flag, so it happens exactly once whoever ends the
session (the user, the worker, the state machine, the sweeper, a delete).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from . import SCHEMA_VERSION
from .clock import iso_ms
from .dynamo import deserialize, error_code, query_all, serialize, serialize_value
from .errors import CapacityExceeded, ErrorCode, InvalidState, NotFound
from .ids import highest_id_at, lowest_id_at, new_session_id
from .session_models import SESSION_TYPE, SessionState, StopReason, WorkerState

logger = logging.getLogger(__name__)

GLOBAL_CAPACITY_KEY = "capacity#global"
ACTIVE_SHARD = "active"


def user_capacity_key(user: str) -> str:
    return f"capacity#user#{user}"


def capacity_release_items(control_table: str, user: str) -> list[dict[str, Any]]:
    """The two counter decrements of a release (``capacity#global``, ``capacity#user#<user>``)."""
    return [
        {
            "Update": {
                "TableName": control_table,
                "Key": {"pk": {"S": key}},
                "UpdateExpression": "SET active = active - :one",
                "ConditionExpression": "active > :zero",
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":zero": {"N": "0"}},
            }
        }
        for key in (GLOBAL_CAPACITY_KEY, user_capacity_key(user))
    ]


def capacity_release_transaction(
    sessions_table: str, control_table: str, session_id: str, user: str
) -> list[dict[str, Any]]:
    """The ``TransactItems`` that give back an ended session's capacity unit, exactly once: ``capacityHeld`` true →
    false on the (no longer active) session, and both counters minus one. The state machine's ``ReleaseCapacity``
    (``statemachine/session.asl.json``) runs the same items; ``tests/unit/test_capacity_release_contract.py`` proves
    them identical."""
    return [
        {
            "Update": {
                "TableName": sessions_table,
                "Key": {"id": {"S": session_id}},
                "UpdateExpression": "SET capacityHeld = :f",
                "ConditionExpression": "capacityHeld = :t AND #state <> :active",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {
                    ":f": {"BOOL": False},
                    ":t": {"BOOL": True},
                    ":active": {"S": SessionState.ACTIVE.value},
                },
            }
        },
        *capacity_release_items(control_table, user),
    ]


@dataclass(frozen=True)
class Limits:
    max_active: int
    max_active_per_user: int
    retention_days: int


@dataclass(frozen=True)
class HeartbeatResult:
    """``stop`` is True when the session is no longer active or a stop was requested."""

    stop: bool
    item: dict[str, Any] | None


class SessionRepository:
    def __init__(self, client: Any, sessions_table: str, control_table: str | None = None) -> None:
        self._db = client
        self._table = sessions_table
        self._control = control_table

    # ----------------------------------------------------------------- reads
    def get(self, session_id: str) -> dict[str, Any] | None:
        response = self._db.get_item(TableName=self._table, Key={"id": {"S": session_id}}, ConsistentRead=True)
        item = response.get("Item")
        return deserialize(item) if item else None

    def get_owned(self, session_id: str, user: str) -> dict[str, Any]:
        """The session if it exists and belongs to ``user``; otherwise :class:`NotFound` (never leak existence)."""
        item = self.get(session_id)
        if item is None or item.get("user") != user:
            raise NotFound(f"session {session_id} not found")
        return item

    def list_for_user(
        self,
        user: str,
        *,
        state: str | None = None,
        session_type: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first; ``from_ms <= createdAtMs <= to_ms`` when given. Returns the page and whether more
        items follow it (exact). The time range narrows the key condition to whole seconds (ids start with
        the creation second) and is then applied exactly on ``createdAtMs``."""
        names = {"#u": "user"}
        values: dict[str, Any] = {":u": {"S": user}}
        condition = "#u = :u"
        filters = []
        if from_ms is not None or to_ms is not None:
            names["#i"] = "id"
            lo = lowest_id_at(from_ms // 1000 if from_ms is not None else 0)
            hi = highest_id_at(to_ms // 1000 if to_ms is not None else 0xFFFFFFFF)
            condition += " AND #i BETWEEN :lo AND :hi"
            values |= {":lo": {"S": lo}, ":hi": {"S": hi}}
            if from_ms is not None:
                values[":from"] = {"N": str(from_ms)}
                filters.append("createdAtMs >= :from")
            if to_ms is not None:
                values[":to"] = {"N": str(to_ms)}
                filters.append("createdAtMs <= :to")
        if state is not None:
            names["#st"] = "state"
            values[":st"] = {"S": state}
            filters.append("#st = :st")
        if session_type is not None:
            names["#ty"] = "type"
            values[":ty"] = {"S": session_type}
            filters.append("#ty = :ty")
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "byUser",
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
        wanted = offset + limit + 1
        page: list[dict[str, Any]] = []
        for item in query_all(self._db, **kwargs):
            page.append(item)
            if len(page) >= wanted:
                break
        window = page[offset : offset + limit]
        return window, len(page) > offset + limit

    def active_ids(self) -> list[str]:
        """Ids of every active session (sparse ``byActive`` index)."""
        items = query_all(
            self._db,
            TableName=self._table,
            IndexName="byActive",
            KeyConditionExpression="activeShard = :a",
            ExpressionAttributeValues={":a": {"S": ACTIVE_SHARD}},
            ProjectionExpression="id",
        )
        return [item["id"] for item in items]

    # --------------------------------------------------------------- create
    def create(
        self,
        *,
        user: str,
        product: str,
        name: str,
        stream_uri: str,
        config: dict[str, Any],
        now_ms: int,
        limits: Limits,
    ) -> dict[str, Any]:
        """Put a new active session and take one unit of global and per-user capacity, atomically."""
        control = self._require_control()
        session_id = new_session_id(now_ms // 1000)
        expires_ms = now_ms + limits.retention_days * 86_400_000
        item: dict[str, Any] = {
            "id": session_id,
            "user": user,
            "product": product,
            "name": name,
            "type": SESSION_TYPE,
            "state": SessionState.ACTIVE.value,
            "createdAt": iso_ms(now_ms),
            "createdAtMs": now_ms,
            "streamUri": stream_uri,
            "config": config,
            "sources": [],
            "meta": {"expires": iso_ms(expires_ms), "workerState": WorkerState.PENDING.value},
            "stopRequested": False,
            "capacityHeld": True,
            "activeShard": ACTIVE_SHARD,
            "version": SCHEMA_VERSION,
            "ttl": expires_ms // 1000,
        }

        def take(key: str, cap: int) -> dict[str, Any]:
            return {
                "Update": {
                    "TableName": control,
                    "Key": {"pk": {"S": key}},
                    "UpdateExpression": "SET active = if_not_exists(active, :zero) + :one",
                    "ConditionExpression": "attribute_not_exists(active) OR active < :cap",
                    "ExpressionAttributeValues": {
                        ":zero": {"N": "0"},
                        ":one": {"N": "1"},
                        ":cap": {"N": str(cap)},
                    },
                }
            }

        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": serialize(item),
                            "ConditionExpression": "attribute_not_exists(id)",
                        }
                    },
                    take(GLOBAL_CAPACITY_KEY, limits.max_active),
                    take(user_capacity_key(user), limits.max_active_per_user),
                ]
            )
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if len(reasons) >= 3 and reasons[2] == "ConditionalCheckFailed":
                raise CapacityExceeded(
                    f"you already have {limits.max_active_per_user} active sessions; stop one and retry"
                ) from None
            if len(reasons) >= 2 and reasons[1] == "ConditionalCheckFailed":
                raise CapacityExceeded("the service is at capacity; retry later") from None
            raise
        return item

    # ------------------------------------------------------------ transitions
    def set_execution(self, session_id: str, execution_arn: str) -> None:
        self._db.update_item(
            TableName=self._table,
            Key={"id": {"S": session_id}},
            UpdateExpression="SET executionArn = :e",
            ConditionExpression="attribute_exists(id)",
            ExpressionAttributeValues={":e": {"S": execution_arn}},
        )

    def request_stop(self, session_id: str, user: str, now_ms: int) -> dict[str, Any]:
        """User stop: ``active`` → ``finished`` (``user_request``), and raise the worker's stop flag."""
        item = self.get_owned(session_id, user)
        try:
            response = self._db.update_item(
                TableName=self._table,
                Key={"id": {"S": session_id}},
                UpdateExpression=(
                    "SET #st = :fin, endedAt = :iso, endedAtMs = :ms, stopRequested = :t, "
                    "meta.stopReason = :why, meta.workerState = :ws REMOVE activeShard"
                ),
                ConditionExpression="#st = :active AND #u = :user",
                ExpressionAttributeNames={"#st": "state", "#u": "user"},
                ExpressionAttributeValues={
                    ":fin": {"S": SessionState.FINISHED.value},
                    ":active": {"S": SessionState.ACTIVE.value},
                    ":iso": {"S": iso_ms(now_ms)},
                    ":ms": {"N": str(now_ms)},
                    ":t": {"BOOL": True},
                    ":why": {"S": StopReason.USER_REQUEST.value},
                    ":ws": {"S": self._stopping_state(item)},
                    ":user": {"S": user},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise InvalidState(f"session {session_id} is not active (state: {item['state']})") from None
            raise
        return deserialize(response["Attributes"])

    @staticmethod
    def _stopping_state(item: dict[str, Any]) -> str:
        # A worker that never started has nothing to stop: say so rather than "stopping" forever.
        current = (item.get("meta") or {}).get("workerState")
        if current in (WorkerState.PENDING.value, None):
            return WorkerState.STOPPED.value
        return WorkerState.STOPPING.value

    def end(
        self,
        session_id: str,
        reason: StopReason,
        now_ms: int,
        *,
        worker_state: WorkerState,
        error: str | None = None,
    ) -> bool:
        """End an active session for ``reason`` (state follows from it). False if it had already ended."""
        sets = [
            "#st = :state",
            "endedAt = :iso",
            "endedAtMs = :ms",
            "meta.stopReason = :why",
            "meta.workerState = :ws",
        ]
        values: dict[str, Any] = {
            ":state": {"S": reason.final_state.value},
            ":active": {"S": SessionState.ACTIVE.value},
            ":iso": {"S": iso_ms(now_ms)},
            ":ms": {"N": str(now_ms)},
            ":why": {"S": reason.value},
            ":ws": {"S": worker_state.value},
        }
        if error:
            sets.append("meta.#err = :err")
            values[":err"] = {"S": error[:2000]}
        names = {"#st": "state"}
        if error:
            names["#err"] = "error"
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"id": {"S": session_id}},
                UpdateExpression="SET " + ", ".join(sets) + " REMOVE activeShard",
                ConditionExpression="#st = :active",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def set_worker_state(self, session_id: str, worker_state: WorkerState, now_ms: int) -> None:
        """Record the worker's final state after the session ended (no state condition: it never revives it)."""
        self._db.update_item(
            TableName=self._table,
            Key={"id": {"S": session_id}},
            UpdateExpression="SET meta.workerState = :ws, meta.healthCheck = :hc",
            ConditionExpression="attribute_exists(id)",
            ExpressionAttributeValues={":ws": {"S": worker_state.value}, ":hc": {"S": iso_ms(now_ms)}},
        )

    def heartbeat(
        self,
        session_id: str,
        worker_state: WorkerState,
        now_ms: int,
        *,
        sources: list[dict[str, Any]] | None = None,
        stats: dict[str, Any] | None = None,
        degraded: bool | None = None,
        task_arn: str | None = None,
    ) -> HeartbeatResult:
        """The worker's once-a-second write: heartbeat + state (+ sources/stats/degraded), reading back the stop flag.

        Conditioned on the session being active with no stop requested, so it can never undo a stop.
        """
        sets = ["meta.healthCheck = :hc", "meta.workerState = :ws"]
        values: dict[str, Any] = {
            ":hc": {"S": iso_ms(now_ms)},
            ":ws": {"S": worker_state.value},
            ":active": {"S": SessionState.ACTIVE.value},
            ":t": {"BOOL": True},
        }
        if sources is not None:
            sets.append("sources = :src")
            values[":src"] = serialize_value(sources)
        if stats is not None:
            sets.append("meta.stats = :stats")
            values[":stats"] = serialize_value(stats)
        if degraded is not None:
            sets.append("meta.degraded = :dg")
            values[":dg"] = {"BOOL": degraded}
        if task_arn is not None:
            sets.append("taskArn = :task")
            values[":task"] = {"S": task_arn}
        try:
            response = self._db.update_item(
                TableName=self._table,
                Key={"id": {"S": session_id}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="#st = :active AND (attribute_not_exists(stopRequested) OR stopRequested <> :t)",
                ExpressionAttributeNames={"#st": "state"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return HeartbeatResult(stop=True, item=self.get(session_id))
            raise
        return HeartbeatResult(stop=False, item=deserialize(response["Attributes"]))

    # --------------------------------------------------------------- capacity
    def _require_control(self) -> str:
        if not self._control:
            raise RuntimeError("CONTROL_TABLE is required for capacity operations")
        return self._control

    def _release_items(self, user: str) -> list[dict[str, Any]]:
        return capacity_release_items(self._require_control(), user)

    def release_capacity(self, session_id: str) -> bool:
        """Give back the session's capacity unit, exactly once. True if this call released it."""
        item = self.get(session_id)
        if item is None or not item.get("capacityHeld"):
            return False
        try:
            self._db.transact_write_items(
                TransactItems=capacity_release_transaction(
                    self._table, self._require_control(), session_id, item["user"]
                )
            )
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                logger.info("capacity of %s already released or session still active", session_id)
                return False
            raise
        return True

    def active_count(self, user: str | None = None) -> int:
        key = GLOBAL_CAPACITY_KEY if user is None else user_capacity_key(user)
        response = self._db.get_item(
            TableName=self._require_control(), Key={"pk": {"S": key}}, ConsistentRead=True
        )
        item = response.get("Item")
        return int(deserialize(item).get("active", 0)) if item else 0

    # ----------------------------------------------------------------- delete
    def delete(self, session_id: str, user: str) -> dict[str, Any]:
        """Delete an ended session, releasing its capacity if still held (emotion data: the caller's job)."""
        for attempt in range(2):
            item = self.get_owned(session_id, user)
            if item["state"] == SessionState.ACTIVE.value:
                raise InvalidState(f"session {session_id} is active; stop it before deleting it",
                                   code=ErrorCode.SESSION_ACTIVE)
            held = bool(item.get("capacityHeld"))
            transact: list[dict[str, Any]] = [
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": {"id": {"S": session_id}},
                        "ConditionExpression": "#st <> :active AND capacityHeld = :held",
                        "ExpressionAttributeNames": {"#st": "state"},
                        "ExpressionAttributeValues": {
                            ":active": {"S": SessionState.ACTIVE.value},
                            ":held": {"BOOL": held},
                        },
                    }
                }
            ]
            if held:
                transact.extend(self._release_items(user))
            try:
                self._db.transact_write_items(TransactItems=transact)
                return item
            except ClientError as exc:
                # Lost a race with whoever released the capacity meanwhile: read again, retry once.
                if error_code(exc) != "TransactionCanceledException" or attempt:
                    raise
        raise AssertionError("unreachable")
