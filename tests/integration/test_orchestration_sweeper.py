"""The stale-worker sweeper: its staleness rules, and sweeping for real against moto + the local agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emotion_shared.clock import iso_ms, now_ms
from emotion_shared.sweeper import Sweeper
from orchestration_support.harness import orchestration_harness, template_resolver, wait_for

from emotionctl.local.lambda_runtime import function_specs, running
from emotionctl.local.moto_server import local_aws_env
from emotionctl.local.template import TEMPLATE_PATH, load_template

NOW = 1_800_000_000_000
EVENT = Path(__file__).resolve().parents[2] / "events" / "sweeper_schedule.json"


def _rules() -> Sweeper:
    return Sweeper(None, ecs=None, sfn=None, events=None, cluster=None, stale_seconds=60,  # type: ignore[arg-type]
                   provisioning_grace_seconds=300, clock=lambda: NOW)


def _item(*, age_s: int, heartbeat_age_s: int | None = None, worker: str = "working", state: str = "active") -> dict:
    meta = {"workerState": worker}
    if heartbeat_age_s is not None:
        meta["healthCheck"] = iso_ms(NOW - heartbeat_age_s * 1000)
    return {"id": "s", "state": state, "createdAtMs": NOW - age_s * 1000, "meta": meta}


def test_staleness_follows_the_heartbeat_and_gives_starting_workers_a_grace_period():
    rules = _rules()
    assert rules.staleness(_item(age_s=3600, heartbeat_age_s=5), NOW) is None
    assert "last heartbeat" in rules.staleness(_item(age_s=3600, heartbeat_age_s=61), NOW)
    # never heartbeated: pending/provisioning get the grace period, others the plain threshold
    assert rules.staleness(_item(age_s=200, worker="pending"), NOW) is None
    assert rules.staleness(_item(age_s=200, worker="provisioning"), NOW) is None
    assert "no heartbeat since creation" in rules.staleness(_item(age_s=301, worker="provisioning"), NOW)
    assert rules.staleness(_item(age_s=61, worker="connecting"), NOW) is not None
    # ended sessions are never swept
    assert rules.staleness(_item(age_s=3600, heartbeat_age_s=3600, state="finished"), NOW) is None


def test_sweeper_ends_a_hung_worker_stops_its_task_and_releases_capacity_once(moto_server):
    with orchestration_harness(moto_server, "hang") as h:
        # Given a worker that heartbeated once and then hung
        session_id = h.create_session()
        execution = h.start(session_id)
        wait_for(lambda: (h.repo.get(session_id)["meta"] or {}).get("workerState") == "working", 30, "working")
        task_arn = h.repo.get(session_id)["taskArn"]
        assert task_arn in h.agent.running

        # When the sweeper runs two minutes later
        report = h.sweeper(clock=lambda: now_ms() + 120_000).sweep()

        # Then the session is failed / worker_lost, its task stopped (the process terminated), capacity freed
        assert [s.session_id for s in report.swept] == [session_id]
        swept = report.swept[0]
        assert swept.task_arn == task_arn and swept.task_stopped and swept.capacity_released
        assert not swept.event_published  # the execution is still running: it announces the end itself
        item = h.repo.get(session_id)
        assert (item["state"], item["meta"]["stopReason"], item["meta"]["workerState"]) == (
            "failed", "worker_lost", "error"
        )
        assert "no heartbeat" in item["meta"]["error"] or "last heartbeat" in item["meta"]["error"]
        wait_for(lambda: task_arn in h.agent.finished, 30, "the hung process to be terminated")
        h.wait_execution(execution)
        assert h.capacity() == (0, 0)
        # exactly one terminal event, with the sweeper's reason
        assert [(e["detail-type"], e["detail"]["stopReason"]) for e in h.events(1)] == [
            ("SessionFailed", "worker_lost")
        ]
        # a second sweep finds nothing
        assert h.sweeper(clock=lambda: now_ms() + 120_000).sweep().swept == []


def test_scheduled_sweeper_function_ends_a_session_whose_execution_never_ran(moto_server):
    with orchestration_harness(moto_server, "finish") as h:
        # Given a session created 10 minutes ago that never got a worker (no execution, no task)
        session_id = h.create_session(created_ms=now_ms() - 600_000)
        fresh_id = h.create_session()
        env = {
            "SESSIONS_TABLE": h.tables["SessionsTable"],
            "EMOTIONS_TABLE": h.tables["EmotionsTable"],
            "CONTROL_TABLE": h.tables["ControlTable"],
            "EVENT_BUS_NAME": h.orchestration.event_bus_name,
            "STATE_MACHINE_ARN": h.orchestration.state_machine_arn,
            "ECS_CLUSTER": h.orchestration.cluster_name,
            "HEARTBEAT_STALE_SECONDS": "60",
            "PROVISIONING_GRACE_SECONDS": "300",
        }

        # When the template's SweeperFunction runs in a worker process of its own (that environment only),
        # with a real scheduled event
        resolver = template_resolver({}, {})

        def resolve(value: Any) -> Any:  # the template's defaults; what the harness did not create is unused
            try:
                return resolver.resolve(value)
            except LookupError:
                return ""

        spec = function_specs(
            load_template(), resolve, base_dir=TEMPLATE_PATH.parent, name_prefix=h.prefix,
            region="us-east-1", account_id="123456789012", overrides={**env, **local_aws_env(h.endpoint)},
        )["SweeperFunction"]
        with running(spec) as function:
            result = function.invoke_sync(json.loads(EVENT.read_text()))

        # Then only the stale session is ended, capacity freed, and the sweeper announced it itself
        assert result["swept"] == [session_id]
        assert h.repo.get(session_id)["meta"]["stopReason"] == "worker_lost"
        assert h.repo.get(fresh_id)["state"] == "active"
        assert h.capacity() == (1, 1)
        assert [(e["detail-type"], e["detail"]["sessionId"]) for e in h.events(1)] == [
            ("SessionFailed", session_id)
        ]
