"""Connections table: connection lifecycle, race-free subscription limits, reconciliation, the publisher's
index and the idle index — against the moto server, tables from template.yaml."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from emotion_shared.ws.protocol import Channel, Target, parse_target
from emotion_shared.ws.store import ConnectionGone, ConnectionStore, SubscriptionLimit

SID = "65f1a2b3c4d5e6f708090a0b"
OTHER = "65f1a2b3c4d5e6f708090a0c"
FREQS = ["1s", "3s", "5s", "10s", "30s", "1m", "5m", "10m"]


@pytest.fixture
def store(dynamodb: Any, tables: dict[str, str]) -> ConnectionStore:
    return ConnectionStore(dynamodb, tables["CONNECTIONS_TABLE"])


def target(i: int, session: str = SID) -> Target:
    return parse_target({"channel": "session_emotions_counts", "key": f"{session}:{FREQS[i % len(FREQS)]}"})


def opened(store: ConnectionStore, cid: str, user: str = "alice", now: int = 1000) -> Any:
    store.open(cid, "127.0.0.1", now)
    store.authenticate(cid, user, "standard", now, "h" * 64)
    connection = store.get(cid)
    assert connection is not None
    return connection


def subscribe(store: ConnectionStore, connection: Any, i: int, sub: str, session: str = SID) -> None:
    store.subscribe(connection, target(i, session), sub, origin_ms=5000, now_ms=2000,
                    max_per_connection=5, max_per_user=10)


def test_connection_lifecycle(store: ConnectionStore) -> None:
    # Given a new connection
    store.open("c1", "10.0.0.1", 1000)
    connection = store.get("c1")
    assert connection is not None
    assert (connection.ip, connection.authenticated, connection.subscriptions) == ("10.0.0.1", False, {})
    # When it is touched, the idle clock restarts, in the same write that reads it
    touched = store.touch("c1", 4000)
    assert touched is not None and touched.last_seen_ms == 4000
    # When it authenticates
    store.authenticate("c1", "alice", "standard", 4000, "h" * 64)
    connection = store.get("c1")
    assert connection is not None and (connection.user, connection.product) == ("alice", "standard")
    # Then removing it returns what it was, and it is gone
    removed = store.remove("c1")
    assert removed is not None and removed.user == "alice"
    assert store.get("c1") is None
    assert store.touch("c1", 5000) is None
    assert store.remove("c1") is None
    with pytest.raises(ConnectionGone):
        store.authenticate("c1", "alice", "standard", 5000, "h" * 64)


def test_subscriptions_are_indexed_by_session_for_the_publisher(store: ConnectionStore) -> None:
    c1 = opened(store, "c1")
    subscribe(store, c1, 2, "000000000000000a")
    store.subscribe(c1, parse_target({"channel": "session_worker_state", "key": SID}), "000000000000000b",
                    origin_ms=5000, now_ms=2000, max_per_connection=5, max_per_user=10)
    subscribe(store, c1, 0, "000000000000000c", session=OTHER)
    rows = {s.subscription_id: s for s in store.subscribers(SID)}
    assert set(rows) == {"000000000000000a", "000000000000000b"}
    assert (rows["000000000000000a"].channel, rows["000000000000000a"].freq) == (Channel.EMOTION_COUNTS, 5)
    assert (rows["000000000000000b"].channel, rows["000000000000000b"].freq) == (Channel.WORKER_STATE, None)
    assert all(r.connection_id == "c1" and r.origin_ms == 5000 for r in rows.values())
    assert [s.subscription_id for s in store.subscribers(OTHER)] == ["000000000000000c"]
    # the connection knows its subscriptions (for duplicates and cleanup)
    connection = store.get("c1")
    assert connection is not None
    assert connection.find("session_emotions_counts", f"{SID}:5s").id == "000000000000000a"
    # removing the connection removes them from the index
    store.remove("c1")
    assert store.subscribers(SID) == [] and store.subscribers(OTHER) == []


def test_at_most_five_per_connection(store: ConnectionStore) -> None:
    c1 = opened(store, "c1")
    for i in range(5):
        subscribe(store, c1, i, f"{i:016x}")
    with pytest.raises(SubscriptionLimit, match="at most 5 subscriptions per connection"):
        subscribe(store, c1, 5, f"{5:016x}")
    assert len(store.subscribers(SID)) == 5


def test_at_most_ten_per_user_across_connections_and_freed_by_disconnect(store: ConnectionStore) -> None:
    c1, c2, c3 = (opened(store, c) for c in ("c1", "c2", "c3"))
    for i in range(5):
        subscribe(store, c1, i, f"1{i:015x}")
        subscribe(store, c2, i, f"2{i:015x}")
    with pytest.raises(SubscriptionLimit, match="at most 10 subscriptions per user"):
        subscribe(store, c3, 0, f"3{0:015x}")
    # another user is not affected
    subscribe(store, opened(store, "c4", user="bob"), 0, f"4{0:015x}")
    # a disconnect frees its slots
    store.remove("c1")
    subscribe(store, c3, 0, f"3{0:015x}")


def test_unsubscribe_frees_the_slot_everywhere(store: ConnectionStore) -> None:
    c1 = opened(store, "c1")
    for i in range(5):
        subscribe(store, c1, i, f"{i:016x}")
    c1 = store.get("c1")
    assert store.unsubscribe(c1, f"{0:016x}") is True
    assert store.unsubscribe(c1, "ffffffffffffffff") is False
    assert f"{0:016x}" not in {s.subscription_id for s in store.subscribers(SID)}
    c1 = store.get("c1")
    assert store.unsubscribe(c1, f"{0:016x}") is False  # already gone
    subscribe(store, c1, 7, f"{7:016x}")


def test_entries_of_vanished_connections_are_reconciled(store: ConnectionStore, dynamodb: Any,
                                                        tables: dict[str, str]) -> None:
    # Given a user's connections vanished without $disconnect (their items expired or were lost)
    c1, c2 = opened(store, "c1"), opened(store, "c2")
    for i in range(5):
        subscribe(store, c1, i, f"1{i:015x}")
        subscribe(store, c2, i, f"2{i:015x}")
    for cid in ("c1", "c2"):
        dynamodb.delete_item(TableName=tables["CONNECTIONS_TABLE"],
                             Key={"pk": {"S": f"conn#{cid}"}, "sk": {"S": "conn"}})
    # When the user subscribes on a new connection, the stale entries are dropped instead of refusing it
    subscribe(store, opened(store, "c3"), 0, f"3{0:015x}")


def test_subscribe_on_a_gone_connection(store: ConnectionStore) -> None:
    c1 = opened(store, "c1")
    store.remove("c1")
    with pytest.raises(ConnectionGone):
        subscribe(store, c1, 0, f"{0:016x}")


def test_concurrent_subscribes_never_exceed_the_limit(store: ConnectionStore) -> None:
    c1 = opened(store, "c1")

    def attempt(i: int) -> bool:
        try:
            subscribe(store, c1, i, f"{i:016x}")
            return True
        except SubscriptionLimit:
            return False

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert sum(results) == 5
    connection = store.get("c1")
    assert connection is not None and len(connection.subscriptions) == 5
    assert len(store.subscribers(SID)) == 5


def test_idle_candidates(store: ConnectionStore) -> None:
    for cid, seen in (("old1", 1000), ("old2", 2000), ("fresh", 9000)):
        store.open(cid, "127.0.0.1", seen)
    assert sorted(store.idle_candidates(5000)) == ["old1", "old2"]
    store.touch("old1", 9500)
    assert sorted(store.idle_candidates(5000)) == ["old2"]
