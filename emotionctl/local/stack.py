"""The local stack: an ordered list of components sharing one process, one event loop and one aiohttp app.

A component is anything with ``name``, ``async start(stack)``, ``async stop()`` and ``describe()``. The stack
starts them in list order and stops them in reverse order (also when a later one fails to start). What they
share lives on :class:`LocalStack`:

- ``config`` — ports, state dir, parameter overrides (:class:`StackConfig`);
- ``aws_endpoint`` / ``aws_env()`` — the embedded AWS (set by the moto component);
- ``refs`` / ``attributes`` — what ``!Ref X`` / ``!GetAtt X.Attr`` of template.yaml resolve to locally;
  a component that creates a template resource registers it here (tables, later the state machine, bus…);
- ``resolver()`` — evaluates template intrinsics against the above and the template parameters;
- ``app`` — the aiohttp application of the HTTP server; add routes (e.g. the WebSocket endpoint) in
  ``start()`` of a component placed *before* the HTTP server component; the REST gateway answers every
  request no other route took (``set_fallback``);
- ``functions`` — the template's Lambda functions, each in worker processes of its own (set by the
  ``functions`` component; invoke with ``await stack.functions[logical_id].invoke(event)``);
- ``function_overrides`` — environment variables a component sets for every function over the template's
  (register them before the ``functions`` component starts);
- ``stopping`` — an event set when the stack is asked to stop (for background loops).

Typical order (see :func:`emotionctl.local.components.default_components`): AWS side (moto, its patches)
→ template resources (tables, state machine…) → functions → routes (REST gateway, WebSocket)
→ HTTP server → background workers (Fargate agent, stream poller).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aiohttp import web

from .moto_server import LOCAL_ACCOUNT, LOCAL_REGION, free_port, local_aws_env
from .resolve import Resolver
from .state import STATE_VERSION, default_state_dir, state_path
from .template import TEMPLATE_PATH, load_template

if TYPE_CHECKING:
    from .lambda_runtime import LambdaFunction

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
STOP_TIMEOUT = 10.0  # seconds each component gets to stop

SESSIONS_PER_CORE = 2


def local_capacity(cores: int | None = None) -> int:
    """How many live sessions the local stack admits by default: :data:`SESSIONS_PER_CORE` per core (at least
    2). Every session runs an analyzer process on this machine; measured with ``bench/concurrency.py`` on 2
    cores, 4 live 1080p30 sessions each get the full 5 analyses/s next to the stack itself, and more sessions
    still analyse — fewer times a second, marked ``degraded`` (see the README)."""
    return max(2, SESSIONS_PER_CORE * (cores or os.cpu_count() or 1))


# Template parameters the local stack overrides (tests use 127.0.0.1 streams; logs stay quiet; capacity
# follows the machine's cores).
LOCAL_PARAMETERS: dict[str, str] = {
    "AllowPrivateStreamHosts": "true",
    "LogLevel": "WARNING",
    "MaxActiveSessions": str(local_capacity()),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StartError(RuntimeError):
    """A component cannot start for a reason the operator can fix (the message says how)."""


@runtime_checkable
class Component(Protocol):
    name: str

    async def start(self, stack: LocalStack) -> None: ...

    async def stop(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    port: int = 3000  # 0: pick a free port
    moto_port: int = 0  # 0: pick a free port
    state_dir: Path = field(default_factory=default_state_dir)
    template_path: Path = TEMPLATE_PATH
    table_prefix: str = "local"
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides (over LOCAL_PARAMETERS)
    lifetime_seconds: float | None = None  # stop by itself after this long (tests)
    # extra environment for every local ECS task (worker settings such as RECONNECT_WINDOW_SECONDS), over the
    # task definition's and the run's overrides
    task_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.port == 0:
            self.port = free_port()
        if self.moto_port == 0:
            self.moto_port = free_port()


class LocalStack:
    def __init__(self, config: StackConfig, components: Sequence[Component]) -> None:
        self.config = config
        self.components = list(components)
        self.template: dict[str, Any] = load_template(config.template_path)
        self.region = LOCAL_REGION
        self.account_id = LOCAL_ACCOUNT
        self.parameters = self._parameters(config.parameters)
        self.refs: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], str] = {}
        self.aws_endpoint: str | None = None
        self.function_overrides: dict[str, str] = {}
        self.functions: dict[str, LambdaFunction] = {}
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.stopping = asyncio.Event()
        self.started_at: float | None = None
        self._fallback: Handler | None = None
        self._started: list[Component] = []

    # ------------------------------------------------------------------ shared facts
    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    @property
    def stage(self) -> str:
        return self.parameters["Environment"]

    @property
    def state_file(self) -> Path:
        return state_path(self.config.state_dir)

    def aws_env(self) -> dict[str, str]:
        """Environment a process (or boto3 in this one) needs to reach the embedded AWS."""
        if self.aws_endpoint is None:
            raise RuntimeError("the embedded AWS is not started yet (put the moto component first)")
        return local_aws_env(self.aws_endpoint)

    def resolver(self) -> Resolver:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": f"emotion-stream-{self.config.table_prefix}",
            "AWS::NoValue": "",
        }
        return Resolver(self.parameters, pseudo, self.refs, self.attributes)

    def _parameters(self, overrides: dict[str, str]) -> dict[str, str]:
        declared = self.template.get("Parameters", {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise ValueError(f"unknown template parameter(s): {', '.join(sorted(unknown))}")
        values = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
        values.update({k: v for k, v in LOCAL_PARAMETERS.items() if k in declared})
        values.update(overrides)
        for name, spec in declared.items():
            allowed = spec.get("AllowedValues")
            if allowed is not None and values.get(name) not in {str(a) for a in allowed}:
                raise ValueError(f"template parameter {name}={values.get(name)!r} is not one of {allowed}")
        return values

    # ------------------------------------------------------------------ HTTP
    def set_fallback(self, handler: Handler) -> None:
        """The handler for every request no explicit route took (the REST gateway)."""
        self._fallback = handler

    async def fallback(self, request: web.Request) -> web.StreamResponse:
        if self._fallback is None:
            raise web.HTTPNotFound()
        return await self._fallback(request)

    def component(self, name: str) -> Component:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        for component in self.components:
            if self.stopping.is_set():
                raise asyncio.CancelledError("stop requested while starting")
            began = time.perf_counter()
            logger.debug("starting %s", component.name)
            await component.start(self)
            self._started.append(component)
            logger.debug("started %s in %.0f ms", component.name, (time.perf_counter() - began) * 1000)
        self.started_at = time.time()

    async def stop(self) -> None:
        """Stop the started components in reverse order; each gets ``STOP_TIMEOUT`` seconds."""
        self.stopping.set()
        while self._started:
            component = self._started.pop()
            began = time.perf_counter()
            try:
                await asyncio.wait_for(component.stop(), timeout=STOP_TIMEOUT)
            except TimeoutError:
                logger.error("%s did not stop within %.0f s; going on", component.name, STOP_TIMEOUT)
            except Exception:  # one component failing to stop must not keep the others running
                logger.exception("stopping %s failed", component.name)
            else:
                logger.debug("stopped %s in %.0f ms", component.name, (time.perf_counter() - began) * 1000)

    def shared_function_env(self) -> dict[str, str]:
        """The functions' variables that mean one thing wherever they are set (tables, settings): what a tool
        needs to find them. A variable two functions set differently is left out (see ``functions``)."""
        merged: dict[str, str] = {}
        conflicting: set[str] = set()
        for function in self.functions.values():
            for name, value in function.environment.items():
                if merged.setdefault(name, value) != value:
                    conflicting.add(name)
        return {name: value for name, value in merged.items() if name not in conflicting}

    def state(self) -> dict[str, Any]:
        """The content of the state file (see :mod:`emotionctl.local.state`)."""
        from emotion_shared.clock import iso_ms

        tables = {
            logical: self.refs[logical]
            for logical, res in self.template.get("Resources", {}).items()
            if res.get("Type") == "AWS::DynamoDB::Table" and logical in self.refs
        }
        return {
            "version": STATE_VERSION,
            "pid": os.getpid(),
            "startedAt": iso_ms(int((self.started_at or time.time()) * 1000)),
            "endpoint": self.url,
            "healthUrl": f"{self.url}/health",
            "openapiUrl": f"{self.url}/openapi.yaml",
            "stage": self.stage,
            "aws": {"endpoint": self.aws_endpoint, "region": self.region, "accountId": self.account_id},
            "ports": {"gateway": self.config.port, "moto": self.config.moto_port},
            "tables": tables,
            "env": self.shared_function_env(),
            "functions": {name: {"name": f.spec.function_name, "env": dict(f.environment)}
                          for name, f in self.functions.items()},
            "resources": dict(self.refs),
            "components": {c.name: c.describe() for c in self._started},
        }
