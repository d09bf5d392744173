"""The REST side of the local gateway: an aiohttp handler that plays API Gateway for template.yaml's REST API."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from ..lambda_runtime import FunctionError, LambdaFunction
from ..template import REPO_ROOT
from .authorizer import AuthorizerCache, AuthorizerRejected, AuthorizerSpec, parse_result, policy_allows
from .proxy_integration import (
    ApiContext,
    HttpRequest,
    MalformedProxyResult,
    authorizer_event,
    proxy_event,
    proxy_response,
)
from .responses import GatewayResponse, GatewayResponses
from .routes import Route, RouteTable

if TYPE_CHECKING:
    from ..stack import LocalStack

logger = logging.getLogger(__name__)

OPENAPI_PATH = REPO_ROOT / "docs" / "openapi.yaml"
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


class RestGateway:
    """Component: answers every request no other route took, invoking the REST API's functions (the routes'
    and the authorizer's, from ``stack.functions``).

    Also serves ``GET /health`` and the OpenAPI document (``/openapi.yaml``, ``/openapi.json``).
    """

    name = "gateway"

    def __init__(self, api_logical_id: str | None = None, openapi_path: Path = OPENAPI_PATH) -> None:
        self.api_logical_id = api_logical_id
        self.openapi_path = openapi_path
        self.functions: dict[str, LambdaFunction] = {}
        self.routes = RouteTable([])
        self.authorizers: dict[str, AuthorizerSpec] = {}
        self.responses = GatewayResponses({})
        self.cache = AuthorizerCache()
        self.api: ApiContext | None = None
        self._stack: LocalStack | None = None

    # ------------------------------------------------------------------ component
    async def start(self, stack: LocalStack) -> None:
        self._stack = stack
        template = stack.template
        apis = {k: v for k, v in template["Resources"].items() if v.get("Type") == "AWS::Serverless::Api"}
        if self.api_logical_id is None:
            if len(apis) != 1:
                raise ValueError(f"template.yaml has {len(apis)} REST APIs; name the one to serve")
            self.api_logical_id = next(iter(apis))
        api_props = apis[self.api_logical_id].get("Properties", {})
        resolve = stack.resolver().resolve
        self.routes = RouteTable.from_template(template, self.api_logical_id)
        self.authorizers = AuthorizerSpec.from_api(api_props, resolve)
        self.responses = GatewayResponses.from_api(api_props, resolve)
        self.api = ApiContext(
            api_id="local",
            stage=str(resolve(api_props.get("StageName", stack.stage))),
            region=stack.region,
            account_id=stack.account_id,
            domain_name=f"{stack.config.host}:{stack.config.port}",
        )
        needed = {r.function for r in self.routes.routes} | {a.function for a in self.authorizers.values()}
        missing = needed - set(stack.functions)
        if missing:
            raise ValueError(f"the REST API needs functions that have no local code: {', '.join(sorted(missing))}")
        self.functions = {name: stack.functions[name] for name in sorted(needed)}
        stack.app.router.add_get("/health", self.health)
        stack.app.router.add_get("/openapi.yaml", self.openapi_yaml)
        stack.app.router.add_get("/openapi.json", self.openapi_json)
        stack.set_fallback(self.handle)

    async def stop(self) -> None:
        self.cache.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "api": self.api_logical_id,
            "stage": self.api.stage if self.api else None,
            "routes": sorted(f"{r.method} {r.resource}" for r in self.routes.routes),
            "functions": sorted(self.functions),
        }

    # ------------------------------------------------------------------ built-in routes
    async def health(self, request: web.Request) -> web.Response:
        stack = self._stack
        assert stack is not None
        return web.json_response(
            {
                "status": "ok",
                "components": [c.name for c in stack.components],
                "uptimeSeconds": round(time.time() - stack.started_at, 1) if stack.started_at else 0,
            }
        )

    def _openapi_text(self) -> str | None:
        try:
            return self.openapi_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    async def openapi_yaml(self, request: web.Request) -> web.StreamResponse:
        text = self._openapi_text()
        if text is None:
            return self._gateway_response("RESOURCE_NOT_FOUND", "the OpenAPI document is not available", "")
        return web.Response(text=text, content_type="application/yaml")

    async def openapi_json(self, request: web.Request) -> web.StreamResponse:
        text = self._openapi_text()
        if text is None:
            return self._gateway_response("RESOURCE_NOT_FOUND", "the OpenAPI document is not available", "")
        return web.json_response(yaml.safe_load(text))

    # ------------------------------------------------------------------ the gateway
    def _gateway_response(
        self, kind: str, message: str | None, request_id: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        rendered: GatewayResponse = self.responses.render(
            kind, message=message, request_id=request_id, request_headers=headers
        )
        response = web.Response(status=rendered.status, body=rendered.body, headers=rendered.headers)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    async def _authorize(
        self, spec: AuthorizerSpec, request: HttpRequest, route: Route, params: dict[str, str]
    ) -> dict[str, Any]:
        """The ``requestContext.authorizer`` for an allowed request; :class:`AuthorizerRejected` otherwise."""
        assert self.api is not None
        headers = dict(request.headers)
        query = dict(request.query)
        identity = spec.identity(headers, query)
        if identity is None:
            raise AuthorizerRejected("UNAUTHORIZED")
        decision = self.cache.get(spec.name, identity)
        latency_ms = 0
        event = authorizer_event(request, route, params, self.api)
        if decision is None:
            began = time.perf_counter()
            try:
                result = await self.functions[spec.function].invoke(event)
            except TimeoutError:
                raise AuthorizerRejected("AUTHORIZER_FAILURE", "the authorizer timed out") from None
            except FunctionError as exc:
                if exc.message == "Unauthorized":  # the exact message API Gateway maps to 401
                    raise AuthorizerRejected("UNAUTHORIZED") from None
                logger.error("authorizer %s", exc.describe())
                raise AuthorizerRejected("AUTHORIZER_FAILURE") from exc
            except Exception as exc:  # the function's environment failed (not the handler)
                logger.exception("authorizer %s could not be invoked", spec.function)
                raise AuthorizerRejected("AUTHORIZER_FAILURE") from exc
            latency_ms = int((time.perf_counter() - began) * 1000)
            decision = parse_result(result)
            self.cache.put(spec.name, identity, decision, spec.ttl_seconds)
        if not policy_allows(decision.policy, event["methodArn"]):
            raise AuthorizerRejected("ACCESS_DENIED")
        return decision.authorizer_context(latency_ms)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            # API Gateway's own answer: like its others, it has a request id and follows the Accept header
            return self._gateway_response("REQUEST_TOO_LARGE", None, str(uuid.uuid4()), dict(request.headers))
        http = HttpRequest(
            method=request.method,
            path=request.path,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
            query=list(request.query.items()),
            body=body,
            source_ip=request.remote or "127.0.0.1",
        )
        headers = dict(http.headers)
        match = self.routes.match(http.method, request.raw_path)
        if match is None:
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", None, http.request_id, headers)
        route, params = match.route, match.path_parameters
        authorizer_context: dict[str, Any] | None = None
        if route.authorizer is not None:
            try:
                authorizer_context = await self._authorize(self.authorizers[route.authorizer], http, route, params)
            except AuthorizerRejected as rejected:
                return self._gateway_response(rejected.kind, rejected.message, http.request_id, headers)
        assert self.api is not None
        event = proxy_event(http, route, params, self.api, authorizer_context)
        function = self.functions[route.function]
        try:
            result = await function.invoke(event)
            mapped = proxy_response(result)
        except TimeoutError:
            logger.error("%s timed out after %.0f s on %s %s", function.logical_id, function.timeout_seconds,
                         http.method, http.path)
            return self._gateway_response("INTEGRATION_TIMEOUT", None, http.request_id, headers)
        except MalformedProxyResult as exc:
            logger.error("%s returned a malformed proxy result: %s", function.logical_id, exc)
            return self._gateway_response("DEFAULT_5XX", None, http.request_id, headers)
        except FunctionError as exc:  # API Gateway answers 502, the function's traceback goes to the log
            logger.error("%s on %s %s", exc.describe(), http.method, http.path)
            return self._gateway_response("DEFAULT_5XX", None, http.request_id, headers)
        except Exception:  # the function's environment failed (not the handler): a 502 as well
            logger.exception("%s could not be invoked on %s %s", function.logical_id, http.method, http.path)
            return self._gateway_response("DEFAULT_5XX", None, http.request_id, headers)
        response = web.Response(status=mapped.status, body=mapped.body or None)
        for name, value in mapped.headers:
            if name.lower() not in _HOP_BY_HOP:
                response.headers.add(name, value)
        response.headers["x-amzn-RequestId"] = http.request_id
        return response
