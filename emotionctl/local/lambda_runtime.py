"""Run the template's Lambda functions the way Lambda does: each function in execution environments of its own.

A function is ``CodeUri`` + ``Handler`` of an ``AWS::Serverless::Function`` in template.yaml, with the
environment the template gives it. Each :class:`LambdaFunction` owns a bounded pool of worker processes (a
``concurrent.futures.ProcessPoolExecutor`` on the ``forkserver`` start method), one process per execution
environment:

- **cold start** — a new worker process gets the function's environment *only* (its template variables with
  the local overrides, the variables Lambda's runtime sets, the embedded AWS's endpoint and credentials; none
  of the stack's own), its code directory first on ``sys.path`` (``/var/task``), and imports the handler
  module once, before its first invocation (Lambda's init phase);
- **warm invocations** — later invocations of that process reuse the module and whatever it built (clients,
  composition roots), one invocation at a time per process, as in Lambda;
- **concurrency** — a pool starts a new process only when every one it has is busy, up to ``max_workers``
  (further invocations wait for a free one). Two functions never share a process, so never a module global
  nor an environment variable.

An invocation gets the event and a :class:`LambdaContext` (request id, remaining time from the function's
``Timeout``). A handler's exception comes back as :class:`FunctionError` with Lambda's ``errorType`` /
``errorMessage`` / ``stackTrace``; an invocation not answered within the function's ``Timeout`` (plus
:data:`START_ALLOWANCE_SECONDS` for a cold start or a wait for a busy environment) as :class:`FunctionTimeout`;
the worker still finishes it in the background (Lambda would reset the environment). The
``forkserver`` is started with the heavy third-party libraries already imported (:data:`PRELOADED`, imports
that read no function setting), so a new worker costs a fork plus the function's own import. Handler output
(print, Powertools' JSON logs on stdout) goes to the stack's stderr; the stack's stdout stays readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Imported once in the fork server, shared by every worker it forks. Library code only, none of it reads a
# function's settings at import (Powertools reads AWS_EXECUTION_ENV for its user agent and
# AWS_LAMBDA_INITIALIZATION_TYPE for its cold-start flag: the same answer either way here). The handler modules
# and emotion_shared are imported by each worker itself, after its environment is set.
PRELOADED = ["boto3", "boto3.dynamodb.types", "botocore.session", "pydantic", "aws_lambda_powertools",
             "aws_lambda_powertools.event_handler"]
DEFAULT_MAX_WORKERS = 4  # execution environments per function (the template's ReservedConcurrentExecutions wins)
STOP_GRACE_SECONDS = 5.0
START_ALLOWANCE_SECONDS = 10.0
# Variables of the stack's own environment a worker keeps (the interpreter and the virtualenv need them).
_INHERITED = ("PATH", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")


class FunctionLoadError(RuntimeError):
    """The handler cannot be loaded (missing file or attribute, import error): the function cannot run."""


class FunctionTimeout(TimeoutError):
    """The invocation did not finish within the function's ``Timeout``."""


class FunctionError(Exception):
    """The handler raised: Lambda's error object (``errorType``, ``errorMessage``, ``stackTrace``)."""

    def __init__(self, function: str, error_type: str, message: str, stack_trace: list[str]) -> None:
        super().__init__(message)
        self.function = function
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        trace = "".join(self.stack_trace).rstrip()
        return f"{self.function} raised {self.error_type}: {self.message}" + (f"\n{trace}" if trace else "")


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers (and Powertools) read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline_monotonic: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))


def local_context(function_name: str = "local", *, timeout_seconds: float = 29.0) -> LambdaContext:
    """A context for calling a handler directly in this process (tests, benchmarks)."""
    return LambdaContext(
        function_name=function_name,
        memory_limit_in_mb=128,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}",
        aws_request_id=str(uuid.uuid4()),
        deadline_monotonic=time.monotonic() + timeout_seconds,
        log_group_name=f"/aws/lambda/{function_name}",
    )


@dataclass(frozen=True)
class FunctionSpec:
    """One template function, as the worker processes need it (picklable)."""

    logical_id: str
    code_dir: Path
    handler: str  # "module.function", as in the template
    timeout_seconds: float
    memory_mb: int
    function_name: str
    region: str
    account_id: str
    environment: Mapping[str, str] = field(default_factory=dict)  # the template's, with the local overrides
    max_workers: int = DEFAULT_MAX_WORKERS

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def context(self, request_id: str | None = None) -> LambdaContext:
        return LambdaContext(
            function_name=self.function_name,
            memory_limit_in_mb=self.memory_mb,
            invoked_function_arn=self.arn,
            aws_request_id=request_id or str(uuid.uuid4()),
            deadline_monotonic=time.monotonic() + self.timeout_seconds,
            log_group_name=self.log_group,
        )

    def process_environment(self, inherited: Mapping[str, str]) -> dict[str, str]:
        """Everything a worker process sees in ``os.environ``: a few variables of the stack's process, what
        Lambda's runtime sets, then the function's own variables."""
        env = {name: inherited[name] for name in _INHERITED if name in inherited}
        env.update({
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": self.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "LAMBDA_TASK_ROOT": str(self.code_dir),
            "_HANDLER": self.handler,
            "TZ": ":UTC",
        })
        env.update(self.environment)
        return env


