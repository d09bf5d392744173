#!/usr/bin/env python
"""bench/sizing — what one analyzer task needs: CPU and memory for one live session, 720p and 1080p, one face
and a crowd. The figures behind template.yaml's ``AnalyzerCpu`` / ``AnalyzerMemory`` defaults.

    .venv/bin/python bench/sizing.py [--seconds 30] [--fps 5]

For each case it serves a looped clip as a live RTMP stream (`emotionctl.media.RtmpSource`, ffmpeg ``-re``)
and runs the analyzer's own frame loop on it — ``python -m analyzer.cli analyze URL --fps 5 --seconds S``:
the same ingest (decode, catch-up), rate gate, face finder and classifiers as the worker, without the
once-a-second DynamoDB writes — as a child process, then reads its resource usage from the kernel
(``wait4``: user + system CPU seconds, peak RSS). Cases:

- ``720p face`` / ``1080p face``: `emotionctl.media.clips.make_face_clip`, 30 fps, one real face moving;
- ``720p crowd`` / ``1080p crowd``: `emotionctl.media.evalset.clips.make_crowd_clip`, 30 fps, 30 faces.

Prints per case: CPU (cores = CPU seconds per second of stream), peak RSS, the analyses/s achieved and the
frames received per second (a case that could not keep up on this machine says so: its CPU figure is then a
lower bound). CPU time is what the process used, so the figures hold on a busy machine as long as the
analysis kept up; the machine's cores are not a Fargate vCPU (Graviton ARM64 by default), hence the headroom
in the README's choice.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def face_clip(width: int, height: int) -> Path:
    from emotionctl.media.clips import make_face_clip

    return make_face_clip(width, height, 30, segments=(("face", 10),))


def crowd_clip(width: int, height: int) -> Path:
    from emotionctl.media.evalset import build_evalset
    from emotionctl.media.evalset.clips import make_crowd_clip

    return Path(make_crowd_clip(build_evalset(), width=width, height=height, fps=30, seconds=6.0).path)


def measure(clip: Path, seconds: float, fps: float) -> dict[str, float]:
    from emotionctl.media import RtmpSource

    with RtmpSource(clip, loop=True, max_lifetime=int(seconds) + 120) as source:
        url = source.wait_ready(30).url
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "analyzer.cli", "analyze", url, "--fps", str(fps), "--seconds", str(int(seconds))],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        lines = process.stdout.read().decode().splitlines()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"analyze exited {process.returncode} on {clip.name}")
    seconds_out = [json.loads(line) for line in lines if line.startswith("{")]
    steady = seconds_out[1:]  # the first second includes the connection and the server's cached GOP
    analysed = sum(s["frames"]["analysed"] for s in steady)
    received = sum(s["frames"]["received"] for s in steady)
    return {
        "cpu": (usage.ru_utime + usage.ru_stime) / wall,  # includes start-up (models load): a slight over-estimate
        "rss_mb": usage.ru_maxrss / 1024,
        "rate": analysed / max(1, len(steady)),
        "received": received / max(1, len(steady)),
        "faces": max((s["detectedFaces"] for s in steady), default=0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of stream per case")
    parser.add_argument("--fps", type=float, default=5.0, help="analyses per second asked")
    parser.add_argument("--cases", nargs="+", default=["720p face", "1080p face", "720p crowd", "1080p crowd"])
    args = parser.parse_args()
    sizes = {"720p": (1280, 720), "1080p": (1920, 1080)}
    print(f"{'case':12} | {'CPU':>10} | {'peak RSS':>9} | {'analyses/s':>10} | {'frames/s in':>11} | faces")
    for case in args.cases:
        size, scene = case.split()
        clip = (face_clip if scene == "face" else crowd_clip)(*sizes[size])
        r = measure(clip, args.seconds, args.fps)
        note = "" if r["rate"] >= 0.9 * args.fps else "  (did not keep up here: CPU is a lower bound)"
        print(f"{case:12} | {r['cpu']:5.2f} core | {r['rss_mb']:6.0f} MB | {r['rate']:10.2f} | "
              f"{r['received']:11.1f} | {r['faces']:.0f}{note}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
