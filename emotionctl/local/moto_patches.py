"""Patches for moto's defects that the local stack depends on — all of them here, pinned to one moto version.

moto runs in the same process as the local stack (``ThreadedMotoServer``), so its Step Functions interpreter
and ECS backend can be corrected in-process. Each patch names the defect it works around. :func:`apply`
refuses to run on another moto version and ends with :func:`self_test`, which exercises every patch and
fails loudly (``MotoPatchError``) when one no longer applies — e.g. after an upgrade that fixed or moved the
code, in which case the patch should be deleted or redone, not silently skipped.

Defects (moto 5.2.5):

1. **ECS parameters are not normalised** in the Step Functions interpreter (getmoto/moto issue 10076):
   ``StateTaskService._normalise_parameters`` / ``_normalise_response`` are empty stubs, so
   ``arn:aws:states:::ecs:runTask.sync`` calls boto with ``Cluster=…`` and fails with ``KeyError: 'Cluster'``.
   Patched on ``StateTaskServiceEcs`` only (the other integrations we use — DynamoDB, EventBridge, aws-sdk
   DynamoDB — take PascalCase parameters natively and work unpatched), converting with botocore's own
   operation model, as the upstream interpreter does.
2. **A failed ECS task does not fail ``.sync``**: in AWS, ``ecs:runTask.sync`` fails with ``States.TaskFailed``
   (cause: the task description as JSON) when a container of the stopped task exited non-zero; moto returns
   success whatever the exit code. Patched in the ECS sync resolver.
3. **``.sync`` polls every 0.5 s** (``_DELAY_SECONDS_SYNC_CONDITION_CHECK``, a ``time.sleep``): locally the
   wait is woken as soon as the local Fargate agent stops a task (:func:`notify_task_stopped`), so a session's
   execution moves on at once, and otherwise lasts :data:`SYNC_POLL_SECONDS`. (It used to be a 50 ms poll:
   one ``DescribeTasks`` round trip per running session every 50 ms was a quarter of the local stack's CPU
   with 8 live sessions — py-spy, ``bench/concurrency.py --profile 8``.)
4. **Interpreter clients are built per state with ``boto3.client``** on the shared default session, which is
   not thread-safe when many executions start at once, and on ``localhost`` (may try IPv6 first). Patched to a
   cached, lock-guarded client per service/region on ``127.0.0.1:$MOTO_PORT``.
5. **A task's container ``exitCode`` is always 0** and there is no API to report one: the local Fargate agent
   reports exit codes through :func:`report_task_exit` (in-process access to moto's ECS backend).
7. **DynamoDB transactions are not isolated** in the threaded server: ``transact_write_items`` snapshots whole
   tables and, when a condition fails, restores the snapshot — erasing every write other request threads made
   meanwhile (lost capacity-counter updates under concurrent create/stop/delete). :func:`isolate_dynamodb`
   (called by :func:`emotionctl.local.moto_server.start_moto`, so tests get it too) handles DynamoDB
   requests one at a time, which DynamoDB's own isolation guarantees allow.
6. **``$$.State.EnteredTime`` is Python's ``isoformat()``** (``…T05:42:07.568187+00:00``) instead of AWS's
   ``…T05:42:07.568Z``; the state machine stores it as ``endedAt``. Patched to AWS's format.

Not patched, worked around where the resources are created (:mod:`emotionctl.local.orchestration`): an
``awsvpc`` task crashes ``RunTask`` (500, ``NetworkInterface`` has no ``private_dns_name``) unless its VPC has
DNS hostnames enabled; a Fargate container definition needs a container-level ``memory`` (template).
"""

from __future__ import annotations

import datetime
import functools
import logging
import re
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

logger = logging.getLogger(__name__)

MOTO_VERSION = "5.2.5"
SYNC_POLL_SECONDS = 0.5

_task_stopped = threading.Condition()

_applied = False
_lock = threading.Lock()


class MotoPatchError(RuntimeError):
    """A moto patch no longer applies (moto changed): fix or remove the patch, do not run unpatched."""


