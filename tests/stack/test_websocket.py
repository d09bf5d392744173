"""Black box over a real WebSocket: the reference protocol against `emotionctl local up`.

Sessions and emotion buckets are written straight into the stack's tables (as the REST API and the worker
would), so the channels are driven deterministically; the numbers are compared with the REST timeline
served by the same stack.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import aiohttp
import boto3
import pytest
from emotion_shared import emotions
from emotion_shared.emotions import Bucket
from emotion_shared.errors import ErrorCode
from stack_support import StackProcess, start_stack
from websocket_support import (
    Client,
    authenticated,
    aws_client,
    connected,
    put_session,
    run,
    set_worker_state,
    subscriptions_of,
    table,
    write_buckets,
    ws_url,
)

pytestmark = pytest.mark.stack

COUNTS = "session_emotions_counts"
INTENSITIES = "session_emotions_intensities"
STATE = "session_worker_state"


def faces(sec: int, rng: random.Random, tracks: int = 3) -> Bucket:
    bucket = Bucket(sec=sec, frames=5)
    if sec % 6 == 5:
        return bucket  # nobody in view
    for _ in range(rng.randint(1, 8)):
        scores = [rng.random() ** 3 for _ in emotions.EMOTIONS]
        total = sum(scores)
        bucket.observe(f"t{rng.randint(1, tracks)}", [s / total for s in scores])
    return bucket


def _error(reply: dict[str, Any], status: int, path: str | None, code: ErrorCode) -> str:
    """The reply is the error the protocol documents (docs/websocket.md): its status, and exactly its code."""
    assert reply["status"] == status, reply
    assert reply["path"] == path
    body = reply["body"]
    assert body["error"] is True and body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert body["code"] == code, reply
    return str(body["message"])


# ------------------------------------------------------------------ authentication and framing
def test_auth_then_ping(local_stack: StackProcess) -> None:
    async def main() -> None:
        async with connected(ws_url(local_stack)) as client:
            reply = await client.auth(local_stack.token("alice"))
            assert reply == {"id": 1, "path": "auth:token", "status": 200}
            before = time.time_ns() // 1_000_000
            pong = await client.request("ping")
            assert set(pong) == {"id", "path", "status", "body"}
            assert (pong["id"], pong["path"], pong["status"]) == (2, "ping", 200)
            assert isinstance(pong["body"]["ts"], int) and pong["body"]["ts"] >= before - 60_000
            # a second auth:token is refused but does not close the connection
            _error(await client.auth(local_stack.token("alice")), 400, "auth:token", ErrorCode.ALREADY_AUTHENTICATED)
            _error(await client.request("no:such:path"), 404, "no:such:path", ErrorCode.UNKNOWN_PATH)
            assert (await client.request("ping"))["status"] == 200

    run(main())


@pytest.mark.parametrize(
    "first",
    [
        '{"id": 1, "path": "ping"}',
        '{"id": 1, "path": "channels:subscribe", "body": {"channel": "session_worker_state", "key": "x"}}',
    ],
)
def test_anything_but_auth_first_is_refused_and_closed(local_stack: StackProcess, first: str) -> None:
    async def main() -> None:
        async with connected(ws_url(local_stack)) as client:
            await client.ws.send_str(first)
            closed = await client.closed()
            (reply,) = closed.messages
            _error(reply, 401, reply["path"], ErrorCode.UNAUTHORIZED)
            assert "auth:token" in reply["body"]["message"]

    run(main())


@pytest.mark.parametrize("body", [{"token": "emo_not-a-real-token"}, {"token": ""}, {}, None])
def test_a_bad_token_is_401_and_closed(local_stack: StackProcess, body: dict[str, Any] | None) -> None:
    async def main() -> None:
        async with connected(ws_url(local_stack)) as client:
            await client.send("auth:token", body)
            closed = await client.closed()
            (reply,) = closed.messages
            assert reply["id"] == 1
            _error(reply, 401, "auth:token", ErrorCode.UNAUTHORIZED)

    run(main())


@pytest.mark.parametrize(
    "raw", ["not json", "[1, 2, 3]", '{"id": 1}', '{"id": 1, "path": "ping", "body": 5}', '{"path": "ping", "x": 1}']
)
@pytest.mark.parametrize("authenticate", [False, True])
def test_non_json_or_malformed_closes(local_stack: StackProcess, raw: str, authenticate: bool) -> None:
    async def main() -> None:
        async with connected(ws_url(local_stack)) as client:
            if authenticate:
                assert (await client.auth(local_stack.token("alice")))["status"] == 200
            await client.ws.send_str(raw)
            closed = await client.closed()
            (reply,) = closed.messages
            _error(reply, 400, reply["path"], ErrorCode.PROTOCOL_ERROR)

    run(main())


# ------------------------------------------------------------------ subscriptions
def test_subscribe_errors(local_stack: StackProcess) -> None:
    alices = put_session(local_stack, "alice")
    missing = put_session(local_stack, "carol")[:-6] + "ffffff"

    async def main() -> None:
        async with authenticated(local_stack, "bob") as client:
            for body in (None, {}, {"channel": STATE}, {"channel": STATE, "key": alices, "extra": 1}):
                _error(await client.request("channels:subscribe", body), 400, "channels:subscribe",
                       ErrorCode.VALIDATION_FAILED)
            _error(await client.subscribe("session_everything", alices), 404, "channels:subscribe",
                   ErrorCode.UNKNOWN_CHANNEL)
            _error(await client.subscribe(COUNTS, f"{alices}:2s"), 404, "channels:subscribe", ErrorCode.UNKNOWN_CHANNEL)
            # a key that names no session (no period): as for a missing session
            _error(await client.subscribe(COUNTS, alices), 404, "channels:subscribe", ErrorCode.SESSION_NOT_FOUND)
            # someone else's session and a session that does not exist look the same
            other = _error(await client.subscribe(STATE, alices), 404, "channels:subscribe",
                           ErrorCode.SESSION_NOT_FOUND)
            absent = _error(await client.subscribe(STATE, missing), 404, "channels:subscribe",
                            ErrorCode.SESSION_NOT_FOUND)
            assert other.replace(alices, "X") == absent.replace(missing, "X")
            _error(await client.request("channels:unsubscribe", {"subscriptionId": "0123456789abcdef"}), 404,
                   "channels:unsubscribe", ErrorCode.SUBSCRIPTION_NOT_FOUND)
            _error(await client.request("channels:unsubscribe", {}), 400, "channels:unsubscribe",
                   ErrorCode.VALIDATION_FAILED)
            assert (await client.request("ping"))["status"] == 200  # still open

    run(main())


def test_worker_state_now_and_every_change(local_stack: StackProcess) -> None:
    session_id = put_session(local_stack, "alice", worker_state="connecting")

    async def main() -> None:
        async with authenticated(local_stack, "alice") as client:
            reply = await client.subscribe(STATE, session_id)
            assert reply["status"] == 200 and set(reply["body"]) == {"subscriptionId"}
            subscription = reply["body"]["subscriptionId"]
            first = await client.event()
            assert (first[0], first[2], first[3]) == (subscription, "sws", ["connecting"])
            assert isinstance(first[1], int)
            for state in ("working", "reconnecting", "working", "stopping", "stopped"):
                set_worker_state(local_stack, session_id, state)
                event = await client.event()
                assert (event[0], event[2], event[3]) == (subscription, "sws", [state])
            # subscribing again is idempotent: same id, and the current state again
            again = await client.subscribe(STATE, session_id)
            assert again["body"]["subscriptionId"] == subscription
            assert (await client.event())[3] == ["stopped"]

    run(main())


def test_unsubscribe_stops_the_events(local_stack: StackProcess) -> None:
    session_id = put_session(local_stack, "alice")
    rng = random.Random(3)

    async def main() -> None:
        async with authenticated(local_stack, "alice") as client:
            counts = (await client.subscribe(COUNTS, f"{session_id}:1s"))["body"]["subscriptionId"]
            state = (await client.subscribe(STATE, session_id))["body"]["subscriptionId"]
            assert (await client.event())[0] == state
            write_buckets(local_stack, session_id, [faces(0, rng)])
            assert (await client.event())[:3] == [counts, (await _origin(local_stack, session_id)) + 1000, "sec"]
            reply = await client.request("channels:unsubscribe", {"subscriptionId": counts})
            assert reply == {"id": reply["id"], "path": "channels:unsubscribe", "status": 200,
                             "body": {"subscriptionId": counts}}
            # a subscription already ended is one this connection does not have
            _error(await client.request("channels:unsubscribe", {"subscriptionId": counts}), 404,
                   "channels:unsubscribe", ErrorCode.SUBSCRIPTION_NOT_FOUND)
            # a bucket, then a state change: only the state change arrives
            write_buckets(local_stack, session_id, [faces(1, rng)])
            await asyncio.sleep(0.5)
            set_worker_state(local_stack, session_id, "reconnecting")
            event = await client.event()
            assert (event[0], event[3]) == (state, ["reconnecting"])
            assert client.events == []

    run(main())


async def _origin(stack: StackProcess, session_id: str) -> int:
    item = aws_client(stack, "dynamodb").get_item(TableName=table(stack, "SessionsTable"),
                                                  Key={"id": {"S": session_id}})["Item"]
    return int(item["createdAtMs"]["N"])


def test_emotion_events_equal_the_rest_timeline(local_stack: StackProcess) -> None:
    session_id = put_session(local_stack, "alice")
    rng = random.Random(11)
    written = [faces(sec, rng) for sec in range(20)]
    plan = {(COUNTS, "1s"): 1, (INTENSITIES, "5s"): 5, (COUNTS, "5s"): 5, (INTENSITIES, "10s"): 10}

    async def main() -> dict[str, list[list[Any]]]:
        async with authenticated(local_stack, "alice") as client:
            ids = {}
            for (channel, freq) in plan:
                reply = await client.subscribe(channel, f"{session_id}:{freq}")
                ids[reply["body"]["subscriptionId"]] = (channel, freq)
            # the worker writes one bucket per second (here: as fast as the test can)
            for bucket in written:
                write_buckets(local_stack, session_id, [bucket])
            expected = sum(20 // f for f in plan.values())
            events = [await client.event() for _ in range(expected)]
            by_key: dict[str, list[list[Any]]] = {}
            for event in events:
                by_key.setdefault(":".join(ids[event[0]]), []).append(event)
            return by_key

    by_key = run(main())
    origin = asyncio.run(_origin(local_stack, session_id))
    for (channel, freq), seconds in plan.items():
        events = by_key[f"{channel}:{freq}"]
        assert [e[1] for e in events] == [origin + (k + 1) * seconds * 1000 for k in range(20 // seconds)]
        assert {e[2] for e in events} == {"sec" if channel == COUNTS else "sei"}
        for k, event in enumerate(events):
            inside = [b for b in written if k * seconds <= b.sec < (k + 1) * seconds]
            (data,) = event[3]
            if channel == COUNTS:
                assert data == emotions.totals(inside)
        if channel == INTENSITIES:
            # the REST API's timeline for the same intervals, over HTTP
            response = local_stack.request(
                "GET", f"/v1/sessions/{session_id}/emotions/timeline",
                params={"granularity": max(seconds, 5), "start": 0, "end": 20},
            )
            assert response.status_code == 200, response.text
            timeline = {entry["start"]: entry for entry in response.json()["timeline"]}
            assert timeline, "the REST timeline is empty"
            for k, event in enumerate(events):
                (data,) = event[3]
                if k * seconds in timeline:
                    assert timeline[k * seconds]["end"] == (k + 1) * seconds
                    assert data == timeline[k * seconds]["emotions"]
                else:  # no face in that interval: REST omits it, the channel sends zeros
                    assert all(v["people"] == 0 for v in data.values())


# ------------------------------------------------------------------ limits
def test_five_subscriptions_per_connection_and_ten_per_user(local_stack: StackProcess) -> None:
    sessions = [put_session(local_stack, "limit-user") for _ in range(3)]
    keys = [(COUNTS, f"{s}:{f}") for s in sessions for f in ("1s", "3s", "5s", "10s", "30s")]

    async def main() -> None:
        async with authenticated(local_stack, "limit-user") as one, authenticated(local_stack, "limit-user") as two:
            for channel, key in keys[:5]:
                assert (await one.subscribe(channel, key))["status"] == 200
            message = _error(await one.subscribe(*keys[5]), 429, "channels:subscribe", ErrorCode.SUBSCRIPTION_LIMIT)
            assert "5 subscriptions per connection" in message
            for channel, key in keys[5:10]:
                assert (await two.subscribe(channel, key))["status"] == 200
            async with authenticated(local_stack, "limit-user") as three:
                message = _error(await three.subscribe(*keys[10]), 429, "channels:subscribe",
                                 ErrorCode.SUBSCRIPTION_LIMIT)
                assert "10 subscriptions per user" in message
                # another user is not limited by this one
                async with authenticated(local_stack, "limit-bystander") as other:
                    own = put_session(local_stack, "limit-bystander")
                    assert (await other.subscribe(STATE, own))["status"] == 200
                # closing a connection frees its subscriptions (its $disconnect runs after the close)
                await one.ws.close()
                for _ in range(100):
                    reply = await three.subscribe(*keys[10])
                    if reply["status"] == 200:
                        break
                    await asyncio.sleep(0.1)
                assert reply["status"] == 200

    run(main())


def test_eighty_messages_per_minute_per_user(local_stack: StackProcess) -> None:
    async def main() -> None:
        async with authenticated(local_stack, "chatty") as client:
            statuses = [(await client.request("ping"))["status"] for _ in range(80)]
            assert statuses == [200] * 80
            # the bucket refills at 80/60 s while we send: the refusal comes within a few more
            for _ in range(40):
                reply = await client.request("ping")
                if reply["status"] == 429:
                    break
            message = _error(reply, 429, "ping", ErrorCode.RATE_LIMITED)
            assert "80 per 60 s" in message
            assert reply["body"]["retryAfter"] >= 1
            # the limit is per user: a second connection of the same user is limited too (within the few
            # messages the bucket refilled while it connected on a slow machine, not after another 80)
            async with authenticated(local_stack, "chatty") as again:
                replies = [(await again.request("ping"))["status"] for _ in range(15)]
                assert 429 in replies, replies

    run(main())


def test_ninety_new_connections_per_minute_per_ip(local_stack: StackProcess) -> None:
    """From 127.0.0.2, so that the other tests' 127.0.0.1 keeps its budget."""
    url = ws_url(local_stack)

    async def attempt(session: aiohttp.ClientSession) -> int:
        try:
            async with session.ws_connect(url):
                return 101
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status

    async def main() -> None:
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            assert [await attempt(session) for _ in range(90)] == [101] * 90
            for _ in range(60):
                status = await attempt(session)
                if status != 101:
                    break
            assert status == 429
            # the refusal says why (the body of the refused handshake)
            headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
            async with session.get(url.replace("ws://", "http://"), headers=headers) as response:
                assert response.status == 429
                body = await response.json(content_type=None)
                assert body["status"] == 429 and "90 per 60 s" in body["message"]
                assert body["code"] == ErrorCode.RATE_LIMITED
                assert int(response.headers["Retry-After"]) >= 1
        # other addresses are not affected
        async with connected(url) as client:
            assert (await client.auth(local_stack.token("alice")))["status"] == 200

    run(main())


