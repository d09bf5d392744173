#!/usr/bin/env python
"""bench/concurrency — N live 1080p30 sessions at once on the local stack: does every session keep analysing?

    .venv/bin/python bench/concurrency.py [--sessions 4 8 12] [--measure 30] [--fps 5]

Starts its own `emotionctl local up` (temporary state dir, free port, capacity caps raised), makes a 1080p30
H.264 clip of a real face at 6 Mb/s (`emotionctl.media.clips.make_face_clip`) and, for each N:

1. starts N live RTMP sources (`emotionctl.media.RtmpSource`, ffmpeg `-re`, looped), one session per source
   (``POST /v1/sessions``), and waits until every worker reports ``working`` and has analysed a first frame;
2. measures ``--measure`` seconds: per session the analyses/s (the analysed frames its emotion buckets hold for
   the whole seconds of the window, divided by their number — a second with no bucket counts as 0), frames
   skipped (``meta.stats.skippedFrames``: received and not decoded, catching up), the lag p95 (samples of
   ``meta.stats.lagSeconds``, once a second), whether it reported itself degraded, the worker process's CPU
   (``/proc``), and the stack process's own CPU (the gateway, Lambda handlers, moto, stream poller — everything
   but the workers); then reads the emotion buckets of the window and counts the seconds in which frames
   arrived but none was analysed;
3. stops every session and waits for every worker to exit, then stops the sources.

Prints one line per N (min and median over the sessions) and the issue's targets next to them. Everything it
starts (the stack, the sources) is stopped by PID when it ends, whatever happens. Numbers are wall-clock on
whatever machine runs this.

Run against an older commit, a stack whose workers do not report ``lagSeconds``/``skippedFrames`` prints ``-``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from session_flow import PARAMS, USER, Stack, local_stack, percentile, wait_for

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
TARGETS = {4: 4.8, 8: 2.5, 12: 1.0}  # analyses/s every session must reach (issue 9)
LAG_TARGET = 2.0  # lag p95 at N = 12


@contextmanager
def stack_from(checkout: Path, workdir: Path) -> Iterator[Stack]:
    """`emotionctl local up` (and its workers) running another checkout's code, e.g. the commit before a change
    (``git worktree add --detach DIR COMMIT``), with this checkout's Python environment and models."""
    paths = os.pathsep.join(str(checkout / p) for p in ("", "containers/analyzer", "layers/shared"))
    env = {**os.environ, "PYTHONPATH": paths, "EMOTION_MODELS_DIR": str(REPO / "build" / "models")}
    state_dir = workdir / "stack"
    args = [sys.executable, "-m", "emotionctl", "local", "up", "--port", "0", "--state-dir", str(state_dir),
            "--lifetime", "3600", "--no-dev-token", "--task-env", f"PYTHONPATH={paths}"]
    for param in PARAMS:
        args += ["--param", param]
    with (workdir / "stack.log").open("wb") as log:
        process = subprocess.Popen(args, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        try:
            state_file = state_dir / "stack.json"
            wait_for(lambda: state_file.exists() or process.poll() is not None, 120, "the local stack", interval=0.2)
            if process.poll() is not None:
                raise RuntimeError(f"the local stack did not start; see {workdir / 'stack.log'}")
            state = json.loads(state_file.read_text())
            token = subprocess.run(
                [sys.executable, "-m", "emotionctl", "token", "create", "--user", USER, "--stack-file",
                 str(state_file)], cwd=checkout, env=env, capture_output=True, text=True, check=True, timeout=60,
            ).stdout.strip()
            yield Stack(process, state, token)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


def make_clip(keyframe_seconds: float) -> Path:
    from emotionctl.media.clips import make_face_clip

    return make_face_clip(
        1920, 1080, 30, segments=(("face", 10),), bit_rate=6_000_000, keyframe_seconds=keyframe_seconds
    )


# ------------------------------------------------------------------------------------------ /proc
def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime (fields 14, 15)


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        for child in children(todo.pop()):
            seen.append(child)
            todo.append(child)
    return seen


def session_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return None
    for entry in environ:
        if entry.startswith(b"SESSION_ID="):
            return entry.split(b"=", 1)[1].decode()
    return None


# ------------------------------------------------------------------------------------------ one round
@dataclass
class Session:
    id: str
    pid: int | None = None
    stats0: dict[str, Any] = field(default_factory=dict)
    stats1: dict[str, Any] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)
    degraded: bool = False
    cpu0: float = 0.0
    cpu1: float = 0.0
    unanalysed_seconds: int = 0
    seconds: int = 0
    analysed: int = 0  # frames analysed in the window's seconds (from the buckets)
    window: int = 0  # seconds in the window


