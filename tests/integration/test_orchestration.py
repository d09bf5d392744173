"""The session state machine end to end on moto: real ASL, real Step Functions interpreter (patched), tasks
run as processes by the local Fargate agent (a fake worker entry point), events captured via rule → SQS."""

from __future__ import annotations

import os
import signal

import pytest
from botocore.exceptions import ClientError
from emotion_shared.clock import now_ms
from orchestration_support.harness import orchestration_harness, wait_for


def _detail_types(events: list[dict]) -> list[tuple[str, dict]]:
    return [(e["detail-type"], e["detail"]) for e in events]


def test_worker_that_ends_the_session_itself_is_finalized_released_and_announced(moto_server):
    with orchestration_harness(moto_server, "finish") as h:
        # Given an active session holding capacity
        session_id = h.create_session()
        assert h.capacity() == (1, 1)

        # When its execution runs (the fake worker ends the session as stream_ended and exits 0)
        execution = h.start(session_id)
        result = h.wait_execution(execution)

        # Then the execution went provision → task → finalize → release → event, and succeeded
        assert result["status"] == "SUCCEEDED"
        states = h.states_entered(execution)
        for step in ("MarkProvisioning", "RunAnalyzer", "Finalize", "ReleaseCapacity", "PublishFinished"):
            assert step in states
        assert states.index("RunAnalyzer") < states.index("Finalize") < states.index("ReleaseCapacity")
        # the worker's own end is kept (Finalize never overwrites it); the worker is recorded as stopped
        item = h.repo.get(session_id)
        assert item["state"] == "finished"
        assert item["meta"]["stopReason"] == "stream_ended"
        assert item["meta"]["workerState"] == "stopped"
        assert item["executionArn"] == execution
        assert item["capacityHeld"] is False
        assert h.capacity() == (0, 0)
        assert "activeShard" not in item
        # exactly one task ran, with the session id in its environment, and exited 0
        assert list(h.agent.finished.values()) == [0]
        assert item["taskArn"] in h.agent.finished
        assert _detail_types(h.events(1)) == [
            ("SessionFinished",
             {"sessionId": session_id, "user": "alice", "state": "finished", "stopReason": "stream_ended"})
        ]


def test_worker_exiting_non_zero_reaches_the_catch(moto_server):
    with orchestration_harness(moto_server, "crash") as h:
        session_id = h.create_session()
        execution = h.start(session_id)
        result = h.wait_execution(execution)

        # The non-zero exit fails ecs:runTask.sync → Catch → failed / worker_error → release → SessionFailed
        assert result["status"] == "FAILED"
        assert result["error"] == "Session.WorkerFailed"
        states = h.states_entered(execution)
        assert "MarkFailed" in states and "Finalize" not in states
        item = h.repo.get(session_id)
        assert (item["state"], item["meta"]["stopReason"], item["meta"]["workerState"]) == (
            "failed", "worker_error", "error"
        )
        assert item["meta"]["error"].startswith("States.TaskFailed")
        assert item["endedAt"].endswith("Z")
        assert list(h.agent.finished.values()) == [3]
        assert h.capacity() == (0, 0)
        assert _detail_types(h.events(1)) == [
            ("SessionFailed",
             {"sessionId": session_id, "user": "alice", "state": "failed", "stopReason": "worker_error"})
        ]


def test_worker_exiting_zero_without_ending_is_finalized_as_finished(moto_server):
    with orchestration_harness(moto_server, "exit0") as h:
        session_id = h.create_session()
        assert h.wait_execution(h.start(session_id))["status"] == "SUCCEEDED"
        item = h.repo.get(session_id)
        assert (item["state"], item["meta"]["workerState"]) == ("finished", "stopped")
        assert item["meta"]["stopReason"] == "stream_ended"
        assert h.capacity() == (0, 0)
        assert [e["detail-type"] for e in h.events(1)] == ["SessionFinished"]


def test_user_stop_before_the_task_starts_skips_the_run(moto_server):
    with orchestration_harness(moto_server, "finish") as h:
        # Given a session the user stopped before its execution began
        session_id = h.create_session()
        h.repo.request_stop(session_id, "alice", now_ms())

        execution = h.start(session_id)
        result = h.wait_execution(execution)

        # Then no task ran, the capacity is released once and SessionFinished carries user_request
        assert result["status"] == "SUCCEEDED"
        states = h.states_entered(execution)
        assert "RunAnalyzer" not in states
        assert h.client("ecs").list_tasks(cluster=h.orchestration.cluster_name)["taskArns"] == []
        assert h.agent.finished == {}
        item = h.repo.get(session_id)
        assert (item["state"], item["meta"]["stopReason"]) == ("finished", "user_request")
        assert h.capacity() == (0, 0)
        assert _detail_types(h.events(1)) == [
            ("SessionFinished",
             {"sessionId": session_id, "user": "alice", "state": "finished", "stopReason": "user_request"})
        ]