# ---------------------------------------------------------------- module access
def _modules() -> SimpleNamespace:
    """Import the moto internals the patches touch; a missing one is a loud :class:`MotoPatchError`."""
    try:
        import moto
        from moto.ecs import models as ecs_models
        from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
        from moto.stepfunctions.parser.asl.component.common.error_name import failure_event
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
            StatesErrorNameType,
        )
        from moto.stepfunctions.parser.asl.component.state import state as state_module
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
            state_task_service,
            state_task_service_aws_sdk,
            state_task_service_callback,
            state_task_service_dynamodb,
            state_task_service_ecs,
            state_task_service_events,
        )
        from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
        from moto.stepfunctions.parser.asl.utils import boto_client
        from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
    except ImportError as exc:  # pragma: no cover - only when moto's layout changed
        raise MotoPatchError(f"moto internals moved ({exc}); update emotionctl/local/moto_patches.py") from exc
    return SimpleNamespace(
        moto=moto,
        ecs_models=ecs_models,
        HistoryEventType=HistoryEventType,
        TaskFailedEventDetails=TaskFailedEventDetails,
        FailureEvent=failure_event.FailureEvent,
        FailureEventException=failure_event.FailureEventException,
        StatesErrorName=StatesErrorName,
        StatesErrorNameType=StatesErrorNameType,
        base=state_task_service,
        callback=state_task_service_callback,
        ecs=state_task_service_ecs,
        client_users=(
            boto_client,
            state_task_service_ecs,
            state_task_service_dynamodb,
            state_task_service_events,
            state_task_service_aws_sdk,
        ),
        EventDetails=EventDetails,
        to_json_str=to_json_str,
        state_module=state_module,
    )


# ------------------------------------------------- 1. ECS parameter normalisation
@functools.cache
def _service_model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def _operation_model(task: Any, boto_service_name: str | None, service_action_name: str | None) -> Any:
    """botocore's model of the operation (``run_task`` → ``RunTask``) the state calls."""
    service = task._get_boto_service_name(boto_service_name=boto_service_name)
    action = task._get_boto_service_action(service_action_name=service_action_name).replace("_", "").lower()
    model = _service_model(service)
    for name in model.operation_names:
        if name.lower() == action:
            return model.operation_model(name)
    raise MotoPatchError(f"no botocore operation {action!r} in service {service!r}")


