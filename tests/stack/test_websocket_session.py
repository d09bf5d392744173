"""The whole product over the WebSocket: a real session on a live RTMP source (emotionctl.media), created and stopped
over HTTP, followed on ``session_worker_state`` (connecting → working → stopped) and on a ``1s`` channel.

Needs orchestration (state machine + local Fargate agent) and the analyzer worker in the local stack.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
import testsupport
from stack_support import StackProcess
from websocket_support import authenticated, run

pytestmark = [pytest.mark.stack, pytest.mark.media]

SOURCE_SECONDS = 120  # the source stops by itself


@pytest.fixture
def rtmp_source() -> Iterator[str]:
    """A live face clip served by ffmpeg on rtmp://127.0.0.1:PORT/live/KEY (one client; emotionctl.media)."""
    from emotionctl.media import RtmpSource
    from emotionctl.media.clips import make_face_clip

    testsupport.needs("ffmpeg")
    clip = make_face_clip(640, 360, 15, segments=(("face", 10),))
    with RtmpSource(clip, loop=True, max_lifetime=SOURCE_SECONDS) as source:
        yield source.url


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
