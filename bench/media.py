#!/usr/bin/env python
"""bench/media — the local live sources as the analyzer sees them: open time and publish → decoded-frame latency
per protocol (RTMP, RTSP, RTMPS), on loopback.

    .venv/bin/python bench/media.py [--runs 5] [--frames 60] [--size 640x360] [--fps 15]

For each protocol, ``--runs`` times: a fresh source (``emotionctl.media``, ``trace=True``) plays the face clip,
the analyzer's own ingest (``analyzer.ingest.open_stream`` + ``frames``: fast-start options, threaded decoding)
opens it and decodes ``--frames`` frames. Reported:

- open: ``open_stream`` wall time (connect, handshake, probing);
- first frame: from the start of the open to the first decoded frame;
- latency: for each decoded frame, decoded − sent, where "sent" is when the publisher handed that frame to the
  connection: FFmpeg's ``-debug_ts`` muxer lines for RTMP/RTMPS (the RTMPS figure includes stunnel), the RTSP
  server's pipeline clock for RTSP (a frame leaves when the clock reaches its running time). Frames the
  publisher sent while the client was still opening wait for the open to finish: they are reported apart
  ("backlog": the age of the first frame), the rest is the steady state (p50/p95/max).
- the same with plain ``av.open`` (no ``nobuffer``, decoder threads left to FFmpeg) for comparison.

Numbers are wall clock on whatever machine runs this (a shared 2-core box here).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _ingest_frames(url: str, n: int) -> tuple[float, list[tuple[float, float | None]]]:
    """(open seconds, [(decoded wall time, pts seconds)]) through the analyzer's ingest."""
    from analyzer import ingest

    started = time.time()
    container = ingest.open_stream(url, (15.0, 10.0))
    opened = time.time() - started
    out: list[tuple[float, float | None]] = [(started, None)]
    try:
        for frame in ingest.frames(container):
            out.append((frame.received, frame.pts_seconds))
            if len(out) > n:
                break
    finally:
        container.close()
    return opened, out


def _plain_frames(url: str, n: int) -> tuple[float, list[tuple[float, float | None]]]:
    """The same with a plain av.open (FFmpeg's defaults apart from fast probing)."""
    import av

    options = {"analyzeduration": "0", "probesize": "32768"}
    if url.startswith("rtsp://"):
        options["rtsp_transport"] = "tcp"
    started = time.time()
    container = av.open(url, options=options, timeout=(15.0, 10.0))
    opened = time.time() - started
    out: list[tuple[float, float | None]] = [(started, None)]
    try:
        stream = container.streams.video[0]
        time_base = float(stream.time_base)
        for frame in container.decode(stream):
            out.append((time.time(), frame.pts * time_base if frame.pts is not None else None))
            if len(out) > n:
                break
    finally:
        container.close()
    return opened, out


def measure(protocol: str, clip: Path, runs: int, frames: int, reader: Any) -> dict[str, Any]:
    from emotionctl.media import RtmpSource, RtmpsSource, RtspSource

    kind = {"rtmp": RtmpSource, "rtsp": RtspSource, "rtmps": RtmpsSource}[protocol]
    opens: list[float] = []
    firsts: list[float] = []
    backlog: list[float] = []
    steady: list[float] = []
    for _ in range(runs):
        with kind(clip, max_lifetime=120, trace=True) as source:  # type: ignore[call-arg]
            opened, decoded = reader(source.url, frames)
            started = decoded[0][0]
            opens.append(opened)
            firsts.append(decoded[1][0] - started)
            open_done = started + opened
            first = True
            for received, pts in decoded[1:]:
                sent = source.sent_at(pts) if pts is not None else None
                if sent is None:
                    continue
                if sent < open_done:  # waited for the open: not a transport figure
                    if first:
                        backlog.append(received - sent)
                    first = False
                    continue
                steady.append(received - sent)
    ms = [v * 1000 for v in steady]
    return {
        "open_s": statistics.median(opens),
        "first_frame_s": statistics.median(firsts),
        "backlog_ms": statistics.median(backlog) * 1000 if backlog else math.nan,
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "max_ms": max(ms) if ms else math.nan,
        "n": len(ms),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=60, help="frames decoded per run")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=int, default=15)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    from emotionctl.media import ToolMissing, require_tools
    from emotionctl.media.clips import make_face_clip

    clip = make_face_clip(width, height, args.fps)
    print(f"clip {clip.name}: {width}x{height} @ {args.fps} fps, keyframe every 1 s; {args.runs} runs x "
          f"{args.frames} frames per protocol; frame interval {1000 / args.fps:.1f} ms")
    tools = {"rtmp": ("ffmpeg",), "rtsp": ("ffmpeg", "gst-rtsp-server"), "rtmps": ("ffmpeg", "stunnel", "openssl")}
    header = f"{'protocol':<8} {'reader':<22} {'open s':>7} {'1st frame s':>12} {'backlog ms':>11} " \
             f"{'latency ms p50':>15} {'p95':>7} {'max':>7} {'n':>5}"
    print(header)
    for protocol in ("rtmp", "rtsp", "rtmps"):
        try:
            require_tools(*tools[protocol])
        except ToolMissing as exc:
            print(f"{protocol:<8} skipped: {exc}")
            continue
        for label, reader in (("analyzer.ingest", _ingest_frames), ("plain av.open", _plain_frames)):
            r = measure(protocol, clip, args.runs, args.frames, reader)
            print(f"{protocol:<8} {label:<22} {r['open_s']:7.3f} {r['first_frame_s']:12.3f} {r['backlog_ms']:11.0f} "
                  f"{r['p50_ms']:15.1f} {r['p95_ms']:7.1f} {r['max_ms']:7.1f} {r['n']:5d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