def load_handler(code_dir: Path, handler: str, module_name: str | None = None) -> Callable[[Any, Any], Any]:
    """Import ``code_dir``/<module>.py (``handler`` = "module.function") and return the function. The module
    gets a private name (``module_name``), so two functions' ``app`` modules never collide in one process."""
    module_path, _, attr = handler.rpartition(".")
    path = code_dir / (module_path.replace(".", "/") + ".py")
    if not path.is_file():
        raise FunctionLoadError(f"handler file {path} does not exist (CodeUri + Handler)")
    spec = importlib.util.spec_from_file_location(module_name or f"_lambda_{code_dir.name}_{module_path}", path)
    if spec is None or spec.loader is None:
        raise FunctionLoadError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    entry = getattr(module, attr, None)
    if not callable(entry):
        raise FunctionLoadError(f"{path} has no callable {attr!r}")
    return entry


# ---------------------------------------------------------------- inside a worker process
@dataclass
class _Worker:
    spec: FunctionSpec
    entry: Callable[[Any, Any], Any] | None = None
    load_error: str | None = None
    invocations: int = 0


_worker: _Worker | None = None


def _start_worker(spec: FunctionSpec, inherited: Mapping[str, str]) -> None:
    """The pool's initializer: a new execution environment (runs once per worker process)."""
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the stack's to handle; it stops the pools
    os.dup2(2, 1)  # handler output goes to the stack's stderr
    os.environ.clear()
    os.environ.update(spec.process_environment(inherited))
    time.tzset()
    sys.path.insert(0, str(spec.code_dir))
    _worker = _Worker(spec)
    try:  # Lambda's init phase
        _worker.entry = load_handler(spec.code_dir, spec.handler, f"_lambda_{spec.logical_id}")
    except BaseException as exc:  # reported with every invocation, as Lambda reports Runtime.ImportModuleError
        _worker.load_error = "".join(traceback.format_exception(exc)).rstrip()


def _ping() -> dict[str, Any]:
    assert _worker is not None
    return {"pid": os.getpid(), "loadError": _worker.load_error}


def _invoke_in_worker(event: Any, request_id: str) -> dict[str, Any]:
    assert _worker is not None
    worker = _worker
    cold = worker.invocations == 0
    worker.invocations += 1
    outcome: dict[str, Any] = {"pid": os.getpid(), "cold": cold}
    if worker.entry is None:
        outcome["error"] = ("Runtime.ImportModuleError", worker.load_error or "the handler did not load", [])
        return outcome
    try:
        outcome["result"] = worker.entry(event, worker.spec.context(request_id))
    except Exception as exc:
        outcome["error"] = (type(exc).__name__, str(exc), traceback.format_exception(exc))
    return outcome


# ---------------------------------------------------------------- in the stack's process
_forkserver_lock = threading.Lock()


def _context() -> Any:
    """The ``forkserver`` start method (the stack's process has threads: plain ``fork`` would copy their
    locks mid-use), with :data:`PRELOADED` imported once in the server."""
    with _forkserver_lock:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOADED)
        return context


def start_fork_server() -> None:
    """Start the fork server now (it imports :data:`PRELOADED` in its own process, in parallel with whatever
    this process does meanwhile); the pools use it later. Idempotent."""
    from multiprocessing import forkserver, resource_tracker

    _context()
    forkserver.ensure_running()
    resource_tracker.ensure_running()  # the pools need it too: one interpreter start fewer on the critical path


@dataclass
class FunctionStats:
    invocations: int = 0
    cold_starts: int = 0
    errors: int = 0
    timeouts: int = 0
    workers: set[int] = field(default_factory=set)


