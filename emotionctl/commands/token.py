"""``emotionctl token create``: mint an API bearer token (only its hash is stored)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emotionctl.commands import CliError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("token", help="manage API bearer tokens")
    sub = parser.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    create = sub.add_parser(
        "create",
        help="mint a token for a user and print it (only the token, on stdout)",
        description="Mint an opaque bearer token for USER. By default it targets the running local stack "
        "(found through its state file); --control-table targets a deployed stack's table (its "
        "ControlTableName output) with your AWS credentials.",
    )
    create.add_argument("--user", required=True, help="user id the token acts for")
    create.add_argument("--product", help="product (analysis tier) id recorded on its sessions")
    target = create.add_argument_group("target (default: the running local stack)")
    target.add_argument("--stack-file", type=Path, help="the local stack's state file (default: .local/stack.json)")
    target.add_argument("--control-table", help="control table name (a deployed stack's ControlTableName)")
    target.add_argument("--endpoint", help="AWS endpoint URL to use with --control-table (e.g. the embedded AWS)")
    target.add_argument("--region", help="AWS region to use with --control-table")
    create.set_defaults(handler=create_token_command)


def _local_target(stack_file: Path | None) -> tuple[Any, str]:
    import boto3

    from emotionctl.local.moto_server import local_aws_env
    from emotionctl.local.state import StackNotRunning, read_state, state_path

    try:
        state = read_state(stack_file or state_path())
    except StackNotRunning as exc:
        raise CliError(f"{exc} (or pass --control-table for a deployed stack)") from None
    env = local_aws_env(state["aws"]["endpoint"])
    client = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=state["aws"]["region"],
    ).client("dynamodb", endpoint_url=state["aws"]["endpoint"])
    return client, state["tables"]["ControlTable"]


def create_token_command(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    from emotion_shared.auth import create_token

    if args.control_table:
        client = boto3.session.Session(region_name=args.region).client("dynamodb", endpoint_url=args.endpoint)
        table = args.control_table
    elif args.endpoint:
        raise CliError("--endpoint needs --control-table (or use --stack-file for a local stack)")
    else:
        client, table = _local_target(args.stack_file)
    try:
        token = create_token(client, table, args.user, *([args.product] if args.product else []))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"could not store the token in {table}: {exc}") from None
    sys.stdout.write(token + "\n")
    return 0