# ------------------------------------------------------------------ gone connections
def test_an_abruptly_closed_connection_is_removed_and_others_are_still_served(local_stack: StackProcess) -> None:
    session_id = put_session(local_stack, "alice")
    rng = random.Random(5)

    async def main() -> None:
        async with authenticated(local_stack, "alice") as keeper:
            kept = (await keeper.subscribe(COUNTS, f"{session_id}:1s"))["body"]["subscriptionId"]
            # a client that vanishes without a close frame
            session = aiohttp.ClientSession()
            ws = await session.ws_connect(ws_url(local_stack))
            doomed = Client(ws)
            assert (await doomed.auth(local_stack.token("alice")))["status"] == 200
            assert (await doomed.subscribe(COUNTS, f"{session_id}:1s"))["status"] == 200
            assert len(subscriptions_of(local_stack, session_id)) == 2
            transport = ws._response.connection.transport
            assert transport is not None
            transport.abort()
            await session.close()
            # and a stale subscription whose connection API Gateway no longer knows (a lost $disconnect)
            aws_client(local_stack, "dynamodb").put_item(
                TableName=table(local_stack, "ConnectionsTable"),
                Item={"pk": {"S": f"session#{session_id}"}, "sk": {"S": "sub#00000000deadbeef"},
                      "connectionId": {"S": "GHOSTconnection="}, "channel": {"S": COUNTS}, "freq": {"N": "1"},
                      "user": {"S": "alice"}, "originMs": {"N": "0"}},
            )
            # When buckets arrive, the keeper gets every one
            for sec in range(3):
                write_buckets(local_stack, session_id, [faces(sec, rng)])
                event = await keeper.event()
                assert (event[0], event[2]) == (kept, "sec")
            # Then the dead ones are gone from the index (by $disconnect or by the publisher's 410)
            for _ in range(100):
                if len(subscriptions_of(local_stack, session_id)) == 1:
                    break
                await asyncio.sleep(0.1)
            assert len(subscriptions_of(local_stack, session_id)) == 1

    run(main())