def get_session(stack: Stack, session_id: str) -> dict[str, Any]:
    """GET the session; a loaded stack may time a read out (504): retried a few times."""
    for attempt in range(5):
        response = stack.call("GET", f"/v1/sessions/{session_id}")
        if response.status_code < 500 or attempt == 4:
            response.raise_for_status()
            return dict(response.json())
        time.sleep(0.5)
    raise AssertionError("unreachable")


def meta(stack: Stack, session_id: str) -> dict[str, Any]:
    return dict(get_session(stack, session_id)["meta"])


def create(stack: Stack, name: str, url: str, fps: float) -> str:
    """POST /v1/sessions with an idempotency key, retried on a 5xx (a loaded stack may time a handler out)."""
    key = uuid.uuid4().hex
    for attempt in range(4):
        response = requests.post(
            stack.url + "/v1/sessions", timeout=30,
            headers={"Authorization": f"Bearer {stack.token}", "Idempotency-Key": key},
            json={"name": name, "streamUri": url, "config": {"analysisFps": fps}},
        )
        if response.status_code < 500 or attempt == 3:
            response.raise_for_status()
            return str(response.json()["_id"])
        time.sleep(1.0)
    raise AssertionError("unreachable")


def started(stack: Stack, session_id: str) -> bool:
    state = meta(stack, session_id).get("workerState")
    if state in ("stopped", "error"):
        raise RuntimeError(f"session {session_id} ended before working")
    return state in ("connecting", "working")


def stopped(stack: Stack, session_id: str) -> bool:
    response = stack.call("GET", f"/v1/sessions/{session_id}")
    return response.status_code == 200 and response.json()["state"] != "active"


