"""The local "Fargate": runs every ECS task that moto records as a local process.

The agent polls the embedded AWS for ``RUNNING`` tasks of one cluster (the state machine's
``ecs:runTask.sync`` creates them; moto keeps them running thanks to the manual task transition), and for
each new one starts the container's entry point as a subprocess with the environment a Fargate container
would get: the task definition's ``environment``, then the run's container overrides, plus ``TASK_ARN`` and
the embedded AWS's endpoint and credentials (and a few host variables such as ``PATH``; nothing else of this
process leaks in). When the process exits, its exit code is recorded on moto's task (in-process: see
:func:`emotionctl.local.moto_patches.report_task_exit`) and the task is stopped — so a non-zero exit
reaches the state's ``Catch``. A task stopped from outside (``ecs:StopTask``, e.g. by the sweeper) gets
SIGTERM, then SIGKILL after the container's ``stopTimeout``, as on ECS. On shutdown the agent terminates
the processes it started, by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import moto_patches

if TYPE_CHECKING:
    from .stack import LocalStack

logger = logging.getLogger(__name__)

# The analyzer image's entry point, run with this interpreter (the project's virtualenv).
DEFAULT_COMMAND: tuple[str, ...] = (sys.executable, "-m", "analyzer.worker")
# Host variables a local process needs to run at all; everything else comes from the task.
HOST_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "VIRTUAL_ENV", "EMOTION_MODELS_DIR")
DEFAULT_STOP_TIMEOUT = 30.0  # ECS's default when the container definition sets none
CANNOT_START_EXIT_CODE = 127

ExitReporter = Callable[[str, int, str], bool]


@dataclass
class AgentConfig:
    cluster: str
    aws_env: Mapping[str, str]  # AWS_ENDPOINT_URL, credentials, region of the embedded AWS
    command: Sequence[str] = DEFAULT_COMMAND
    extra_env: Mapping[str, str] = field(default_factory=dict)  # local-only additions (over the task's)
    poll_seconds: float = 0.1
    log_dir: Path | None = None  # one <task id>.log per task; None: inherit this process's stdout/stderr
    cwd: Path | None = None


@dataclass
class _Running:
    task_arn: str
    process: subprocess.Popen[bytes]
    stop_timeout: float
    log: IO[bytes] | None
    started: float
    term_sent_at: float | None = None


class FargateAgent:
    def __init__(self, config: AgentConfig, ecs_client: Any, *, report_exit: ExitReporter | None = None) -> None:
        self.config = config
        self._ecs = ecs_client
        self._report_exit = report_exit or moto_patches.report_task_exit
        self._running: dict[str, _Running] = {}
        self._finished: dict[str, int] = {}  # task ARN → exit code
        self._task_definitions: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("agent already started")
        if self.config.log_dir is not None:
            self.config.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="fargate-agent", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling, then terminate every process this agent started (SIGTERM, then SIGKILL)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        with self._lock:
            running = list(self._running.values())
        for run in running:
            self._signal(run, signal.SIGTERM)
        deadline = time.monotonic() + min(timeout, max((r.stop_timeout for r in running), default=0.0))
        for run in running:
            try:
                run.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(run, signal.SIGKILL)
                run.process.wait(timeout=5)
        for run in running:
            self._finish(run, run.process.returncode, "the local Fargate agent stopped")

    @property
    def running(self) -> dict[str, int]:
        """Task ARN → PID of the processes running now."""
        with self._lock:
            return {arn: run.process.pid for arn, run in self._running.items()}

    @property
    def finished(self) -> dict[str, int]:
        """Task ARN → exit code of the processes that ended."""
        with self._lock:
            return dict(self._finished)

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the agent must survive a transient error of the embedded AWS
                logger.exception("local Fargate agent: poll failed")
            self._stop.wait(self.config.poll_seconds)

    def poll_once(self) -> None:
        desired_running = set(self._list_running())
        with self._lock:
            known = set(self._running) | set(self._finished)
        new = sorted(desired_running - known)
        if new:
            for task in self._ecs.describe_tasks(cluster=self.config.cluster, tasks=new).get("tasks", []):
                if task.get("lastStatus") == "RUNNING" and not self._stop.is_set():
                    self._launch_or_fail(task)
        with self._lock:
            running = list(self._running.values())
        for run in running:
            code = run.process.poll()
            if code is not None:
                self._finish(run, code, "Essential container in task exited")
            elif run.task_arn not in desired_running:
                self._stop_from_outside(run)

    def _list_running(self) -> list[str]:
        arns: list[str] = []
        paginator = self._ecs.get_paginator("list_tasks")
        for page in paginator.paginate(cluster=self.config.cluster, desiredStatus="RUNNING"):
            arns.extend(page.get("taskArns", []))
        return arns

    # ------------------------------------------------------------------ one task
    def _container_definition(self, task: dict[str, Any]) -> dict[str, Any]:
        arn = task["taskDefinitionArn"]
        if arn not in self._task_definitions:
            described = self._ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
            self._task_definitions[arn] = described
        definitions = self._task_definitions[arn].get("containerDefinitions", [])
        essential = [d for d in definitions if d.get("essential", True)]
        if len(essential) != 1:
            raise ValueError(f"task definition {arn} must have exactly one essential container locally")
        return dict(essential[0])

    def task_environment(self, task: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        env = {name: os.environ[name] for name in HOST_VARIABLES if name in os.environ}
        env.update({v["name"]: v["value"] for v in container.get("environment") or []})
        for override in (task.get("overrides") or {}).get("containerOverrides", []):
            if override.get("name") == container.get("name"):
                env.update({v["name"]: v["value"] for v in override.get("environment") or []})
        env.update(self.config.aws_env)
        env.update(self.config.extra_env)
        env["TASK_ARN"] = task["taskArn"]
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _launch_or_fail(self, task: dict[str, Any]) -> None:
        """Start the task's process; if that is impossible, fail the task (as ECS would) so the workflow's
        ``Catch`` runs instead of waiting for the state's timeout."""
        arn = task["taskArn"]
        try:
            self._launch(task)
        except Exception as exc:  # any reason at all: the task must not stay RUNNING without a process
            logger.exception("task %s: cannot start %s", arn, list(self.config.command))
            with self._lock:
                self._finished[arn] = CANNOT_START_EXIT_CODE
            self._report(arn, CANNOT_START_EXIT_CODE, f"CannotStartContainerError: {exc}"[:255])

    def _launch(self, task: dict[str, Any]) -> None:
        arn = task["taskArn"]
        container = self._container_definition(task)
        env = self.task_environment(task, container)
        stop_timeout = float(container.get("stopTimeout") or DEFAULT_STOP_TIMEOUT)
        log = self._open_log(arn)
        try:
            process = subprocess.Popen(
                list(self.config.command),
                env=env,
                cwd=self.config.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the agent, not the tasks directly
            )
        except BaseException:
            if log is not None:
                log.close()
            raise
        run = _Running(arn, process, stop_timeout, log, time.monotonic())
        with self._lock:
            self._running[arn] = run
        logger.info("task %s: started pid %d (session %s)", arn, process.pid, env.get("SESSION_ID"))

    def _open_log(self, task_arn: str) -> IO[bytes] | None:
        if self.config.log_dir is None:
            return None
        return (self.config.log_dir / f"{task_arn.rsplit('/', 1)[-1]}.log").open("ab")

    def _stop_from_outside(self, run: _Running) -> None:
        now = time.monotonic()
        if run.term_sent_at is None:
            logger.info("task %s stopped from outside: SIGTERM to pid %d", run.task_arn, run.process.pid)
            run.term_sent_at = now
            self._signal(run, signal.SIGTERM)
        elif now - run.term_sent_at > run.stop_timeout:
            logger.warning("task %s: pid %d ignored SIGTERM for %.0f s: SIGKILL", run.task_arn, run.process.pid,
                           run.stop_timeout)
            self._signal(run, signal.SIGKILL)

    @staticmethod
    def _signal(run: _Running, signum: int) -> None:
        if run.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                run.process.send_signal(signum)

    def _finish(self, run: _Running, returncode: int | None, reason: str) -> None:
        with self._lock:
            if self._running.pop(run.task_arn, None) is None:
                return
            code = _exit_code(returncode)
            self._finished[run.task_arn] = code
        if run.log is not None:
            run.log.close()
        logger.info("task %s: pid %d exited with %d after %.1f s", run.task_arn, run.process.pid, code,
                    time.monotonic() - run.started)
        self._report(run.task_arn, code, reason)

    def _report(self, task_arn: str, code: int, reason: str) -> None:
        """Exit code first (in-process), then stop the task: ``.sync`` must never see it stopped with code 0."""
        try:
            self._report_exit(task_arn, code, reason)
            self._ecs.stop_task(cluster=self.config.cluster, task=task_arn, reason=reason)
            moto_patches.notify_task_stopped()  # the session's execution sees it now, not at its next check
        except Exception:  # moto may already be gone during shutdown
            logger.warning("task %s: could not report its exit to the embedded AWS", task_arn, exc_info=True)


