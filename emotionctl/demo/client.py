"""The demo's two clients (aiohttp): the REST calls, and the WebSocket protocol (docs/websocket.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from .environment import DemoError

WS_PING_SECONDS = 30.0  # the WebSocket API closes a connection without client messages after 65 s


class RequestFailed(DemoError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Api:
    """The REST calls the demo makes (aiohttp)."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http = http
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.request(method, self.base + path, json=body, headers=self.headers) as response:
            text = await response.text()
            try:
                data = json.loads(text) if text else None
            except ValueError:
                data = None
            if response.status >= 400:
                message = data.get("message") if isinstance(data, dict) else None
                raise RequestFailed(response.status, f"{method} {path}: {response.status} {message or text[:200]}")
            return data


class Channels:
    """The WebSocket API: authenticate, subscribe, then events (``sws``/``sei``) on a queue.

    Events are told apart by type (one subscription per type), so an event that beats its subscribe reply
    (possible, per docs/websocket.md) still lands in the right place."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: asyncio.Queue[tuple[str, int, Any] | None] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = 0

    async def run(self) -> None:
        """Read until the connection closes (then put ``None``)."""
        try:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if isinstance(data, list) and len(data) >= 4:  # a fifth element (frames) may follow
                    _, stamp, kind, payload = data[:4]
                    self.events.put_nowait((str(kind), int(stamp), payload[0] if payload else None))
                elif isinstance(data, dict):
                    future = self._replies.pop(data.get("id"), None)  # type: ignore[arg-type]
                    if future is not None and not future.done():
                        future.set_result(data)
        finally:
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(DemoError("the WebSocket connection closed"))
            self.events.put_nowait(None)

    async def request(self, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        self._ids += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._ids] = future
        message: dict[str, Any] = {"id": self._ids, "path": path}
        if body is not None:
            message["body"] = body
        await self.ws.send_str(json.dumps(message))
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise DemoError(f"WebSocket {path}: no reply within {timeout:.0f} s") from None
        if reply.get("status") != 200:
            error = (reply.get("body") or {}).get("message", reply)
            raise DemoError(f"WebSocket {path}: {reply.get('status')} {error}")
        return reply

    async def keepalive(self) -> None:
        while True:
            await asyncio.sleep(WS_PING_SECONDS)
            await self.ws.send_str(json.dumps({"path": "ping"}))