def exited(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def delta(session: Session, key: str) -> float | None:
    if key not in session.stats1:
        return None
    return float(session.stats1[key]) - float(session.stats0.get(key, 0))


def one_round(stack: Stack, clip: Path, n: int, measure: float, fps: float, profile: Path | None) -> dict[str, Any]:
    from emotionctl.media import RtmpSource

    sessions: list[Session] = []
    with ExitStack() as sources:
        urls = []
        for _ in range(n):
            source = sources.enter_context(RtmpSource(clip, loop=True, max_lifetime=int(measure) + 600))
            urls.append(source.wait_ready(30).url)
        try:
            for i, url in enumerate(urls):
                sessions.append(Session(create(stack, f"concurrency-{n}-{i}", url, fps)))
                # one worker start (process, imports, models) at a time, as sessions trickle in: a burst of N
                # model loads on a small machine would only measure the burst
                wait_for(partial(started, stack, sessions[-1].id), 120, f"session {i} to start", interval=0.25)

            def all_working() -> bool:
                for s in sessions:
                    m = meta(stack, s.id)
                    if m.get("workerState") in ("stopped", "error"):
                        raise RuntimeError(f"session {s.id} ended: {m}")
                    if m.get("workerState") != "working" or not (m.get("stats") or {}).get("analysedFrames"):
                        return False
                return True

            wait_for(all_working, 180, f"{n} working sessions", interval=0.5)
            time.sleep(3)  # past the first seconds after connecting (the server's cached GOP, warm-up)
            workers = {session_of(pid): pid for pid in descendants(stack.process.pid)}
            for s in sessions:
                s.pid = workers.get(s.id)
            worker_pids = {s.pid for s in sessions if s.pid}
            stack_pids = [stack.process.pid] + [p for p in descendants(stack.process.pid) if p not in worker_pids
                                                and not any(p in descendants(w) for w in worker_pids)]
            origin = time.time()
            stack_cpu0 = sum(cpu_seconds(p) for p in stack_pids)
            for s in sessions:
                s.stats0 = dict(meta(stack, s.id).get("stats") or {})
                s.cpu0 = cpu_seconds(s.pid) if s.pid else 0.0
            spy = None
            if profile is not None:  # py-spy (pip install py-spy) samples the stack process, not its children
                spy = subprocess.Popen(
                    [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(stack.process.pid),
                     "--duration", str(int(measure)), "--rate", "50", "--format", "raw", "--output", str(profile)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            deadline = time.monotonic() + measure
            while time.monotonic() < deadline:
                tick = time.monotonic()
                for s in sessions:
                    m = meta(stack, s.id)
                    stats = m.get("stats") or {}
                    if "lagSeconds" in stats:
                        s.lags.append(float(stats["lagSeconds"]))
                    s.degraded = s.degraded or bool(m.get("degraded"))
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
            elapsed = time.time() - origin
            if spy is not None:
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait(5)
            stack_cpu = (sum(cpu_seconds(p) for p in stack_pids) - stack_cpu0) / elapsed
            for s in sessions:
                s.stats1 = dict(meta(stack, s.id).get("stats") or {})
                s.cpu1 = cpu_seconds(s.pid) if s.pid else 0.0
            buckets_read(stack, sessions, origin, elapsed)
        finally:
            for s in sessions:
                stack.call("POST", f"/v1/sessions/{s.id}/stop")
            for s in sessions:
                wait_for(partial(stopped, stack, s.id), 120, f"session {s.id} to stop", interval=0.5)
                if s.pid:  # the worker process is gone before the next round starts
                    wait_for(partial(exited, s.pid), 60, f"worker {s.pid} to exit", interval=0.2)
    rates = [s.analysed / s.window for s in sessions]
    skipped = [delta(s, "skippedFrames") for s in sessions]
    dropped = [delta(s, "droppedFrames") for s in sessions]
    lag95 = [percentile(s.lags, 95) for s in sessions if s.lags]
    cpu = [(s.cpu1 - s.cpu0) / elapsed for s in sessions if s.pid]
    return {
        "n": n,
        "rate_min": min(rates),
        "rate_median": statistics.median(rates),
        "skipped": None if None in skipped else sum(x or 0 for x in skipped),
        "dropped": None if None in dropped else sum(x or 0 for x in dropped),
        "lag95_max": max(lag95) if lag95 else None,
        "lag95_median": statistics.median(lag95) if lag95 else None,
        "degraded": sum(1 for s in sessions if s.degraded),
        "worker_cpu": statistics.median(cpu) if cpu else None,
        "stack_cpu": stack_cpu,
        "unanalysed": sum(s.unanalysed_seconds for s in sessions),
        "seconds": sum(s.seconds for s in sessions),
    }


def buckets_read(stack: Stack, sessions: list[Session], origin: float, elapsed: float) -> None:
    """Seconds of the window in which frames arrived but none was analysed (read from the emotions table)."""
    import boto3

    aws = stack.state["aws"]
    db = boto3.session.Session().client(
        "dynamodb", endpoint_url=aws["endpoint"], region_name=aws["region"],
        aws_access_key_id="local", aws_secret_access_key="local",
    )
    table = stack.state["resources"]["EmotionsTable"]
    for s in sessions:
        created = get_session(stack, s.id)["timestamp"]
        from datetime import datetime

        start_epoch = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        lo, hi = int(origin - start_epoch) + 1, int(origin + elapsed - start_epoch) - 1
        items = db.query(
            TableName=table, KeyConditionExpression="sessionId = :s AND sec BETWEEN :a AND :b",
            ExpressionAttributeValues={":s": {"S": s.id}, ":a": {"N": str(lo)}, ":b": {"N": str(hi)}},
            ConsistentRead=True,
        )["Items"]
        s.seconds = len(items)
        s.window = hi - lo + 1
        s.analysed = sum(int(item["frames"]["N"]) for item in items)
        # a bucket exists only for a second in which frames arrived (older workers wrote one for dropped frames
        # too, without ``received``): frames == 0 is a second with frames and no analysis
        unanalysed = {int(item["sec"]["N"]) for item in items if int(item["frames"]["N"]) == 0}
        s.unanalysed_seconds = len(unanalysed)
        if unanalysed:  # the seconds around each, to tell a stall (few received) from a skip (all received)
            around = sorted(
                (int(item["sec"]["N"]), int(item.get("received", {}).get("N", -1)), int(item["frames"]["N"]))
                for item in items
                if any(abs(int(item["sec"]["N"]) - sec) <= 2 for sec in unanalysed)
            )
            print(f"  session {s.id}: (second, frames received, analysed) around the unanalysed ones: {around}",
                  flush=True)


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[4, 8, 12])
    parser.add_argument("--measure", type=float, default=30.0, help="seconds measured per N")
    parser.add_argument("--fps", type=float, default=5.0, help="analysisFps of every session")
    parser.add_argument("--keyframe-seconds", type=float, default=1.0,
                        help="the streams' keyframe interval (live platforms ask for 2 s; catching up waits for one)")
    parser.add_argument("--workdir", type=Path, help="keep the stack's state and logs here (default: a temp dir)")
    parser.add_argument("--stack-from", type=Path, metavar="CHECKOUT",
                        help="run the stack and workers from another checkout (the 'before' of a change)")
    parser.add_argument("--profile", type=int, metavar="N", help="profile the stack process with py-spy at this N")
    parser.add_argument("--profile-out", type=Path, default=Path("stack-profile.txt"),
                        help="where py-spy writes (collapsed stacks)")
    args = parser.parse_args()
    clip = make_clip(args.keyframe_seconds)
    print(f"clip: {clip.name}, a keyframe every {args.keyframe_seconds:g} s; {os.cpu_count()} cores; "
          f"{args.measure:.0f} s measured per N", flush=True)
    header = (f"{'N':>3} | {'analyses/s min':>14} | {'median':>6} | {'target':>6} | {'skipped':>7} | "
              f"{'dropped':>7} | {'lag p95 max':>11} | {'degraded':>8} | {'worker CPU':>10} | {'stack CPU':>9} | "
              f"{'s without analysis':>18}")
    rows = []
    with ExitStack() as context:
        if args.workdir is not None:  # kept afterwards: the stack's log and each task's log
            args.workdir.mkdir(parents=True, exist_ok=True)
            tmp = args.workdir
        else:
            tmp = Path(context.enter_context(tempfile.TemporaryDirectory(prefix="bench-concurrency-")))
        stack = context.enter_context(stack_from(args.stack_from, tmp) if args.stack_from else local_stack(tmp))
        for n in args.sessions:
            profile = args.profile_out if args.profile == n else None
            row = one_round(stack, clip, n, args.measure, args.fps, profile)
            rows.append(row)
            print(f"N={n}: " + json.dumps(row), flush=True)
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        target = TARGETS.get(r["n"])
        print(f"{r['n']:>3} | {r['rate_min']:>14.2f} | {r['rate_median']:>6.2f} | {fmt(target):>6} | "
              f"{fmt(r['skipped'], '.0f'):>7} | {fmt(r['dropped'], '.0f'):>7} | {fmt(r['lag95_max']):>9} s | "
              f"{r['degraded']:>5}/{r['n']:<2} | {fmt(r['worker_cpu']):>5} core | {r['stack_cpu']:>4.2f} core | "
              f"{r['unanalysed']:>4} of {r['seconds']:<5}")
    print()
    ok = True
    for r in rows:
        target = TARGETS.get(r["n"])
        verdict = []
        if target is not None and r["rate_min"] < target:
            verdict.append(f"a session below {target} analyses/s")
        if r["n"] >= 12 and (r["lag95_max"] is None or r["lag95_max"] > LAG_TARGET):
            verdict.append(f"lag p95 above {LAG_TARGET} s")
        if r["unanalysed"]:
            verdict.append(f"{r['unanalysed']} seconds with frames but no analysis")
        ok = ok and not verdict
        print(f"N={r['n']}: " + ("meets the targets" if not verdict else "; ".join(verdict)))
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
