"""The local stack's standard components and their order.

To plug something in, write a class with ``name``, ``async start(stack)``, ``async stop()`` and
``describe() -> dict`` (see :class:`emotionctl.local.stack.Component`) and insert it in
:func:`default_components` at the marked place. Blocking work belongs in ``run_in_executor`` or a thread of
the component's own; ``stop()`` must not hang. Handler code never runs in the stack's process: the
``functions`` component runs every template function in worker processes of its own
(:mod:`emotionctl.local.lambda_runtime`), and the other components invoke them through ``stack.functions``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .dashboard import DashboardSite
from .fargate import FargateAgentComponent
from .gateway.rest import RestGateway
from .lambda_runtime import DEFAULT_MAX_WORKERS, LambdaFunction, function_specs, start_fork_server
from .moto_server import MotoHandle, start_moto
from .orchestration import MotoOrchestration, OrchestrationResources, SweeperSchedule
from .stack import StartError
from .streams import StreamPoller
from .tables import create_tables
from .websocket import WebSocketApiRefs, WebSocketGateway

if TYPE_CHECKING:
    from .stack import Component, LocalStack

logger = logging.getLogger(__name__)

# Set for every function locally, over the template's values: no X-Ray daemon, no EMF metrics on stdout.
LOCAL_FUNCTION_ENV = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


class Moto:
    """The embedded AWS: a threaded moto server on its own port. Sets ``AWS_ENDPOINT_URL`` (and fake
    credentials) in this process, so tools running in it reach it through plain boto3 (the functions and the
    analyzer tasks get the same variables in their own environments)."""

    name = "moto"

    def __init__(self) -> None:
        self.handle: MotoHandle | None = None

    async def start(self, stack: LocalStack) -> None:
        for noisy in ("werkzeug", "moto"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        loop = asyncio.get_running_loop()
        self.handle = await loop.run_in_executor(None, start_moto, stack.config.moto_port)
        await loop.run_in_executor(None, _wait_for_port, "127.0.0.1", self.handle.port, 10.0)
        stack.aws_endpoint = self.handle.endpoint
        os.environ.update(stack.aws_env())

    async def stop(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            await asyncio.get_running_loop().run_in_executor(None, handle.stop)

    def describe(self) -> dict[str, Any]:
        return {"endpoint": self.handle.endpoint if self.handle else None}


def _wait_for_port(host: str, port: int, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Tables:
    """Every ``AWS::DynamoDB::Table`` of template.yaml, created from its own definition; registers
    ``!Ref`` (name) and ``!GetAtt .Arn`` / ``.StreamArn`` for each."""

    name = "tables"

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    async def start(self, stack: LocalStack) -> None:
        import boto3

        def create() -> dict[str, str]:
            client = boto3.session.Session().client("dynamodb", endpoint_url=stack.aws_endpoint,
                                                    region_name=stack.region)
            names = create_tables(client, stack.config.table_prefix)
            for logical, table in names.items():
                description = client.describe_table(TableName=table)["Table"]
                stack.refs[logical] = table
                stack.attributes[(logical, "Arn")] = description["TableArn"]
                if description.get("LatestStreamArn"):
                    stack.attributes[(logical, "StreamArn")] = description["LatestStreamArn"]
            return names

        self.names = await asyncio.get_running_loop().run_in_executor(None, create)

    async def stop(self) -> None:  # the tables live and die with moto
        return None

    def describe(self) -> dict[str, Any]:
        return {"tables": dict(self.names)}


class ForkServer:
    """Component, first: starts the functions' fork server (:func:`.lambda_runtime.start_fork_server`) in the
    background, so its library imports overlap with the AWS side's start instead of delaying ``functions``."""

    name = "fork-server"

    def __init__(self) -> None:
        self._starting: asyncio.Future[None] | None = None

    async def start(self, stack: LocalStack) -> None:
        self._starting = asyncio.get_running_loop().run_in_executor(None, start_fork_server)

    async def stop(self) -> None:  # the server ends with this process; a start still under way is awaited
        if self._starting is not None:
            await self._starting

    def describe(self) -> dict[str, Any]:
        return {}


