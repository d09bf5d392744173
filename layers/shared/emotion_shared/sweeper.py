"""The stale-worker sweeper: ends sessions whose worker stopped sending heartbeats.

For every active session (sparse ``byActive`` index) whose last heartbeat (``meta.healthCheck``, or
``createdAt`` if the worker never wrote one) is older than ``HEARTBEAT_STALE_SECONDS`` — a session still
``pending``/``provisioning`` without any heartbeat gets ``PROVISIONING_GRACE_SECONDS`` instead (image pull,
Fargate start) — the sweeper:

1. ends it ``failed`` / ``worker_lost`` (conditional: a session that ended meanwhile is left alone);
2. stops its ECS task (``taskArn``, or found by its ``SESSION_ID`` override when the worker never recorded it);
3. releases its capacity (exactly once, shared with every other path);
4. publishes ``SessionFailed`` — unless the session's Step Functions execution is still running: stopping
   the task lets that execution finish, and it publishes the event itself (one event per session).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from . import aws
from .clock import iso_ms, now_ms, parse_iso
from .composition import CompositionRoot
from .config import EnvSettings, Settings
from .lifecycle_events import EventPublisher, EventPublishError
from .session_models import SessionState, StopReason, WorkerState
from .sessions import SessionRepository

logger = logging.getLogger(__name__)

_NOT_STARTED = {WorkerState.PENDING.value, WorkerState.PROVISIONING.value}
_DESCRIBE_BATCH = 100


class SweeperSettings(EnvSettings):
    """The sweeper's own settings (the shared ones come from :class:`emotion_shared.config.Settings`)."""

    label: ClassVar[str] = "sweeper configuration"

    ecs_cluster: str | None = Field(default=None, alias="ECS_CLUSTER")
    provisioning_grace_seconds: int = Field(default=300, alias="PROVISIONING_GRACE_SECONDS", ge=0)


@dataclass(frozen=True)
class SweptSession:
    session_id: str
    reason: str
    task_arn: str | None
    task_stopped: bool
    capacity_released: bool
    event_published: bool


@dataclass
class SweepReport:
    active: int = 0
    swept: list[SweptSession] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "swept": [s.session_id for s in self.swept],
            "errors": list(self.errors),
        }


