"""`emotionctl local up|status|down` as processes: state file, parameters, one stack per state dir, clean stops."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest
from stack_support import emotionctl, start_stack

pytestmark = pytest.mark.stack


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_everything_and_removes_the_state_file(tmp_path: Path) -> None:
    # Given a stack with a parameter override
    stack = start_stack(tmp_path, "MaxActiveSessionsPerUser=2")
    try:
        # Then its state file says where everything is
        state = json.loads(stack.state_file.read_text())
        assert state["version"] == 1
        assert state["pid"] == stack.process.pid
        assert state["endpoint"] == f"http://127.0.0.1:{state['ports']['gateway']}"
        assert state["aws"]["endpoint"] == f"http://127.0.0.1:{state['ports']['moto']}"
        assert set(state["tables"]) >= {"SessionsTable", "EmotionsTable", "ControlTable", "IdempotencyTable"}
        assert state["env"]["MAX_ACTIVE_SESSIONS_PER_USER"] == "2"
        assert state["env"]["ALLOW_PRIVATE_STREAM_HOSTS"] == "true"
        assert state["env"]["CONTROL_TABLE"] == state["tables"]["ControlTable"]
        # And `local status` prints it
        assert json.loads(emotionctl("local", "status", "--state-dir", str(tmp_path)).stdout) == state
        # And a second stack on the same state dir is refused, naming the running one
        second = emotionctl("local", "up", "--port", "0", "--state-dir", str(tmp_path), check=False)
        assert second.returncode == 1
        assert f"pid {stack.process.pid}" in second.stderr
    finally:
        # When it gets Ctrl-C
        code = stack.stop(signal.SIGINT)
    # Then it exits 0, its ports are closed and the state file is gone
    assert code == 0, stack.log()
    assert not stack.state_file.exists()
    assert not _port_open(state["ports"]["gateway"])
    assert not _port_open(state["ports"]["moto"])
    assert "Traceback" not in stack.log()


def test_local_down_stops_the_stack_of_a_state_dir(tmp_path: Path) -> None:
    stack = start_stack(tmp_path)
    try:
        emotionctl("local", "down", "--state-dir", str(tmp_path))
        assert stack.process.wait(10) == 0
    finally:
        stack.stop()
    assert not stack.state_file.exists()
    status = emotionctl("local", "status", "--state-dir", str(tmp_path), check=False)
    assert status.returncode == 1
    assert "no local stack is running" in status.stderr


def test_unknown_parameter_is_a_clear_error(tmp_path: Path) -> None:
    result = emotionctl("local", "up", "--port", "0", "--state-dir", str(tmp_path), "--param", "NoSuchThing=1",
                        check=False)
    assert result.returncode == 1
    assert "NoSuchThing" in result.stderr
    assert not (tmp_path / "stack.json").exists()
