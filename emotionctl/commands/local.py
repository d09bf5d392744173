"""``emotionctl local up|status|down``: the embedded local stack (no AWS account, no Docker)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from emotionctl.commands import CliError

if TYPE_CHECKING:
    from emotionctl.local.up import Started

DEV_USER = "dev"


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("local", help="the embedded local stack")
    sub = parser.add_subparsers(dest="local_command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run the local stack in the foreground (Ctrl-C stops it)",
        description="Run the whole service on this machine: moto as the AWS side (tables from template.yaml) "
        "and a local API gateway in front of the same handler code. Prints the URL and a dev token.",
    )
    up.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    up.add_argument("--port", type=int, default=3000, help="API port (default: %(default)s; 0: any free port)")
    up.add_argument("--moto-port", type=int, default=0, help="embedded AWS port (default: any free port)")
    up.add_argument("--state-dir", type=Path, help="where stack.json goes (default: .local in the repository)")
    up.add_argument("--param", action="append", type=_parameter, default=[], metavar="NAME=VALUE",
                    help="override a template parameter, e.g. --param MaxActiveSessions=4 (repeatable)")
    up.add_argument("--task-env", action="append", type=_parameter, default=[], metavar="NAME=VALUE",
                    help="extra environment for every analyzer task (local Fargate), e.g. --task-env "
                    "RECONNECT_WINDOW_SECONDS=2 (repeatable)")
    up.add_argument("--dev-user", default=DEV_USER, help="user of the printed dev token (default: %(default)s)")
    up.add_argument("--no-dev-token", action="store_true", help="do not mint a dev token")
    up.add_argument("--lifetime", type=float, help="stop by itself after this many seconds (tests)")
    up.set_defaults(handler=up_command)

    status = sub.add_parser("status", help="print the running local stack's state file (JSON)")
    status.add_argument("--state-dir", type=Path)
    status.set_defaults(handler=status_command)

    down = sub.add_parser("down", help="stop the running local stack (SIGTERM to its process)")
    down.add_argument("--state-dir", type=Path)
    down.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for it to exit")
    down.set_defaults(handler=down_command)


def up_command(args: argparse.Namespace) -> int:
    from emotionctl.local.stack import StackConfig
    from emotionctl.local.state import default_state_dir
    from emotionctl.local.up import StackAlreadyRunning, run

    try:
        config = StackConfig(
            host=args.host,
            port=args.port,
            moto_port=args.moto_port,
            state_dir=args.state_dir or default_state_dir(),
            parameters=dict(args.param),
            lifetime_seconds=args.lifetime,
            task_env=dict(args.task_env),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None

    def ready(started: Started) -> None:
        token = None if args.no_dev_token else _dev_token(started, args.dev_user)
        _print_banner(started, token, args.dev_user)

    try:
        return run(config, on_ready=ready)
    except (StackAlreadyRunning, ValueError) as exc:
        raise CliError(str(exc)) from None


# The dev token `make run` prints stops working after this (mint others with `emotionctl token create`).
DEV_TOKEN_SECONDS = 24 * 3600


def _dev_token(started: Started, user: str) -> tuple[str, int]:
    import boto3
    from emotion_shared.auth import create_token
    from emotion_shared.clock import now_ms

    stack = started.stack
    env = stack.aws_env()
    client = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=stack.region,
    ).client("dynamodb", endpoint_url=stack.aws_endpoint)
    expires_ms = now_ms() + DEV_TOKEN_SECONDS * 1000
    return create_token(client, stack.refs["ControlTable"], user, expires_ms=expires_ms, name="dev"), expires_ms


def _print_banner(started: Started, dev_token: tuple[str, int] | None, user: str) -> None:
    from emotion_shared.auth import describe_expiry
    from emotion_shared.clock import now_ms

    state = started.state
    url = state["endpoint"]
    dashboard = state["components"].get("dashboard")
    token = dev_token[0] if dev_token else None
    lines = [
        "",
        "emotion-stream local stack is up",
        *([f"  dashboard     {_dashboard_line(dashboard, token)}"] if dashboard is not None else []),
        f"  REST API      {url}/v1/sessions",
        f"  OpenAPI       {state['openapiUrl']}",
        f"  health        {state['healthUrl']}",
        f"  embedded AWS  {state['aws']['endpoint']}  (moto; AWS_ENDPOINT_URL for boto3/aws cli)",
        f"  state file    {started.stack.state_file}",
    ]
    if dev_token:
        token, expires_ms = dev_token
        lines += [
            f"  dev token     {token}   (user {user!r}, expires {describe_expiry(expires_ms, now_ms())})",
            "",
            "Try:",
            f"  export TOKEN={token}",
            f'  curl -s -H "Authorization: Bearer $TOKEN" {url}/v1/sessions',
            "  # more tokens: TOKEN=$(emotionctl token create --user alice)",
        ]
    lines += ["", "Ctrl-C stops it.", ""]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def _dashboard_line(dashboard: dict[str, object], token: str | None) -> str:
    """The dashboard's URL; with a dev token, a link that signs in directly (``#token=``, never sent to the server)."""
    url = str(dashboard.get("url") or "")
    if not dashboard.get("built", False):
        return f"{url}   (not built: run make setup)"
    return f"{url}#token={token}" if token else url


def status_command(args: argparse.Namespace) -> int:
    from emotionctl.local.state import StackNotRunning, read_state, state_path

    try:
        state = read_state(state_path(args.state_dir))
    except StackNotRunning as exc:
        raise CliError(str(exc)) from None
    sys.stdout.write(json.dumps(state, indent=2, sort_keys=True) + "\n")
    return 0


def down_command(args: argparse.Namespace) -> int:
    from emotionctl.local.state import StackNotRunning, pid_alive, read_state, state_path

    try:
        state = read_state(state_path(args.state_dir))
    except StackNotRunning as exc:
        raise CliError(str(exc)) from None
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise CliError(f"the local stack (pid {pid}) did not stop within {args.timeout:.0f} s")
        time.sleep(0.1)
    return 0