def _exit_code(returncode: int | None) -> int:
    """A container's exit code: a process killed by signal N exits with 128 + N (as Docker reports it)."""
    if returncode is None:
        return 137
    return 128 - returncode if returncode < 0 else returncode


# ---------------------------------------------------------------- local stack component
COMMAND_ENV = "EMOTIONCTL_TASK_COMMAND"  # e.g. "python tests/fake_worker.py": replaces the entry point


class FargateAgentComponent:
    """Component (a background worker, after the orchestration resources): the local Fargate agent for the
    template's analyzer cluster. Task output goes to ``<state dir>/tasks/<task id>.log``. The entry point is
    ``python -m analyzer.worker`` unless ``command`` (or ``$EMOTIONCTL_TASK_COMMAND``) replaces it."""

    name = "fargate"

    def __init__(self, command: Sequence[str] | None = None, poll_seconds: float = 0.1,
                 extra_env: Mapping[str, str] | None = None) -> None:
        if command is None and os.environ.get(COMMAND_ENV):
            command = shlex.split(os.environ[COMMAND_ENV])
        self.command = tuple(command) if command else DEFAULT_COMMAND
        self.poll_seconds = poll_seconds
        self.extra_env = dict(extra_env or {})
        self.agent: FargateAgent | None = None
        self.log_dir: Path | None = None

    async def start(self, stack: LocalStack) -> None:
        import boto3

        cluster = stack.refs.get("AnalyzerCluster")
        if not cluster:
            raise RuntimeError("the orchestration component must register AnalyzerCluster before the agent starts")
        self.log_dir = stack.config.state_dir / "tasks"
        ecs = boto3.session.Session().client("ecs", endpoint_url=stack.aws_endpoint, region_name=stack.region)
        self.agent = FargateAgent(
            AgentConfig(
                cluster=str(cluster),
                aws_env=stack.aws_env(),
                command=self.command,
                extra_env={**self.extra_env, **stack.config.task_env},
                poll_seconds=self.poll_seconds,
                log_dir=self.log_dir,
                cwd=stack.config.template_path.parent,
            ),
            ecs,
        )
        self.agent.start()

    async def stop(self) -> None:
        if self.agent is not None:
            agent, self.agent = self.agent, None
            await asyncio.get_running_loop().run_in_executor(None, agent.stop)

    def describe(self) -> dict[str, Any]:
        agent = self.agent
        return {
            "command": list(self.command),
            "taskEnv": dict(self.agent.config.extra_env) if self.agent else dict(self.extra_env),
            "logDir": str(self.log_dir) if self.log_dir else None,
            "running": agent.running if agent else {},
            "exited": len(agent.finished) if agent else 0,
        }