class LambdaFunctions:
    """Every function of template.yaml in worker processes of its own (:mod:`.lambda_runtime`), each with its
    own environment: the template's ``Environment`` (Globals + its own) resolved against the local resources
    and parameters, with the local overrides (:data:`LOCAL_FUNCTION_ENV`, the embedded AWS's endpoint and
    credentials, ``stack.function_overrides`` such as the local WebSocket management endpoint) on top.

    One execution environment of each is cold-started here, in parallel (a handler that cannot load stops the
    stack at start, with its traceback); more start when concurrent invocations need them, up to
    ``max_workers`` per function. ``only`` limits the stack to some functions (tests)."""

    name = "functions"

    def __init__(self, extra: dict[str, str] | None = None, *, max_workers: int = DEFAULT_MAX_WORKERS,
                 only: set[str] | None = None) -> None:
        self.extra = dict(LOCAL_FUNCTION_ENV, **(extra or {}))
        self.max_workers = max_workers
        self.only = only
        self.functions: dict[str, LambdaFunction] = {}

    async def start(self, stack: LocalStack) -> None:
        overrides = {**(stack.aws_env() if stack.aws_endpoint else {}), **stack.function_overrides, **self.extra}
        specs = function_specs(
            stack.template,
            stack.resolver().resolve,
            base_dir=stack.config.template_path.parent,
            name_prefix=stack.config.table_prefix,
            region=stack.region,
            account_id=stack.account_id,
            overrides=overrides,
            max_workers=self.max_workers,
        )
        if self.only is not None:
            missing = self.only - set(specs)
            if missing:
                raise StartError(f"template.yaml has no local function {', '.join(sorted(missing))}")
            specs = {name: spec for name, spec in specs.items() if name in self.only}
        self.functions = {name: LambdaFunction(spec) for name, spec in specs.items()}
        stack.functions = self.functions
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(None, function.start) for function in self.functions.values()),
            return_exceptions=True,
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise failures[0]

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, f.stop) for f in self.functions.values()))

    def describe(self) -> dict[str, Any]:
        return {name: function.describe() for name, function in self.functions.items()}


class HttpServer:
    """Serves ``stack.app`` on ``config.host:config.port``. Routes must be added before this starts; every
    request no route took goes to the stack's fallback (the REST gateway)."""

    name = "http"

    def __init__(self, shutdown_timeout: float = 2.0) -> None:
        self.shutdown_timeout = shutdown_timeout
        self.runner: web.AppRunner | None = None

    async def start(self, stack: LocalStack) -> None:
        # [\s\S], not ".": a path may hold an encoded newline (%0A), which "." would leave to aiohttp's plain 404
        stack.app.router.add_route("*", r"/{tail:[\s\S]*}", stack.fallback)
        self.runner = web.AppRunner(stack.app, access_log=None, shutdown_timeout=self.shutdown_timeout,
                                    handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, stack.config.host, stack.config.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise StartError(
                f"cannot listen on {stack.config.host}:{stack.config.port} ({exc.strerror}): is another stack "
                "running? Stop it (emotionctl local down) or choose another --port"
            ) from exc

    async def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()

    def describe(self) -> dict[str, Any]:
        return {}


def default_components() -> list[Component]:
    """The local stack, in start order (stopped in reverse)."""
    return [
        ForkServer(),  # the functions' fork server warms up while the AWS side starts
        # -- AWS side
        Moto(),
        MotoOrchestration(),  # moto patches + real Step Functions execution, before any state machine
        # -- template resources
        Tables(),
        WebSocketApiRefs(),
        OrchestrationResources(),  # state machine, ECS cluster/task definition, event bus
        # -- the functions, each in worker processes of its own (needs every resource above registered)
        LambdaFunctions(),
        # -- HTTP routes (before the server starts)
        RestGateway(),
        WebSocketGateway(),
        DashboardSite(),  # the web dashboard at / (needs the WebSocket gateway's URL)
        HttpServer(),
        # -- background workers (after the server is up)
        StreamPoller(),
        FargateAgentComponent(),  # runs each ECS task as `python -m analyzer.worker`
        SweeperSchedule(),
    ]