class Sweeper:
    def __init__(
        self,
        repo: SessionRepository,
        *,
        ecs: Any,
        sfn: Any,
        events: EventPublisher | None,
        cluster: str | None,
        stale_seconds: int,
        provisioning_grace_seconds: int,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._repo = repo
        self._ecs = ecs
        self._sfn = sfn
        self._events = events
        self._cluster = cluster
        self._stale_ms = stale_seconds * 1000
        self._grace_ms = max(stale_seconds, provisioning_grace_seconds) * 1000
        self._clock = clock

    # ------------------------------------------------------------------ decisions
    def staleness(self, item: dict[str, Any], now: int) -> str | None:
        """Why the session's worker counts as lost, or ``None`` while it is alive (or may still start)."""
        if item.get("state") != SessionState.ACTIVE.value:
            return None
        meta = item.get("meta") or {}
        heartbeat = meta.get("healthCheck")
        if heartbeat:
            last = int(parse_iso(str(heartbeat)).timestamp() * 1000)
            limit = self._stale_ms
        else:
            last = int(item["createdAtMs"])
            not_started = meta.get("workerState", WorkerState.PENDING.value) in _NOT_STARTED
            limit = self._grace_ms if not_started else self._stale_ms
        if now - last <= limit:
            return None
        since = f"last heartbeat {iso_ms(last)}" if heartbeat else f"no heartbeat since creation at {iso_ms(last)}"
        return f"worker lost: {since} (older than {limit // 1000} s)"

    # ------------------------------------------------------------------ actions
    def sweep(self) -> SweepReport:
        report = SweepReport()
        for session_id in self._repo.active_ids():
            report.active += 1
            try:
                swept = self.sweep_one(session_id)
            except (ClientError, BotoCoreError, EventPublishError) as exc:
                logger.exception("sweeping session %s failed", session_id)
                report.errors.append(f"{session_id}: {exc}")
                continue
            if swept is not None:
                report.swept.append(swept)
        return report

    def sweep_one(self, session_id: str) -> SweptSession | None:
        item = self._repo.get(session_id)
        if item is None:
            return None
        now = self._clock()
        reason = self.staleness(item, now)
        if reason is None:
            return None
        if not self._repo.end(session_id, StopReason.WORKER_LOST, now, worker_state=WorkerState.ERROR, error=reason):
            logger.info("session %s ended meanwhile; leaving it to whoever ended it", session_id)
            return None
        logger.warning("session %s: %s — ended as worker_lost", session_id, reason)
        task_arn = item.get("taskArn") or self._find_task(session_id)
        stopped = self._stop_task(task_arn, reason) if task_arn else False
        released = self._repo.release_capacity(session_id)
        published = False
        if self._events is not None and not self._execution_running(item.get("executionArn")):
            ended = self._repo.get(session_id)
            if ended is not None:
                self._events.publish_end(ended)
                published = True
        return SweptSession(session_id, reason, task_arn, stopped, released, published)

    def _stop_task(self, task_arn: str, reason: str) -> bool:
        cluster = self._cluster or _cluster_of(task_arn)
        try:
            self._ecs.stop_task(cluster=cluster, task=task_arn, reason=reason[:255])
        except ClientError as exc:
            logger.warning("could not stop task %s: %s", task_arn, exc)
            return False
        return True

    def _find_task(self, session_id: str) -> str | None:
        """The running task whose container overrides carry ``SESSION_ID=session_id`` (worker never reported it)."""
        if not self._cluster:
            return None
        for task in self._running_tasks():
            for override in (task.get("overrides") or {}).get("containerOverrides", []):
                for variable in override.get("environment", []):
                    if variable.get("name") == "SESSION_ID" and variable.get("value") == session_id:
                        return str(task["taskArn"])
        return None

    def _running_tasks(self) -> Iterator[dict[str, Any]]:
        arns: list[str] = []
        for page in self._ecs.get_paginator("list_tasks").paginate(cluster=self._cluster, desiredStatus="RUNNING"):
            arns.extend(page.get("taskArns", []))
        for start in range(0, len(arns), _DESCRIBE_BATCH):
            batch = arns[start : start + _DESCRIBE_BATCH]
            yield from self._ecs.describe_tasks(cluster=self._cluster, tasks=batch).get("tasks", [])

    def _execution_running(self, execution_arn: str | None) -> bool:
        if not execution_arn or self._sfn is None:
            return False
        try:
            status = self._sfn.describe_execution(executionArn=execution_arn)["status"]
        except ClientError as exc:
            logger.warning("could not describe execution %s: %s", execution_arn, exc)
            return False
        return status == "RUNNING"


def _cluster_of(task_arn: str) -> str:
    """``arn:aws:ecs:r:a:task/<cluster>/<id>`` → ``<cluster>`` (long ARN format); else the default cluster."""
    resource = task_arn.split(":", 5)[-1]
    parts = resource.split("/")
    return parts[1] if len(parts) == 3 else "default"


def build(settings: Settings, own: SweeperSettings) -> Sweeper:
    """The sweeper function's collaborators (its composition root builds them once per cold start)."""
    bus = settings.event_bus_name
    return Sweeper(
        SessionRepository(aws.client("dynamodb"), settings.sessions_table, settings.require("control_table")),
        ecs=aws.client("ecs"),
        sfn=aws.client("stepfunctions") if settings.state_machine_arn else None,
        events=EventPublisher(aws.client("events"), bus) if bus else None,
        cluster=own.ecs_cluster,
        stale_seconds=settings.heartbeat_stale_seconds,
        provisioning_grace_seconds=own.provisioning_grace_seconds,
    )


runtime: CompositionRoot[Sweeper] = CompositionRoot(
    "sweeper", lambda: build(Settings.from_env(), SweeperSettings.from_env())
)
