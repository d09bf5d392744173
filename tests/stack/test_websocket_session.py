"""The whole product over the WebSocket: a real session on a live RTMP source (ffmpeg), created and stopped
over HTTP, followed on ``session_worker_state`` (connecting → working → stopped) and on a ``1s`` channel.

Needs orchestration (state machine + local Fargate agent) and the analyzer worker in the local stack.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from stack_support import StackProcess
from websocket_support import authenticated, run

pytestmark = [pytest.mark.stack, pytest.mark.media]

SOURCE_SECONDS = 120  # the source stops by itself


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def rtmp_source() -> Iterator[str]:
    """A live H.264 test pattern served by ffmpeg on rtmp://127.0.0.1:PORT/live/key (one client)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make setup installs it)")
    port = _free_port()
    url = f"rtmp://127.0.0.1:{port}/live/key"
    process = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi",
         "-i", f"testsrc2=size=640x360:rate=15:duration={SOURCE_SECONDS}",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15",
         "-f", "flv", "-listen", "1", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until it listens (without connecting: one client only)
            if any(f":{port:04X} " in line and " 0A " in line for line in open("/proc/net/tcp", encoding="ascii")):
                break
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _dedup(states: list[str]) -> list[str]:
    out: list[str] = []
    for state in states:
        if not out or out[-1] != state:
            out.append(state)
    return out


def test_a_real_session_connecting_working_stopped(local_stack: StackProcess, rtmp_source: str) -> None:
    created = local_stack.request("POST", "/v1/sessions", json={"name": "ws live", "streamUri": rtmp_source})
    assert created.status_code == 201, created.text
    session_id = created.json()["_id"]

    async def main() -> tuple[list[str], list[Any]]:
        async with authenticated(local_stack, "alice") as client:
            state = (await client.subscribe("session_worker_state", session_id))["body"]["subscriptionId"]
            counts = (await client.subscribe("session_emotions_counts", f"{session_id}:1s"))["body"]
            states: list[str] = []
            seconds: list[Any] = []
            stopped_at: float | None = None
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                event = await client.event(timeout=60)
                if event[0] == state:
                    states.append(event[3][0])
                elif event[0] == counts["subscriptionId"]:
                    seconds.append(event)
                if states and states[-1] == "working" and len(seconds) >= 3 and stopped_at is None:
                    stop = local_stack.request("POST", f"/v1/sessions/{session_id}/stop")
                    assert stop.status_code == 200, stop.text
                    stopped_at = time.monotonic()
                if states and states[-1] in ("stopped", "error"):
                    break
            return states, seconds

    states, seconds = run(main())
    sequence = _dedup(states)
    assert sequence[-1] == "stopped", sequence
    assert "working" in sequence and sequence.index("working") < len(sequence) - 1
    assert "connecting" in sequence and sequence.index("connecting") < sequence.index("working"), sequence
    # while working, one 1 s event per second of analysis, stamped with the end of its second
    stamps = [event[1] for event in seconds]
    assert len(stamps) >= 3
    assert all(b - a == 1000 for a, b in itertools.pairwise(stamps)), stamps
