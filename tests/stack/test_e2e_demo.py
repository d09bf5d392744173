"""`emotionctl demo`, run as a user runs it (a subprocess, its output read as text): on the running local stack,
with a stack of its own (--start-stack) stopped early by Ctrl-C, and without any stack."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import testsupport
from stack_support import REPO, StackProcess

from emotionctl.local.state import pid_alive

pytestmark = [pytest.mark.stack, pytest.mark.media]

RUN_TIMEOUT = 180.0  # the whole demo, generous: a cold start on a busy 2-core machine
LIVE_LINE = re.compile(r"^\s+\d+:\d\d\s+\d+\s+(\w+|-)\s")


@pytest.fixture(autouse=True)
def _ffmpeg() -> None:
    testsupport.needs("ffmpeg")


def demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "emotionctl", "demo", *args]


def test_without_a_stack_it_says_how_to_start_one(tmp_path: Path) -> None:
    result = subprocess.run(demo("--stack-file", str(tmp_path / "stack.json")), capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 1
    assert "no local stack is running" in result.stderr
    assert "make run" in result.stderr and "--start-stack" in result.stderr
    assert result.stdout == ""


def test_the_demo_on_the_running_stack(local_stack: StackProcess) -> None:
    result = subprocess.run(demo("--stack-file", str(local_stack.state_file), "--seconds", "4"),
                            capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=REPO)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    session_id = re.search(r"session\s+([0-9a-f]{24})", out).group(1)  # type: ignore[union-attr]
    # the worker's progress, then one line per analysed second, the face's emotion among them
    assert re.search(r"worker\s+(pending|provisioning) → .*connecting → working", out), out
    live = [line for line in out.splitlines() if LIVE_LINE.match(line)]
    assert len(live) >= 3, out
    assert any("happiness" in line for line in live), out
    # stopped after the chosen time; totals and timeline read back
    assert f"Session {session_id}: finished (user_request)" in out, out
    totals = out.split("Totals:", 1)[1]
    assert totals.splitlines()[1].split()[0] == "happiness", out  # the largest bar first
    assert re.search(r"^\s+\d+:\d\d–\d+:\d\d\s+1\s+happiness", out.split("Timeline:", 1)[1], re.MULTILINE), out

    session = local_stack.request("GET", f"/v1/sessions/{session_id}", user="demo").json()
    assert (session["state"], session["meta"]["stopReason"], session["meta"]["workerState"]) == (
        "finished", "user_request", "stopped"), session


@contextmanager
def running(args: list[str]) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str | None]]]:
    """A process whose stdout lines arrive on a queue (None at the end); killed (by PID) if still running."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_its_own_stack_and_ctrl_c(tmp_path: Path) -> None:
    """--start-stack runs a stack for the demo; Ctrl-C during the live part stops the session cleanly, still
    prints the results, and the demo's stack is stopped."""
    seen: list[str] = []
    stack_pid: int | None = None
    with running(demo("--start-stack", "--seconds", "120")) as (process, lines):
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "\n".join(seen)
            seen.append(line)
            if stack_pid is None and (found := re.search(r"state file (\S+stack\.json)", line)):
                stack_pid = int(json.loads(Path(found.group(1)).read_text())["pid"])
            if LIVE_LINE.match(line):
                break
        process.send_signal(signal.SIGINT)  # Ctrl-C
        while (line := lines.get(timeout=RUN_TIMEOUT)) is not None:
            seen.append(line)
        code = process.wait(30)
    out = "\n".join(seen)
    assert code == 130, out
    assert "interrupted (Ctrl-C): stopping the session" in out
    assert re.search(r"Session [0-9a-f]{24}: finished \(user_request\)", out), out
    assert "Totals:" in out and "Timeline:" in out
    assert stack_pid is not None and not pid_alive(stack_pid), "the demo's own stack is still running"
