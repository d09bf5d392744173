"""Connections and subscriptions in the connections table (``CONNECTIONS_TABLE``).

Key design (``pk`` + ``sk``, both strings), chosen for the publisher's hot path:

===========================  ==================  ==========================================================
pk                           sk                  attributes
===========================  ==================  ==========================================================
``conn#<connectionId>``      ``conn``            ``connectionId``, ``ip``, ``connectedAtMs``, ``lastSeenMs``,
                                                 ``idleShard``, ``user``/``product`` once authenticated,
                                                 ``subs`` (M: subscriptionId → {channel, key, sessionId}),
                                                 ``ttl``
``session#<sessionId>``      ``sub#<subId>``     ``connectionId``, ``channel``, ``freq`` (N, emotion channels),
                                                 ``user``, ``originMs`` (the session's createdAtMs), ``ttl``
``user#<user>``              ``subs``            ``subs`` (M: subscriptionId → connectionId), ``ttl``
===========================  ==================  ==========================================================

- The publisher finds every subscriber of a session with **one strongly consistent Query** on
  ``session#<id>`` (no GSI lag: a subscription is live the moment its reply is sent).
- Limits are race-free: a subscribe is one transaction that adds the subscription to the connection's
  ``subs`` map only while ``size(subs) < 5``, to the user's map only while ``size(subs) < 10``, and puts
  the session index item. Entries left behind by connections that vanished without ``$disconnect`` are
  reconciled when a user hits the limit.
- The idle sweeper queries the sparse GSI ``byIdle`` (``idleShard`` + ``lastSeenMs``; only connection items
  have ``idleShard``, spread over a few shards) and re-reads each candidate before closing it.
- Removal deletes the connection item first (returning its last image), so a subscribe racing with a
  disconnect either lands in that image and is cleaned up, or fails its ``attribute_exists`` condition.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..dynamo import batch_write, deserialize, error_code, query_all
from .protocol import Channel, Target

logger = logging.getLogger(__name__)

CONNECTION_SK = "conn"
USER_SUBS_SK = "subs"
IDLE_INDEX = "byIdle"
IDLE_SHARDS = 4


def connection_pk(connection_id: str) -> str:
    return f"conn#{connection_id}"


def session_pk(session_id: str) -> str:
    return f"session#{session_id}"


def subscription_sk(subscription_id: str) -> str:
    return f"sub#{subscription_id}"


def user_pk(user: str) -> str:
    return f"user#{user}"


def idle_shard(connection_id: str) -> str:
    return f"idle#{zlib.crc32(connection_id.encode()) % IDLE_SHARDS}"


class ConnectionGone(Exception):
    """The connection item no longer exists (closed, swept, or never opened)."""


class SubscriptionLimit(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SubscriptionRef:
    id: str
    channel: str
    key: str
    session_id: str


@dataclass(frozen=True)
class Connection:
    id: str
    ip: str
    connected_at_ms: int
    last_seen_ms: int
    user: str | None = None
    product: str | None = None
    subscriptions: dict[str, SubscriptionRef] = field(default_factory=dict)
    token_hash: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    def find(self, channel: str, key: str) -> SubscriptionRef | None:
        return next((s for s in self.subscriptions.values() if s.channel == channel and s.key == key), None)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Connection:
        subs = {
            str(sid): SubscriptionRef(str(sid), str(d["channel"]), str(d["key"]), str(d["sessionId"]))
            for sid, d in (item.get("subs") or {}).items()
        }
        return cls(
            id=str(item["connectionId"]),
            ip=str(item.get("ip", "")),
            connected_at_ms=int(item.get("connectedAtMs", 0)),
            last_seen_ms=int(item.get("lastSeenMs", 0)),
            user=item.get("user"),
            product=item.get("product"),
            subscriptions=subs,
            token_hash=item.get("tokenHash"),
        )


@dataclass(frozen=True)
class Subscriber:
    """One subscription of a session, as the publisher needs it."""

    subscription_id: str
    connection_id: str
    channel: Channel
    freq: int | None
    origin_ms: int


class ConnectionStore:
    def __init__(self, client: Any, table: str, *, ttl_seconds: int = 3 * 3600) -> None:
        self._db = client
        self._table = table
        self._ttl_seconds = ttl_seconds

    def _ttl(self, now_ms: int) -> int:
        return now_ms // 1000 + self._ttl_seconds

    # ------------------------------------------------------------------ connections
    def open(self, connection_id: str, ip: str, now_ms: int) -> None:
        self._db.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": connection_pk(connection_id)},
                "sk": {"S": CONNECTION_SK},
                "connectionId": {"S": connection_id},
                "ip": {"S": ip},
                "connectedAtMs": {"N": str(now_ms)},
                "lastSeenMs": {"N": str(now_ms)},
                "idleShard": {"S": idle_shard(connection_id)},
                "subs": {"M": {}},
                "ttl": {"N": str(self._ttl(now_ms))},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    def get(self, connection_id: str) -> Connection | None:
        response = self._db.get_item(
            TableName=self._table,
            Key={"pk": {"S": connection_pk(connection_id)}, "sk": {"S": CONNECTION_SK}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return Connection.from_item(deserialize(item)) if item else None

    def touch(self, connection_id: str, now_ms: int) -> Connection | None:
        """Record activity (the idle clock restarts) and return the connection, in one write; None if gone."""
        try:
            response = self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": connection_pk(connection_id)}, "sk": {"S": CONNECTION_SK}},
                UpdateExpression="SET lastSeenMs = :now, #ttl = :ttl",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":now": {"N": str(now_ms)}, ":ttl": {"N": str(self._ttl(now_ms))}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return Connection.from_item(deserialize(response["Attributes"]))

    def authenticate(self, connection_id: str, user: str, product: str, now_ms: int, token_hash: str) -> None:
        """Bind the connection to ``user`` (the subject its limits count against) and the token's hash (checked
        again on every message, so a revoked or expired token stops working on open connections too).
        Raises :class:`ConnectionGone`."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": connection_pk(connection_id)}, "sk": {"S": CONNECTION_SK}},
                UpdateExpression="SET #u = :u, product = :p, tokenHash = :h",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#u": "user"},
                ExpressionAttributeValues={":u": {"S": user}, ":p": {"S": product}, ":h": {"S": token_hash}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConnectionGone(connection_id) from None
            raise
        self._ensure_user(user, now_ms)

    def _ensure_user(self, user: str, now_ms: int) -> None:
        self._db.update_item(
            TableName=self._table,
            Key={"pk": {"S": user_pk(user)}, "sk": {"S": USER_SUBS_SK}},
            UpdateExpression="SET subs = if_not_exists(subs, :empty), #ttl = :ttl",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={":empty": {"M": {}}, ":ttl": {"N": str(self._ttl(now_ms))}},
        )

    def remove(self, connection_id: str) -> Connection | None:
        """Forget a connection and all its subscriptions (idempotent). Returns what was removed."""
        response = self._db.delete_item(
            TableName=self._table,
            Key={"pk": {"S": connection_pk(connection_id)}, "sk": {"S": CONNECTION_SK}},
            ReturnValues="ALL_OLD",
        )
        old = response.get("Attributes")
        if not old:
            return None
        connection = Connection.from_item(deserialize(old))
        refs = list(connection.subscriptions.values())
        self.delete_subscription_items((ref.session_id, ref.id) for ref in refs)
        if connection.user and refs:
            self._forget_user_subscriptions(connection.user, [ref.id for ref in refs])
        return connection

    def delete_subscription_items(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Delete session index items ``(sessionId, subscriptionId)`` (idempotent)."""
        requests = [
            {"DeleteRequest": {"Key": {"pk": {"S": session_pk(sid)}, "sk": {"S": subscription_sk(sub)}}}}
            for sid, sub in dict.fromkeys(pairs)
        ]
        if requests:
            batch_write(self._db, self._table, requests)

    def _forget_user_subscriptions(self, user: str, subscription_ids: list[str]) -> None:
        names = {f"#s{i}": sid for i, sid in enumerate(subscription_ids)}
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": user_pk(user)}, "sk": {"S": USER_SUBS_SK}},
                UpdateExpression="REMOVE " + ", ".join(f"subs.{n}" for n in names),
                ConditionExpression="attribute_exists(subs)",
                ExpressionAttributeNames=names,
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    # ------------------------------------------------------------------ subscriptions
    def subscribe(
        self,
        connection: Connection,
        target: Target,
        subscription_id: str,
        origin_ms: int,
        now_ms: int,
        *,
        max_per_connection: int,
        max_per_user: int,
    ) -> None:
        """Add a subscription atomically under both limits. Raises :class:`SubscriptionLimit` or
        :class:`ConnectionGone`."""
        if connection.user is None:
            raise ValueError("subscribe needs an authenticated connection")
        for attempt in range(3):
            try:
                self._subscribe_transaction(connection, target, subscription_id, origin_ms, now_ms,
                                            max_per_connection, max_per_user)
                return
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                current = self.get(connection.id)
                if current is None:
                    raise ConnectionGone(connection.id)
                if len(current.subscriptions) >= max_per_connection:
                    raise SubscriptionLimit(
                        f"subscription limit reached: at most {max_per_connection} subscriptions per connection;"
                        " unsubscribe from one first"
                    )
                continue  # the map changed under us (a concurrent unsubscribe): try again
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                if attempt == 0 and self._reconcile_user(connection.user, now_ms):
                    continue
                raise SubscriptionLimit(
                    f"subscription limit reached: at most {max_per_user} subscriptions per user across all"
                    " connections; unsubscribe from one first"
                )
            raise RuntimeError(f"subscribe transaction cancelled: {reasons}")
        raise SubscriptionLimit("subscriptions changed concurrently too often; retry")

    def _subscribe_transaction(
        self,
        connection: Connection,
        target: Target,
        subscription_id: str,
        origin_ms: int,
        now_ms: int,
        max_per_connection: int,
        max_per_user: int,
    ) -> None:
        assert connection.user is not None
        ttl = {"N": str(self._ttl(now_ms))}
        sub_item: dict[str, Any] = {
            "pk": {"S": session_pk(target.session_id)},
            "sk": {"S": subscription_sk(subscription_id)},
            "connectionId": {"S": connection.id},
            "channel": {"S": target.channel.value},
            "user": {"S": connection.user},
            "originMs": {"N": str(origin_ms)},
            "ttl": ttl,
        }
        if target.freq_seconds is not None:
            sub_item["freq"] = {"N": str(target.freq_seconds)}
        ref = {
            "M": {
                "channel": {"S": target.channel.value},
                "key": {"S": target.key},
                "sessionId": {"S": target.session_id},
            }
        }
        self._db.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"pk": {"S": connection_pk(connection.id)}, "sk": {"S": CONNECTION_SK}},
                        "UpdateExpression": "SET subs.#sid = :ref",
                        "ConditionExpression": "attribute_exists(pk) AND size(subs) < :max",
                        "ExpressionAttributeNames": {"#sid": subscription_id},
                        "ExpressionAttributeValues": {":ref": ref, ":max": {"N": str(max_per_connection)}},
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"pk": {"S": user_pk(connection.user)}, "sk": {"S": USER_SUBS_SK}},
                        "UpdateExpression": "SET subs.#sid = :conn, #ttl = :ttl",
                        "ConditionExpression": "attribute_exists(subs) AND size(subs) < :max",
                        "ExpressionAttributeNames": {"#sid": subscription_id, "#ttl": "ttl"},
                        "ExpressionAttributeValues": {
                            ":conn": {"S": connection.id},
                            ":max": {"N": str(max_per_user)},
                            ":ttl": ttl,
                        },
                    }
                },
                {"Put": {"TableName": self._table, "Item": sub_item}},
            ]
        )

    def _reconcile_user(self, user: str, now_ms: int) -> bool:
        """Drop entries of the user's subscription map whose connection no longer holds them (connections that
        vanished without ``$disconnect``). True if anything was dropped or the map was missing."""
        response = self._db.get_item(
            TableName=self._table,
            Key={"pk": {"S": user_pk(user)}, "sk": {"S": USER_SUBS_SK}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item or "subs" not in item:
            self._ensure_user(user, now_ms)
            return True
        entries: dict[str, str] = {str(k): str(v) for k, v in deserialize(item)["subs"].items()}
        live: dict[str, set[str]] = {}
        for connection_id in set(entries.values()):
            current = self.get(connection_id)
            live[connection_id] = set(current.subscriptions) if current else set()
        stale = [sid for sid, cid in entries.items() if sid not in live[cid]]
        if not stale:
            return False
        logger.info("dropping %d stale subscription entries of user %s", len(stale), user)
        self._forget_user_subscriptions(user, stale)
        return True

    def unsubscribe(self, connection: Connection, subscription_id: str) -> bool:
        """Remove one of the connection's subscriptions. False if it has no such subscription."""
        ref = connection.subscriptions.get(subscription_id)
        if ref is None:
            return False
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"pk": {"S": connection_pk(connection.id)}, "sk": {"S": CONNECTION_SK}},
                            "UpdateExpression": "REMOVE subs.#sid",
                            "ConditionExpression": "attribute_exists(subs.#sid)",
                            "ExpressionAttributeNames": {"#sid": subscription_id},
                        }
                    },
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": {
                                "pk": {"S": session_pk(ref.session_id)},
                                "sk": {"S": subscription_sk(subscription_id)},
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                return False
            raise
        if connection.user:
            self._forget_user_subscriptions(connection.user, [subscription_id])
        return True

    def subscribers(self, session_id: str) -> list[Subscriber]:
        """Every subscription on a session (one strongly consistent query)."""
        out = []
        for item in query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}},
            ConsistentRead=True,
        ):
            try:
                channel = Channel(item["channel"])
            except (KeyError, ValueError):
                logger.warning("ignoring malformed subscription item %s/%s", item.get("pk"), item.get("sk"))
                continue
            out.append(
                Subscriber(
                    subscription_id=str(item["sk"]).removeprefix("sub#"),
                    connection_id=str(item["connectionId"]),
                    channel=channel,
                    freq=int(item["freq"]) if "freq" in item else None,
                    origin_ms=int(item.get("originMs", 0)),
                )
            )
        return out

    # ------------------------------------------------------------------ idle sweep
    def idle_candidates(self, cutoff_ms: int) -> list[str]:
        """Connection ids whose last activity (per the eventually consistent index) is before ``cutoff_ms``."""
        out: list[str] = []
        for shard in range(IDLE_SHARDS):
            for item in query_all(
                self._db,
                TableName=self._table,
                IndexName=IDLE_INDEX,
                KeyConditionExpression="idleShard = :s AND lastSeenMs < :cut",
                ExpressionAttributeValues={":s": {"S": f"idle#{shard}"}, ":cut": {"N": str(cutoff_ms)}},
            ):
                out.append(str(item["pk"]).removeprefix("conn#"))
        return out
