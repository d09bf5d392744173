"""``emotionctl demo``: the whole product in about a minute on the local stack (see :mod:`emotionctl.demo`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from emotionctl.commands import CliError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="a live session on a face clip, followed in the terminal (needs the local stack: make run)",
        description="Play a clip made from a real face photo on a local RTMP source, create a session on it through "
        "the HTTP API, show the worker state and the live per-second emotions (WebSocket), stop the session after "
        "--seconds of analysis and print its totals and timeline. Uses the running local stack (`make run` in "
        "another terminal), or starts one for this run with --start-stack. Ctrl-C stops the session early "
        "(and still prints the results).",
    )
    parser.add_argument("--seconds", type=_positive, default=20.0,
                        help="seconds of live analysis before the session is stopped (default: %(default)g)")
    parser.add_argument("--stack-file", type=Path,
                        help="the running local stack's state file (default: .local/stack.json)")
    parser.add_argument("--endpoint", help="API base URL to use instead of the one in the state file "
                        "(the WebSocket is at <endpoint>/ws/v1)")
    parser.add_argument("--start-stack", action="store_true",
                        help="start a local stack for this demo (free ports, temporary state) and stop it after")
    parser.add_argument("--user", default="demo", help="user of the dev token the demo mints (default: %(default)s)")
    parser.add_argument("--analysis-fps", type=_positive, default=5.0,
                        help="frames analysed per second (the session's config.analysisFps; default: %(default)g)")
    parser.set_defaults(handler=demo_command)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def demo_command(args: argparse.Namespace) -> int:
    from emotionctl.demo import DemoError, DemoOptions, Interrupted, run_demo

    if not args.verbose:  # the sources' and clips' progress is the demo's own status line
        logging.getLogger("emotionctl.media").setLevel(logging.WARNING)

    if args.start_stack and args.stack_file:
        raise CliError("--start-stack starts its own stack: it does not take --stack-file")
    options = DemoOptions(
        seconds=args.seconds,
        stack_file=args.stack_file,
        endpoint=args.endpoint,
        start_stack=args.start_stack,
        user=args.user,
        analysis_fps=args.analysis_fps,
    )
    try:
        result = asyncio.run(run_demo(options, sys.stdout))
    except Interrupted:
        return 130
    except DemoError as exc:
        raise CliError(str(exc)) from None
    if result.interrupted:
        return 130
    return 0 if result.final.get("state") == "finished" else 1  # a failed session: its reason is printed