# ------------------------------------------------------------------ idle connections
@pytest.fixture(scope="module")
def short_idle_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    stack = start_stack(tmp_path_factory.mktemp("ws-idle"), "WebSocketIdleSeconds=3")
    try:
        yield stack
    finally:
        assert stack.stop() == 0, stack.log()


def test_idle_connections_are_closed_and_pings_keep_them_open(short_idle_stack: StackProcess) -> None:
    async def main() -> None:
        url = ws_url(short_idle_stack)
        async with connected(url) as silent, connected(url) as quiet_after_auth, connected(url) as pinger:
            assert (await quiet_after_auth.auth(short_idle_stack.token("alice")))["status"] == 200
            assert (await pinger.auth(short_idle_stack.token("alice")))["status"] == 200
            # the pinger sends a ping every 0.5 s (well inside 3 s) for longer than the idle limit
            for _ in range(14):
                assert (await pinger.request("ping"))["status"] == 200
                await asyncio.sleep(0.5)
            # never authenticated, or silent after auth: closed by the server
            assert (await silent.closed()).messages == []
            assert (await quiet_after_auth.closed()).messages == []
            assert (await pinger.request("ping"))["status"] == 200

    run(main())


# ------------------------------------------------------------------ the local management API
def test_the_management_api_with_the_real_boto_client(local_stack: StackProcess) -> None:
    session_id = put_session(local_stack, "alice")
    endpoint = local_stack.state["components"]["websocket"]["managementEndpoint"]
    management = boto3.session.Session().client(
        "apigatewaymanagementapi", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )

    async def main() -> None:
        async with authenticated(local_stack, "alice") as client:
            assert (await client.subscribe(STATE, session_id))["status"] == 200
            await client.event()
            (connection_id,) = subscriptions_of(local_stack, session_id)
            loop = asyncio.get_running_loop()
            info = await loop.run_in_executor(None, lambda: management.get_connection(ConnectionId=connection_id))
            assert info["Identity"]["SourceIp"] == "127.0.0.1"
            assert info["ConnectedAt"] <= info["LastActiveAt"]
            await loop.run_in_executor(None, lambda: management.post_to_connection(
                ConnectionId=connection_id, Data=b'["raw", 1, "sws", ["hello"]]'))
            assert await client.event() == ["raw", 1, "sws", ["hello"]]
            await loop.run_in_executor(None, lambda: management.delete_connection(ConnectionId=connection_id))
            assert (await client.closed()).code == 1000
            with pytest.raises(management.exceptions.GoneException):
                await loop.run_in_executor(None, lambda: management.post_to_connection(
                    ConnectionId=connection_id, Data=b"late"))

    run(main())
