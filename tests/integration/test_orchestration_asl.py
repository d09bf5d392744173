"""Static checks of statemachine/session.asl.json against the template (no AWS needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from emotionctl.local.template import TEMPLATE_PATH, load_template

ASL_PATH = TEMPLATE_PATH.parent / "statemachine" / "session.asl.json"
FAILURE_PATH = {"MarkFailed", "MarkWorkerError", "MarkWorkerStopped", "LoadSession", "ReleaseCapacity",
                "PublishFinished", "PublishFailed"}


def _definition() -> dict:
    return json.loads(ASL_PATH.read_text(encoding="utf-8"))


def _targets(state: dict) -> list[str]:
    targets = [state["Next"]] if "Next" in state else []
    targets += [c["Next"] for c in state.get("Catch", [])]
    targets += [c["Next"] for c in state.get("Choices", [])]
    if "Default" in state:
        targets.append(state["Default"])
    return targets


def test_asl_is_json_and_every_task_state_has_a_catch():
    states = _definition()["States"]
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    assert tasks
    for name, state in tasks.items():
        assert state.get("Catch"), f"Task state {name} has no Catch"
        assert any("States.ALL" in c["ErrorEquals"] for c in state["Catch"]), f"{name} does not catch States.ALL"


def test_every_transition_exists_and_every_state_is_reachable():
    definition = _definition()
    states = definition["States"]
    seen, todo = set(), [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        assert name in states, f"transition to unknown state {name}"
        seen.add(name)
        todo.extend(_targets(states[name]))
    assert seen == set(states), f"unreachable: {set(states) - seen}"


def test_work_steps_catch_into_mark_failed_and_cleanup_never_loops_back():
    states = _definition()["States"]
    for name in ("MarkProvisioning", "RunAnalyzer", "Finalize"):
        assert any(c["Next"] == "MarkFailed" and "States.ALL" in c["ErrorEquals"] for c in states[name]["Catch"])
    # once on the cleanup path, no transition leads back to the work or to MarkFailed (no retry loops)
    for name in FAILURE_PATH - {"MarkFailed"}:
        assert "MarkFailed" not in _targets(states[name]), name
    run = states["RunAnalyzer"]
    assert run["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    assert run["Parameters"]["LaunchType"] == "FARGATE"
    env = run["Parameters"]["Overrides"]["ContainerOverrides"][0]["Environment"]
    assert {"Name": "SESSION_ID", "Value.$": "$.sessionId"} in env
    assert "States.TaskFailed" not in json.dumps(run["Retry"])  # a worker that ran is never run twice


def test_every_substitution_is_defined_by_the_template_and_vice_versa():
    text = ASL_PATH.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))
    machine = load_template()["Resources"]["SessionStateMachine"]["Properties"]
    assert Path(TEMPLATE_PATH.parent / machine["DefinitionUri"]) == ASL_PATH
    assert used == set(machine["DefinitionSubstitutions"])


def test_release_capacity_is_the_same_transaction_as_the_repository():
    release = _definition()["States"]["ReleaseCapacity"]
    assert release["Resource"] == "arn:aws:states:::aws-sdk:dynamodb:transactWriteItems"
    session, global_counter, user_counter = (i["Update"] for i in release["Parameters"]["TransactItems"])
    assert session["ConditionExpression"] == "capacityHeld = :t AND #state <> :active"
    assert global_counter["Key"] == {"pk": {"S": "capacity#global"}}
    assert user_counter["Key"]["pk"]["S.$"].startswith("States.Format('capacity#user#{}'")
    for counter in (global_counter, user_counter):
        assert counter["UpdateExpression"] == "SET active = active - :one"
        assert counter["ConditionExpression"] == "active > :zero"