class LambdaFunction:
    """A template function and its execution environments (worker processes), started by :meth:`start`."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.stats = FunctionStats()
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def logical_id(self) -> str:
        return self.spec.logical_id

    @property
    def timeout_seconds(self) -> float:
        return self.spec.timeout_seconds

    @property
    def environment(self) -> Mapping[str, str]:
        return self.spec.environment

    def start(self) -> None:
        """Create the pool and cold-start one execution environment; a handler that cannot load fails here,
        with its traceback, instead of at the first request."""
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.spec.max_workers,
                    mp_context=_context(),
                    initializer=_start_worker,
                    initargs=(self.spec, dict(os.environ)),
                )
            pool = self._pool
        answer = pool.submit(_ping).result(timeout=120)
        self.stats.workers.add(int(answer["pid"]))
        if answer["loadError"]:
            raise FunctionLoadError(f"{self.logical_id} ({self.spec.code_dir}, {self.spec.handler}) cannot load:\n"
                                    f"{answer['loadError']}")

    def submit(self, event: Any) -> Future[dict[str, Any]]:
        pool = self._pool
        if pool is None:
            raise RuntimeError(f"{self.logical_id} is not started")
        return pool.submit(_invoke_in_worker, event, str(uuid.uuid4()))

    def _outcome(self, outcome: dict[str, Any]) -> Any:
        self.stats.invocations += 1
        self.stats.workers.add(int(outcome["pid"]))
        if outcome.get("cold"):
            self.stats.cold_starts += 1
        if "error" in outcome:
            self.stats.errors += 1
            error_type, message, trace = outcome["error"]
            raise FunctionError(self.logical_id, error_type, message, list(trace))
        return outcome.get("result")

    async def invoke(self, event: Any) -> Any:
        """Invoke from the event loop. :class:`FunctionError` if the handler raised, :class:`FunctionTimeout`
        past the function's timeout."""
        future = asyncio.wrap_future(self.submit(event))
        try:
            outcome = await asyncio.wait_for(asyncio.shield(future), timeout=self._budget())
        except TimeoutError:
            self.stats.timeouts += 1
            raise FunctionTimeout(f"{self.logical_id} timed out after {self.timeout_seconds:.0f} s") from None
        return self._outcome(outcome)

    def invoke_sync(self, event: Any) -> Any:
        """Invoke from a thread of its own (the stream poller). Same errors as :meth:`invoke`."""
        future = self.submit(event)
        try:
            outcome = future.result(timeout=self._budget())
        except TimeoutError:
            self.stats.timeouts += 1
            raise FunctionTimeout(f"{self.logical_id} timed out after {self.timeout_seconds:.0f} s") from None
        return self._outcome(outcome)

    def _budget(self) -> float:
        # The function's timeout plus room for a cold start (a new worker's import) or a short wait for a busy
        # pool: the parent cannot see when the worker begins the invocation.
        return self.spec.timeout_seconds + START_ALLOWANCE_SECONDS

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Stop the worker processes: queued invocations are cancelled, running ones get ``grace_seconds``,
        then their processes are terminated (by PID)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())  # the pool's own workers, for the deadline
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace_seconds
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(1.0)

    def describe(self) -> dict[str, Any]:
        return {
            "handler": self.spec.handler,
            "codeUri": str(self.spec.code_dir),
            "maxWorkers": self.spec.max_workers,
            "workers": sorted(self.stats.workers),
            "invocations": self.stats.invocations,
            "coldStarts": self.stats.cold_starts,
            "errors": self.stats.errors,
            "timeouts": self.stats.timeouts,
        }


def function_specs(
    template: dict[str, Any],
    resolve: Callable[[Any], Any],
    *,
    base_dir: Path,
    name_prefix: str,
    region: str,
    account_id: str,
    overrides: Mapping[str, str] | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> dict[str, FunctionSpec]:
    """Every ``AWS::Serverless::Function`` of the template with a local ``CodeUri`` (relative to the template's
    directory ``base_dir``), each with its own environment (``overrides`` on top)."""
    defaults = template.get("Globals", {}).get("Function", {})
    specs: dict[str, FunctionSpec] = {}
    for logical, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = {**defaults, **resource.get("Properties", {})}
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str) or code_uri.startswith("s3://") or props.get("PackageType") == "Image":
            continue
        reserved = props.get("ReservedConcurrentExecutions")
        specs[logical] = FunctionSpec(
            logical_id=logical,
            code_dir=(base_dir / code_uri).resolve(),
            handler=str(props.get("Handler", "app.handler")),
            timeout_seconds=float(resolve(props.get("Timeout", 3))),
            memory_mb=int(resolve(props.get("MemorySize", 128))),
            function_name=f"{name_prefix}-{logical}",
            region=region,
            account_id=account_id,
            environment={**function_environment(template, logical, resolve), **(overrides or {})},
            max_workers=max(1, min(max_workers, int(resolve(reserved)))) if reserved is not None else max_workers,
        )
    return specs


def function_environment(template: dict[str, Any], logical_id: str, resolve: Callable[[Any], Any]) -> dict[str, str]:
    """Globals' variables overlaid with the function's own, intrinsics resolved (values as strings)."""
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    resource = template["Resources"][logical_id]
    own = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
    merged = {**globals_env, **own}
    env = {}
    for name, value in merged.items():
        resolved = resolve(value)
        env[name] = ("true" if resolved else "false") if isinstance(resolved, bool) else str(resolved)
    return env


@contextlib.contextmanager
def running(spec: FunctionSpec) -> Any:
    """A started :class:`LambdaFunction`, stopped at the end of the block (tests, benchmarks)."""
    function = LambdaFunction(spec)
    try:
        function.start()
        yield function
    finally:
        function.stop()
