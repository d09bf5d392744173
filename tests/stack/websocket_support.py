"""A small WebSocket client for the black-box tests (aiohttp), and direct access to the stack's tables to drive
the channels deterministically (sessions and emotion buckets written as the worker would)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import boto3
from emotion_shared.clock import iso_ms
from emotion_shared.dynamo import serialize
from emotion_shared.emotions import Bucket, EmotionStore
from emotion_shared.ids import new_session_id
from stack_support import StackProcess

RECEIVE_TIMEOUT = 20.0  # a bound for "it arrives", never a speed assertion


def ws_url(stack: StackProcess) -> str:
    return str(stack.state["components"]["websocket"]["url"])


def aws_client(stack: StackProcess, service: str) -> Any:
    aws = stack.state["aws"]
    return boto3.session.Session().client(
        service, endpoint_url=aws["endpoint"], region_name=aws["region"],
        aws_access_key_id="local", aws_secret_access_key="local",
    )


def table(stack: StackProcess, logical: str) -> str:
    return str(stack.state["tables"][logical])


def put_session(stack: StackProcess, user: str, worker_state: str = "working", created_ms: int | None = None) -> str:
    """A session item as the REST API writes it, but outside capacity and the sweeper's index (no workflow)."""
    created = created_ms if created_ms is not None else time.time_ns() // 1_000_000
    session_id = new_session_id(created // 1000)
    item = {
        "id": session_id, "user": user, "product": "standard", "name": "ws test", "type": "live_analysis",
        "state": "active", "createdAt": iso_ms(created), "createdAtMs": created, "streamUri": "rtmp://h/x",
        "config": {"removeMedia": True, "analysisFps": 5.0}, "sources": [],
        "meta": {"expires": iso_ms(created + 86_400_000), "workerState": worker_state},
        "stopRequested": False, "capacityHeld": False, "version": 3, "ttl": created // 1000 + 86_400,
    }
    aws_client(stack, "dynamodb").put_item(TableName=table(stack, "SessionsTable"), Item=serialize(item))
    return session_id


def set_worker_state(stack: StackProcess, session_id: str, state: str) -> None:
    aws_client(stack, "dynamodb").update_item(
        TableName=table(stack, "SessionsTable"), Key={"id": {"S": session_id}},
        UpdateExpression="SET meta.workerState = :w", ExpressionAttributeValues={":w": {"S": state}},
    )


def write_buckets(stack: StackProcess, session_id: str, buckets: list[Bucket]) -> None:
    EmotionStore(aws_client(stack, "dynamodb"), table(stack, "EmotionsTable")).write(session_id, buckets)


def subscriptions_of(stack: StackProcess, session_id: str) -> set[str]:
    """Connection ids subscribed to a session, from the publisher's index."""
    response = aws_client(stack, "dynamodb").query(
        TableName=table(stack, "ConnectionsTable"), KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": f"session#{session_id}"}}, ConsistentRead=True,
    )
    return {item["connectionId"]["S"] for item in response.get("Items", [])}


@dataclass
class Closed:
    code: int | None
    messages: list[Any] = field(default_factory=list)


class Client:
    """Requests get their reply by id; channel events (JSON arrays) are queued for :meth:`event`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[list[Any]] = []
        self.replies: list[dict[str, Any]] = []
        self._ids = 0

    async def send(self, path: str, body: dict[str, Any] | None = None) -> int:
        self._ids += 1
        message: dict[str, Any] = {"id": self._ids, "path": path}
        if body is not None:
            message["body"] = body
        await self.ws.send_str(json.dumps(message))
        return self._ids

    async def _next(self, timeout: float) -> Any:
        message = await self.ws.receive(timeout=timeout)
        if message.type == aiohttp.WSMsgType.TEXT:
            return json.loads(message.data)
        if message.type == aiohttp.WSMsgType.CLOSE:
            return Closed(int(message.data))  # the code in the server's close frame
        if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return Closed(self.ws.close_code)
        raise AssertionError(f"unexpected WebSocket message {message!r}")

    async def request(self, path: str, body: dict[str, Any] | None = None,
                      timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
        request_id = await self.send(path, body)
        return await self.reply(request_id, timeout)

    async def reply(self, request_id: int, timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
        while True:
            for reply in self.replies:
                if reply.get("id") == request_id:
                    self.replies.remove(reply)
                    return reply
            message = await self._next(timeout)
            if isinstance(message, Closed):
                raise AssertionError(f"closed ({message.code}) before the reply to {request_id}")
            (self.events if isinstance(message, list) else self.replies).append(message)

    async def event(self, timeout: float = RECEIVE_TIMEOUT) -> list[Any]:
        while not self.events:
            message = await self._next(timeout)
            if isinstance(message, Closed):
                raise AssertionError(f"closed ({message.code}) while waiting for an event")
            (self.events if isinstance(message, list) else self.replies).append(message)
        return self.events.pop(0)

    async def closed(self, timeout: float = RECEIVE_TIMEOUT) -> Closed:
        """Wait for the server to close; returns what arrived before."""
        seen: list[Any] = []
        while True:
            message = await self._next(timeout)
            if isinstance(message, Closed):
                message.messages = seen
                return message
            seen.append(message)

    async def auth(self, token: str) -> dict[str, Any]:
        return await self.request("auth:token", {"token": token})

    async def subscribe(self, channel: str, key: str) -> dict[str, Any]:
        return await self.request("channels:subscribe", {"channel": channel, "key": key})


@asynccontextmanager
async def connected(url: str, local_addr: str | None = None) -> AsyncIterator[Client]:
    connector = aiohttp.TCPConnector(local_addr=(local_addr, 0) if local_addr else None, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session, session.ws_connect(url, autoping=True) as ws:
        yield Client(ws)


@asynccontextmanager
async def authenticated(stack: StackProcess, user: str) -> AsyncIterator[Client]:
    async with connected(ws_url(stack)) as client:
        reply = await client.auth(stack.token(user))
        assert reply == {"id": reply["id"], "path": "auth:token", "status": 200}
        yield client


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
