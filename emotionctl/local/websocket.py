"""The WebSocket side of the local gateway: plays API Gateway for template.yaml's WebSocket API.

- ``GET /ws/<stage>`` (``ws://127.0.0.1:3000/ws/v1``): each connect, message and disconnect becomes an API
  Gateway WebSocket event (``requestContext.routeKey``, ``eventType`` CONNECT/MESSAGE/DISCONNECT,
  ``connectionId``, ``domainName``, ``stage``, ``identity.sourceIp``, ``body``) for the *same* handler code
  (the functions the template's routes integrate, loaded by path). A non-2xx ``$connect`` result rejects the
  handshake with that status and body, as API Gateway does. Messages of one connection are handled one at a
  time, in order.
- The management API, ``POST/GET/DELETE /ws/<stage>/@connections/{id}``: what
  ``apigatewaymanagementapi`` calls with ``endpoint_url=http://127.0.0.1:3000/ws/<stage>``. A connection
  that is gone answers 410 with ``x-amzn-ErrorType: GoneException`` (boto raises ``GoneException``).
- The idle sweeper function of the template (its EventBridge schedule) runs every few seconds.

Two components: :class:`WebSocketApiRefs` (before the functions: registers ``!Ref`` of the WebSocket API
and its stage, and points every function's ``WEBSOCKET_MANAGEMENT_ENDPOINT`` at this server) and
:class:`WebSocketGateway` (with the other routes, before the HTTP server).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .lambda_runtime import FunctionError, LambdaFunction

if TYPE_CHECKING:
    from .stack import LocalStack

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message limit
LOCAL_API_ID = "localws"
SWEEPER_FUNCTION = "WebSocketSweeperFunction"
_FUNCTION_IN_URI = re.compile(r"\$\{(\w+)\.Arn\}")


# ------------------------------------------------------------------ template
@dataclass(frozen=True)
class WebSocketApiSpec:
    api: str  # logical ids
    stage: str
    stage_name: str
    route_selection: str
    routes: dict[str, str]  # route key → function logical id

    @classmethod
    def from_template(cls, template: dict[str, Any]) -> WebSocketApiSpec:
        resources = template.get("Resources", {})

        def of_type(kind: str) -> dict[str, dict[str, Any]]:
            return {k: v for k, v in resources.items() if v.get("Type") == kind}

        apis = {k: v for k, v in of_type("AWS::ApiGatewayV2::Api").items()
                if v.get("Properties", {}).get("ProtocolType") == "WEBSOCKET"}
        if len(apis) != 1:
            raise ValueError(f"template.yaml has {len(apis)} WebSocket APIs; the local gateway serves exactly one")
        api, props = next(iter(apis.items()))

        def belongs(res: dict[str, Any]) -> bool:
            return res.get("Properties", {}).get("ApiId") == {"Ref": api}

        stages = {k: v for k, v in of_type("AWS::ApiGatewayV2::Stage").items() if belongs(v)}
        if len(stages) != 1:
            raise ValueError(f"the WebSocket API {api} needs exactly one stage, found {len(stages)}")
        stage, stage_res = next(iter(stages.items()))
        integrations: dict[str, str] = {}
        for name, res in of_type("AWS::ApiGatewayV2::Integration").items():
            if belongs(res):
                uri = res["Properties"].get("IntegrationUri")
                text = uri.get("Fn::Sub") if isinstance(uri, dict) else uri
                match = _FUNCTION_IN_URI.search(str(text))
                if match:
                    integrations[name] = match.group(1)
        routes: dict[str, str] = {}
        for name, res in of_type("AWS::ApiGatewayV2::Route").items():
            if not belongs(res):
                continue
            target = res["Properties"].get("Target")
            text = str(target.get("Fn::Sub") if isinstance(target, dict) else target)
            integration = text.removeprefix("integrations/").strip("${}")
            if integration not in integrations:
                raise ValueError(f"route {name} targets {text!r}, not a Lambda integration of {api}")
            routes[str(res["Properties"]["RouteKey"])] = integrations[integration]
        for required in ("$connect", "$disconnect", "$default"):
            if required not in routes:
                raise ValueError(f"the WebSocket API {api} has no {required} route")
        return cls(api, stage, str(stage_res["Properties"]["StageName"]),
                   str(props["Properties"].get("RouteSelectionExpression", "$request.body.action")), routes)

    def select(self, body: str | None) -> str:
        """The route of a message: its ``$request.body.<field>`` value if a route has that key, else $default."""
        prefix = "$request.body."
        if body and self.route_selection.startswith(prefix):
            try:
                value = json.loads(body)
            except ValueError:
                value = None
            for part in self.route_selection[len(prefix):].split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, str) and value in self.routes and not value.startswith("$"):
                return value
        return "$default"


def management_endpoint(stack: LocalStack, spec: WebSocketApiSpec) -> str:
    """The local ``@connections`` endpoint (``apigatewaymanagementapi``'s ``endpoint_url``): this server."""
    return f"{stack.url}/ws/{spec.stage_name}"


class WebSocketApiRefs:
    """Component (before the functions): ``!Ref`` of the WebSocket API and its stage; the functions reach this
    server's management API, not API Gateway's (``WEBSOCKET_MANAGEMENT_ENDPOINT`` override)."""

    name = "websocket-refs"

    def __init__(self) -> None:
        self.spec: WebSocketApiSpec | None = None

    async def start(self, stack: LocalStack) -> None:
        self.spec = WebSocketApiSpec.from_template(stack.template)
        stack.refs[self.spec.api] = LOCAL_API_ID
        stack.refs[self.spec.stage] = self.spec.stage_name
        stack.function_overrides["WEBSOCKET_MANAGEMENT_ENDPOINT"] = management_endpoint(stack, self.spec)

    async def stop(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"api": self.spec.api if self.spec else None}


# ------------------------------------------------------------------ events
def new_connection_id() -> str:
    """Like API Gateway's: 16 characters of URL-safe base64 ending in ``=``."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode("ascii")


def _request_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


@dataclass
class LocalConnection:
    id: str
    ws: web.WebSocketResponse
    source_ip: str
    user_agent: str | None
    connected_at_ms: int
    last_active_ms: int
    closing: bool = False
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class EventFacts:
    api_id: str
    stage: str
    domain_name: str


def websocket_event(
    facts: EventFacts,
    route_key: str,
    event_type: str,
    connection_id: str,
    source_ip: str,
    user_agent: str | None,
    connected_at_ms: int,
    *,
    body: str | None = None,
    is_base64: bool = False,
    headers: dict[str, str] | None = None,
    disconnect: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway WebSocket proxy event."""
    now = time.time_ns() // 1_000_000
    request_id = uuid.uuid4().hex[:16]
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": _request_time(now),
        "messageDirection": "IN",
        "stage": facts.stage,
        "connectedAt": connected_at_ms,
        "requestTimeEpoch": now,
        "identity": {"sourceIp": source_ip, **({"userAgent": user_agent} if user_agent else {})},
        "requestId": request_id,
        "domainName": facts.domain_name,
        "connectionId": connection_id,
        "apiId": facts.api_id,
    }
    event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": is_base64}
    if event_type == "MESSAGE":
        context["messageId"] = uuid.uuid4().hex[:16]
        event["body"] = body
    if headers is not None:
        event["headers"] = headers
        event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    if disconnect is not None:
        context["disconnectStatusCode"], context["disconnectReason"] = disconnect
    return event