def test_user_stop_while_working_ends_the_task_and_releases_once(moto_server):
    with orchestration_harness(moto_server, "until-stopped") as h:
        session_id = h.create_session()
        execution = h.start(session_id)
        wait_for(lambda: (h.repo.get(session_id)["meta"] or {}).get("workerState") == "working", 30, "working")

        # When the user stops it and (like the REST stop) releases the capacity itself
        h.repo.request_stop(session_id, "alice", now_ms())
        assert h.repo.release_capacity(session_id) is True

        # Then the worker exits 0, the execution succeeds without releasing a second time
        assert h.wait_execution(execution)["status"] == "SUCCEEDED"
        assert list(h.agent.finished.values()) == [0]
        assert "ReleaseCapacity" not in h.states_entered(execution)
        item = h.repo.get(session_id)
        assert (item["state"], item["meta"]["stopReason"], item["meta"]["workerState"]) == (
            "finished", "user_request", "stopped"
        )
        assert h.capacity() == (0, 0)
        assert [e["detail-type"] for e in h.events(1)] == ["SessionFinished"]


def test_duplicate_start_with_the_same_name_runs_once(moto_server):
    with orchestration_harness(moto_server, "until-stopped") as h:
        session_id = h.create_session()
        first = h.start(session_id)
        wait_for(lambda: h.agent.running, 30, "the task to start")

        # The same name and input while running: the same execution (StartExecution is idempotent)
        assert h.start(session_id) == first

        h.repo.request_stop(session_id, "alice", now_ms())
        assert h.wait_execution(first)["status"] == "SUCCEEDED"

        # Once it ended, the name is taken: no second run can ever start for this session
        with pytest.raises(ClientError) as raised:
            h.start(session_id)
        assert raised.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
        assert len(h.agent.finished) == 1
        assert h.capacity() == (0, 0)


def test_worker_killed_with_sigkill_fails_the_session_through_the_catch(moto_server):
    with orchestration_harness(moto_server, "hang") as h:
        session_id = h.create_session()
        execution = h.start(session_id)
        pid = next(iter(wait_for(lambda: h.agent.running, 30, "the task to start").values()))
        wait_for(lambda: (h.repo.get(session_id)["meta"] or {}).get("workerState") == "working", 30, "working")

        os.kill(pid, signal.SIGKILL)

        assert h.wait_execution(execution)["status"] == "FAILED"
        assert list(h.agent.finished.values()) == [137]  # 128 + SIGKILL, as a container runtime reports it
        item = h.repo.get(session_id)
        assert (item["state"], item["meta"]["stopReason"]) == ("failed", "worker_error")
        assert h.capacity() == (0, 0)
        assert [e["detail-type"] for e in h.events(1)] == ["SessionFailed"]


def test_a_release_that_keeps_being_cancelled_is_retried_a_bounded_number_of_times(moto_server):
    with orchestration_harness(moto_server, "finish") as h:
        # Given a session whose global counter drifted to 0 (the release condition "active > 0" cannot hold)
        session_id = h.create_session()
        h.client("dynamodb").update_item(
            TableName=h.tables["ControlTable"], Key={"pk": {"S": "capacity#global"}},
            UpdateExpression="SET active = :zero", ExpressionAttributeValues={":zero": {"N": "0"}},
        )
        execution = h.start(session_id)

        # Then the execution re-reads and retries, gives up visibly, and never decrements anything twice
        result = h.wait_execution(execution)
        assert (result["status"], result["error"]) == ("FAILED", "Session.CleanupFailed")
        assert h.states_entered(execution).count("ReleaseCapacity") == 5
        assert h.repo.get(session_id)["capacityHeld"] is True
        assert h.capacity() == (0, 1)
        assert h.events(0, timeout=1) == []


def test_a_task_whose_entry_point_cannot_start_fails_through_the_catch(moto_server, tmp_path):
    with orchestration_harness(moto_server, "finish", command=(str(tmp_path / "no-such-entry-point"),)) as h:
        session_id = h.create_session()
        assert h.wait_execution(h.start(session_id))["status"] == "FAILED"
        assert list(h.agent.finished.values()) == [127]
        assert h.repo.get(session_id)["meta"]["stopReason"] == "worker_error"
        assert h.capacity() == (0, 0)