def _normalise_parameters(
    self: Any, parameters: dict, boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    shape = _operation_model(self, boto_service_name, service_action_name).input_shape
    if shape is not None:
        self._to_boto_request(parameters, shape)


def _normalise_response(
    self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    shape = _operation_model(self, boto_service_name, service_action_name).output_shape
    if shape is not None:
        self._from_boto_response(response, shape)


# -------------------------------------------------- 2. failed ECS task fails .sync
def _make_sync_resolver_builder(m: SimpleNamespace) -> Callable[..., Any]:
    def _build_sync_resolver(
        self: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict, state_credentials: Any
    ) -> Callable[[], Any]:
        ecs_client = m.client_users[0].boto_client_for(
            service="ecs", region=resource_runtime_part.region, state_credentials=state_credentials
        )
        submission_output: dict = env.stack.pop()
        task_arn: str = submission_output["Tasks"][0]["TaskArn"]
        cluster_arn: str = submission_output["Tasks"][0]["ClusterArn"]

        def _sync_resolver() -> dict | None:
            described = ecs_client.describe_tasks(cluster=cluster_arn, tasks=[task_arn])
            if described["tasks"][0]["lastStatus"] != "STOPPED":
                return None
            self._normalise_response(response=described, service_action_name="describe_tasks")
            task = described["Tasks"][0]
            failed = [c for c in task.get("Containers", []) if c.get("ExitCode") not in (None, 0)]
            if failed:
                error = m.StatesErrorNameType.StatesTaskFailed.to_name()
                raise m.FailureEventException(
                    m.FailureEvent(
                        env=env,
                        error_name=m.StatesErrorName(typ=m.StatesErrorNameType.StatesTaskFailed),
                        event_type=m.HistoryEventType.TaskFailed,
                        event_details=m.EventDetails(
                            taskFailedEventDetails=m.TaskFailedEventDetails(
                                resource=self._get_sfn_resource(),
                                resourceType=self._get_sfn_resource_type(),
                                error=error,
                                cause=m.to_json_str(task),
                            )
                        ),
                    )
                )
            return task

        return _sync_resolver

    return _build_sync_resolver


# ------------------------------------------------ 4. cached, thread-safe clients
_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def _boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    import boto3
    from botocore.config import Config
    from moto.settings import moto_server_port

    key = (service, region)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = boto3.session.Session().client(
                service,
                region_name=region,
                aws_access_key_id="ak",
                aws_secret_access_key="sk",  # noqa: S106 - moto accepts any credentials
                endpoint_url=f"http://127.0.0.1:{moto_server_port()}",
                config=Config(
                    parameter_validation=False,
                    retries={"max_attempts": 0, "total_max_attempts": 1},
                    connect_timeout=10,
                    read_timeout=60,
                    max_pool_connections=64,
                ),
            )
            _clients[key] = client
        return client


# ------------------------------------------------------ 6. AWS timestamp format
class _AwsTimestamp(datetime.datetime):
    """A datetime whose ``isoformat()`` is the one Step Functions uses in the context object."""

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        utc = self.astimezone(datetime.UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


_AWS_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# ------------------------------------------------------------- 5. exit codes
def _sync_wait(seconds: float) -> None:
    """A ``.sync`` state's wait between checks: ``seconds``, or less when a task stops meanwhile."""
    with _task_stopped:
        _task_stopped.wait(seconds)


def notify_task_stopped() -> None:
    """Wake every ``.sync`` state waiting between checks (patch 3): call after ``StopTask``."""
    with _task_stopped:
        _task_stopped.notify_all()


def report_task_exit(task_arn: str, exit_code: int, reason: str) -> bool:
    """Record a container exit code on a moto ECS task (moto has no API for it). False if the task is unknown.

    Call this *before* stopping the task, so a ``.sync`` poll never sees it stopped with the default code 0.
    """
    m = _modules()
    for account in m.ecs_models.ecs_backends.values():
        for backend in account.values():
            for tasks in backend.tasks.values():
                task = tasks.get(task_arn)
                if task is None:
                    continue
                for container in task.containers:
                    container.exitCode = exit_code
                    container.reason = reason
                    container.last_status = "STOPPED"
                task.stop_code = "EssentialContainerExited"
                return True
    return False


# ------------------------------------------------------- 7. DynamoDB isolation
_dynamodb_lock = threading.RLock()
_dynamodb_isolated = False


def isolate_dynamodb() -> None:
    """Serialise moto's DynamoDB request handling (defect 7). Idempotent; checks the moto version."""
    global _dynamodb_isolated
    import moto
    from moto.dynamodb.responses import DynamoHandler

    with _lock:
        if _dynamodb_isolated:
            return
        if moto.__version__ != MOTO_VERSION:
            raise MotoPatchError(
                f"patch 7 (DynamoDB isolation) is written for moto {MOTO_VERSION}, found {moto.__version__}: check "
                "whether transact_write_items still restores whole-table snapshots"
            )
        if not hasattr(DynamoHandler, "call_action"):
            raise MotoPatchError("DynamoHandler.call_action is gone: moto's DynamoDB responses changed")
        original = DynamoHandler.call_action

        @functools.wraps(original)
        def call_action(self: Any) -> Any:
            with _dynamodb_lock:
                return original(self)

        call_action.__emotionctl_isolated__ = True  # type: ignore[attr-defined]
        DynamoHandler.call_action = call_action  # type: ignore[method-assign]
        _dynamodb_isolated = True


def dynamodb_isolated() -> bool:
    from moto.dynamodb.responses import DynamoHandler

    return bool(getattr(DynamoHandler.call_action, "__emotionctl_isolated__", False))


# ------------------------------------------------------------------- apply
def apply() -> None:
    """Apply every patch once (idempotent), then run :func:`self_test`."""
    global _applied
    with _lock:
        if _applied:
            return
        m = _modules()
        if m.moto.__version__ != MOTO_VERSION:
            raise MotoPatchError(
                f"emotionctl/local/moto_patches.py is written for moto {MOTO_VERSION}, found {m.moto.__version__}: "
                "check each defect listed in the module docstring against the new version"
            )
        ecs_cls = m.ecs.StateTaskServiceEcs
        for name in ("_normalise_parameters", "_normalise_response", "_build_sync_resolver", "_to_boto_request"):
            if not hasattr(ecs_cls, name):
                raise MotoPatchError(f"StateTaskServiceEcs.{name} is gone: moto's interpreter changed")
        if not hasattr(m.callback, "_DELAY_SECONDS_SYNC_CONDITION_CHECK"):
            raise MotoPatchError("moto's .sync poll delay constant is gone: moto's interpreter changed")
        _require_upstream_still_broken(m)

        ecs_cls._normalise_parameters = _normalise_parameters
        ecs_cls._normalise_response = _normalise_response
        ecs_cls._build_sync_resolver = _make_sync_resolver_builder(m)
        m.callback._DELAY_SECONDS_SYNC_CONDITION_CHECK = SYNC_POLL_SECONDS
        if getattr(m.callback, "time", None) is not time:
            raise MotoPatchError("moto's .sync callback module no longer sleeps with time.sleep: check patch 3")
        m.callback.time = SimpleNamespace(sleep=_sync_wait)
        if getattr(m.state_module, "datetime", None) is not datetime:
            raise MotoPatchError("moto's state module no longer imports datetime: check patch 6")
        m.state_module.datetime = SimpleNamespace(datetime=_AwsTimestamp, timezone=datetime.timezone)
        for module in m.client_users:
            if not hasattr(module, "boto_client_for"):
                raise MotoPatchError(f"{module.__name__}.boto_client_for is gone: moto's interpreter changed")
            module.boto_client_for = _boto_client_for
        _applied = True
    self_test()
    logger.info("moto %s patched for the local stack", MOTO_VERSION)


def _fake_task(m: SimpleNamespace, cls: Any, service: str, action: str) -> Any:
    task = cls.__new__(cls)  # no ASL program needed: only the (de)normalisation helpers are exercised
    task.resource = SimpleNamespace(api_name=service, api_action=action, service_name=service)
    return task


def _require_upstream_still_broken(m: SimpleNamespace) -> None:
    """Stop if moto fixed defect 1 itself: the patch would then hide an upstream behaviour change."""
    task = _fake_task(m, m.ecs.StateTaskServiceEcs, "ecs", "runTask")
    params = {"Cluster": "c"}
    m.base.StateTaskService._normalise_parameters(task, params)
    if params != {"Cluster": "c"}:
        raise MotoPatchError("moto now normalises ECS parameters itself: remove patch 1 of moto_patches.py")


def self_test() -> None:
    """Exercise every patch; raise :class:`MotoPatchError` naming the one that no longer works."""
    m = _modules()
    if not _applied:
        raise MotoPatchError("moto patches are not applied")
    task = _fake_task(m, m.ecs.StateTaskServiceEcs, "ecs", "runTask")
    params: dict[str, Any] = {
        "Cluster": "c",
        "TaskDefinition": "t",
        "LaunchType": "FARGATE",
        "StartedBy": "AWS Step Functions",
        "NetworkConfiguration": {"AwsvpcConfiguration": {"Subnets": ["s"], "AssignPublicIp": "DISABLED"}},
        "Overrides": {"ContainerOverrides": [{"Name": "n", "Environment": [{"Name": "K", "Value": "v"}]}]},
    }
    task._normalise_parameters(params)
    expected = {
        "cluster": "c",
        "taskDefinition": "t",
        "launchType": "FARGATE",
        "startedBy": "AWS Step Functions",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s"], "assignPublicIp": "DISABLED"}},
        "overrides": {"containerOverrides": [{"name": "n", "environment": [{"name": "K", "value": "v"}]}]},
    }
    if params != expected:
        raise MotoPatchError(f"patch 1 (ECS request normalisation) no longer works: got {params}")
    normalised: dict[str, Any] = {"tasks": [{"taskArn": "a", "clusterArn": "c", "containers": [{"exitCode": 3}]}]}
    task._normalise_response(normalised, service_action_name="describe_tasks")
    if normalised != {"Tasks": [{"TaskArn": "a", "ClusterArn": "c", "Containers": [{"ExitCode": 3}]}]}:
        raise MotoPatchError(f"patch 1 (ECS response normalisation) no longer works: got {normalised}")
    if m.ecs.StateTaskServiceEcs._build_sync_resolver.__module__ != __name__:
        raise MotoPatchError("patch 2 (failed ECS task fails .sync) is not installed")
    if m.callback._DELAY_SECONDS_SYNC_CONDITION_CHECK != SYNC_POLL_SECONDS or m.callback.time.sleep is not _sync_wait:
        raise MotoPatchError("patch 3 (.sync poll delay, woken by task stops) is not installed")
    for module in m.client_users:
        if module.boto_client_for is not _boto_client_for:
            raise MotoPatchError(f"patch 4 (interpreter clients) is not installed in {module.__name__}")
    entered = m.state_module.datetime.datetime.now(tz=m.state_module.datetime.timezone.utc).isoformat()
    if not _AWS_TIMESTAMP.match(entered):
        raise MotoPatchError(f"patch 6 (EnteredTime format) no longer works: {entered}")
    container = m.ecs_models.Container(SimpleNamespace(arn="td", container_definitions=[{"name": "n"}]))
    if not hasattr(container, "exitCode") or not hasattr(m.ecs_models, "ecs_backends"):
        raise MotoPatchError("patch 5 (exit code reporting): moto's ECS task/container model changed")
    if _dynamodb_isolated and not dynamodb_isolated():
        raise MotoPatchError("patch 7 (DynamoDB isolation) was undone")
