"""The capacity release is written twice — ``SessionRepository.release_capacity`` (Python: the REST stop, the sweeper)
and the state machine's ``ReleaseCapacity`` task (ASL) — and must be one transaction. This test resolves the ASL
task's parameters for a session and compares them, whole, with :func:`capacity_release_transaction`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from emotion_shared.sessions import capacity_release_transaction

ASL_PATH = Path(__file__).resolve().parents[2] / "statemachine" / "session.asl.json"
_FORMAT = re.compile(r"^States\.Format\('([^']*)', (\$[.\w]+)\)$")


def _path(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


def _resolve(node: Any, state: dict[str, Any], substitutions: dict[str, str]) -> Any:
    """ASL parameters → the request Step Functions sends: ``${…}`` substitutions, ``key.$`` JSONPaths and the one
    intrinsic the task uses (``States.Format`` with one argument). Anything else fails the test."""
    if isinstance(node, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: substitutions[m.group(1)], node)
    if isinstance(node, list):
        return [_resolve(item, state, substitutions) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.endswith(".$"):
            if (match := _FORMAT.match(value)) is not None:
                resolved = match.group(1).replace("{}", str(_path(state, match.group(2))), 1)
            elif value.startswith("$."):
                resolved = _path(state, value)
            else:
                raise AssertionError(f"unexpected ASL expression {value!r}")
            out[key.removesuffix(".$")] = resolved
        else:
            out[key] = _resolve(value, state, substitutions)
    return out


@pytest.mark.parametrize("user", ["alice", "user#with#hashes"])
def test_the_state_machine_releases_capacity_with_exactly_the_repositorys_transaction(user: str) -> None:
    task = json.loads(ASL_PATH.read_text())["States"]["ReleaseCapacity"]
    assert task["Resource"] == "arn:aws:states:::aws-sdk:dynamodb:transactWriteItems"
    state = {"sessionId": "6935f0a2c41d9e8b07000a1f", "loaded": {"Item": {"user": {"S": user}}}}
    resolved = _resolve(task["Parameters"], state, {"SessionsTable": "sessions-t", "ControlTable": "control-t"})
    assert resolved == {
        "TransactItems": capacity_release_transaction("sessions-t", "control-t", "6935f0a2c41d9e8b07000a1f", user)
    }
