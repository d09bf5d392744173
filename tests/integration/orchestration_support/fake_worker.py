"""A stand-in for ``python -m analyzer.worker``: behaves like the worker towards DynamoDB, without media.

Run by the local Fargate agent as the container's entry point. ``FAKE_WORKER_MODE`` selects the behaviour:

- ``finish``: working, one emotion bucket, then ends the session itself (finished / stream_ended), exit 0;
- ``crash``: working, then exit 3 without ending the session;
- ``until-stopped``: heartbeat every 0.1 s until the heartbeat reports a stop, then exit 0 (like the worker);
- ``hang``: one heartbeat, then nothing (a stuck worker) until SIGTERM;
- ``exit0``: exit 0 at once, without touching the session.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import boto3
from emotion_shared.clock import now_ms
from emotion_shared.session_models import StopReason, WorkerState
from emotion_shared.sessions import SessionRepository


def main() -> int:
    mode = os.environ["FAKE_WORKER_MODE"]
    session_id = os.environ["SESSION_ID"]
    task_arn = os.environ["TASK_ARN"]
    if mode == "exit0":
        return 0
    db = boto3.session.Session().client("dynamodb")
    repo = SessionRepository(db, os.environ["SESSIONS_TABLE"])
    repo.heartbeat(session_id, WorkerState.WORKING, now_ms(), task_arn=task_arn)
    if mode == "finish":
        db.put_item(
            TableName=os.environ["EMOTIONS_TABLE"],
            Item={"sessionId": {"S": session_id}, "sec": {"N": "0"}, "frames": {"N": "1"}, "faces": {"M": {}}},
        )
        repo.end(session_id, StopReason.STREAM_ENDED, now_ms(), worker_state=WorkerState.STOPPED)
        return 0
    if mode == "crash":
        return 3
    if mode == "until-stopped":
        while not repo.heartbeat(session_id, WorkerState.WORKING, now_ms()).stop:
            time.sleep(0.1)
        repo.set_worker_state(session_id, WorkerState.STOPPED, now_ms())
        return 0
    if mode == "hang":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        while True:
            time.sleep(1)
    raise SystemExit(f"unknown FAKE_WORKER_MODE {mode!r}")


if __name__ == "__main__":
    sys.exit(main())