def _log_failure(what: str, exc: Exception) -> None:
    if isinstance(exc, FunctionError):
        logger.error("%s failed: %s", what, exc.describe())
    else:
        logger.error("%s failed: %s", what, exc, exc_info=exc)


def _gone() -> web.Response:
    return web.json_response({"message": None}, status=410, headers={"x-amzn-ErrorType": "GoneException"})


# ------------------------------------------------------------------ the gateway
class WebSocketGateway:
    """Component: the WebSocket endpoint and the management API on the stack's HTTP server, plus the idle
    sweeper's schedule. ``sweep_interval`` defaults to a quarter of ``WS_IDLE_SECONDS`` (at most 5 s)."""

    name = "websocket"

    def __init__(self, sweep_interval: float | None = None) -> None:
        self.sweep_interval = sweep_interval
        self.spec: WebSocketApiSpec | None = None
        self.functions: dict[str, LambdaFunction] = {}
        self.connections: dict[str, LocalConnection] = {}
        self.facts: EventFacts | None = None
        self.base_path = ""
        self._stack: LocalStack | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._closers: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        assert self._stack is not None
        return f"ws://{self._stack.config.host}:{self._stack.config.port}{self.base_path}"

    @property
    def management_endpoint(self) -> str:
        assert self._stack is not None and self.spec is not None
        return management_endpoint(self._stack, self.spec)

    async def start(self, stack: LocalStack) -> None:
        self._stack = stack
        self.spec = WebSocketApiSpec.from_template(stack.template)
        self.base_path = f"/ws/{self.spec.stage_name}"
        self.facts = EventFacts(LOCAL_API_ID, self.spec.stage_name, f"{stack.config.host}:{stack.config.port}")
        wanted = set(self.spec.routes.values()) | ({SWEEPER_FUNCTION} & set(stack.functions))
        missing = wanted - set(stack.functions)
        if missing:
            raise ValueError(f"the WebSocket API needs functions that have no local code: {', '.join(sorted(missing))}")
        self.functions = {name: stack.functions[name] for name in sorted(wanted)}
        router = stack.app.router
        router.add_get(self.base_path, self.websocket)
        connection = self.base_path + "/@connections/{connection_id}"
        router.add_post(connection, self.post_to_connection)
        router.add_get(connection, self.get_connection)
        router.add_delete(connection, self.delete_connection)
        if SWEEPER_FUNCTION in self.functions:
            self._sweeper = asyncio.create_task(self._sweep_loop(self.functions[SWEEPER_FUNCTION]))

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for connection in list(self.connections.values()):
            connection.closing = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.ws.close(code=1001, message=b"server shutting down"), 2)

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url if self._stack else None,
            "managementEndpoint": self.management_endpoint if self._stack else None,
            "routes": dict(self.spec.routes) if self.spec else {},
            "connections": len(self.connections),
        }

    # ------------------------------------------------------------------ invoking
    async def _invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        return await self.functions[logical_id].invoke(event)

    def _sweep_seconds(self) -> float:
        if self.sweep_interval is not None:
            return self.sweep_interval
        sweeper = self.functions.get(SWEEPER_FUNCTION)
        idle = float((sweeper.environment if sweeper else {}).get("WS_IDLE_SECONDS", "65"))
        return max(0.2, min(5.0, idle / 4))

    async def _sweep_loop(self, function: LambdaFunction) -> None:
        """The sweeper's EventBridge schedule, locally: one pass every few seconds."""
        while True:
            await asyncio.sleep(self._sweep_seconds())
            try:
                await function.invoke({"passes": 1})
            except Exception as exc:  # keep sweeping; the failure is in the log
                _log_failure("the idle sweeper", exc)

    # ------------------------------------------------------------------ WebSocket endpoint
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        assert self.spec is not None and self.facts is not None
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=True)
        if not ws.can_prepare(request).ok:
            return web.json_response(
                {"message": f"this is a WebSocket endpoint: connect with a WebSocket client to {self.url}"},
                status=426, headers={"Upgrade": "websocket"},
            )
        connection_id = new_connection_id()
        source_ip = request.remote or "127.0.0.1"
        user_agent = request.headers.get("User-Agent")
        connected_at = time.time_ns() // 1_000_000
        headers = {k: v for k, v in request.headers.items()}
        event = websocket_event(self.facts, "$connect", "CONNECT", connection_id, source_ip, user_agent,
                                connected_at, headers=headers)
        try:
            result = await self._invoke(self.spec.routes["$connect"], event)
        except Exception as exc:
            _log_failure("$connect", exc)
            return web.json_response({"message": "Internal server error"}, status=500)
        status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
        if not 200 <= status < 300:
            body = result.get("body") if isinstance(result, dict) else None
            reply = web.Response(status=status, text=body or "", content_type="application/json")
            for name, value in (result.get("headers") or {}).items():
                if name.lower() != "content-type":
                    reply.headers[name] = str(value)
            return reply
        await ws.prepare(request)
        connection = LocalConnection(connection_id, ws, source_ip, user_agent, connected_at, connected_at)
        self.connections[connection_id] = connection
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    body, is_base64 = message.data, False
                elif message.type == WSMsgType.BINARY:
                    body, is_base64 = base64.b64encode(message.data).decode("ascii"), True
                else:
                    continue
                connection.last_active_ms = time.time_ns() // 1_000_000
                route = self.spec.select(None if is_base64 else body)
                event = websocket_event(self.facts, route, "MESSAGE", connection_id, source_ip, user_agent,
                                        connected_at, body=body, is_base64=is_base64)
                try:
                    await self._invoke(self.spec.routes[route], event)
                except Exception as exc:  # API Gateway drops the message; the traceback is in the log
                    _log_failure(f"{route} (a message of {connection_id})", exc)
        finally:
            self.connections.pop(connection_id, None)
            code = ws.close_code or 1006
            event = websocket_event(self.facts, "$disconnect", "DISCONNECT", connection_id, source_ip, user_agent,
                                    connected_at, headers={"Host": self.facts.domain_name},
                                    disconnect=(int(code), "Client-side close frame status code"))
            try:
                await self._invoke(self.spec.routes["$disconnect"], event)
            except Exception as exc:
                _log_failure(f"$disconnect of {connection_id}", exc)
        return ws

    # ------------------------------------------------------------------ management API
    def _live(self, request: web.Request) -> LocalConnection | None:
        connection = self.connections.get(request.match_info["connection_id"])
        if connection is None or connection.closing or connection.ws.closed:
            return None
        return connection

    async def post_to_connection(self, request: web.Request) -> web.Response:
        connection = self._live(request)
        if connection is None:
            return _gone()
        data = await request.read()
        if len(data) > MAX_MESSAGE_BYTES:
            return web.json_response({"message": "Message too long"}, status=413,
                                     headers={"x-amzn-ErrorType": "PayloadTooLargeException"})
        try:
            async with connection.send_lock:
                try:
                    await connection.ws.send_str(data.decode("utf-8"))
                except UnicodeDecodeError:
                    await connection.ws.send_bytes(data)
        except (ConnectionResetError, RuntimeError):
            return _gone()
        return web.Response(status=200)

    async def get_connection(self, request: web.Request) -> web.Response:
        connection = self._live(request)
        if connection is None:
            return _gone()

        def iso(ms: int) -> str:
            return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"

        return web.json_response({
            "connectedAt": iso(connection.connected_at_ms),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            "lastActiveAt": iso(connection.last_active_ms),
        })

    async def delete_connection(self, request: web.Request) -> web.Response:
        connection = self._live(request)
        if connection is None:
            return _gone()
        connection.closing = True

        async def close() -> None:
            async with connection.send_lock:  # what was posted before the delete goes out first
                await connection.ws.close(code=1000)

        task = asyncio.create_task(close())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)
        return web.Response(status=204)
