"""``emotionctl token create | list | revoke``: API bearer tokens and their lifecycle (only hashes are stored)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emotionctl.commands import CliError

DEFAULT_EXPIRES = "90d"


def _add_target(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target (default: the running local stack)")
    target.add_argument("--stack-file", type=Path, help="the local stack's state file (default: .local/stack.json)")
    target.add_argument("--control-table", help="control table name (a deployed stack's ControlTableName)")
    target.add_argument("--endpoint", help="AWS endpoint URL to use with --control-table (e.g. the embedded AWS)")
    target.add_argument("--region", help="AWS region to use with --control-table")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("token", help="manage API bearer tokens")
    sub = parser.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    create = sub.add_parser(
        "create",
        help="mint a token for a user and print it (only the token, on stdout)",
        description="Mint an opaque bearer token for USER. By default it targets the running local stack "
        "(found through its state file); --control-table targets a deployed stack's table (its "
        "ControlTableName output) with your AWS credentials. Only the token's hash is stored: the token is "
        "printed once.",
    )
    create.add_argument("--user", required=True, help="user id the token acts for")
    create.add_argument("--product", help="product (analysis tier) id recorded on its sessions")
    create.add_argument(
        "--expires", default=DEFAULT_EXPIRES,
        help="when the token stops working: a duration (30d, 12h, 90m, 2w), a date or date-time in UTC "
        "(2027-01-01, 2027-01-01T09:00:00Z) or 'never' (default: %(default)s)",
    )
    create.add_argument("--name", help="a label to recognise the token by in 'token list' (e.g. 'ci', 'laptop')")
    _add_target(create)
    create.set_defaults(handler=create_token_command)

    listing = sub.add_parser(
        "list",
        help="list a user's tokens (id, name, created, expires, last used, status) — never the secrets",
        description="List every stored token of USER: user tokens and the viewer tokens minted for its "
        "sessions, live or not (expired and revoked ones stay listed for 7 days). Secrets are never stored, "
        "so they cannot be shown.",
    )
    listing.add_argument("--user", required=True, help="user id")
    listing.add_argument("--json", action="store_true", help="one JSON object per token instead of a table")
    _add_target(listing)
    listing.set_defaults(handler=list_tokens_command)

    revoke = sub.add_parser(
        "revoke",
        help="revoke a token by its id (or a unique prefix of it, or the token itself)",
        description="Revoke a token: it is refused from now on — by the REST API within the authorizer cache "
        "TTL (template parameter AuthorizerCacheSeconds, 60 s by default) and by the WebSocket API on the "
        "connection's next message within the same delay.",
    )
    revoke.add_argument("token", metavar="TOKEN_ID", help="token id from 'token list' (at least 6 hex digits), "
                        "or the token itself (emo_…)")
    revoke.add_argument("--user", help="only look among this user's tokens (faster on a large table)")
    _add_target(revoke)
    revoke.set_defaults(handler=revoke_token_command)


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


def _target(args: argparse.Namespace) -> tuple[Any, str]:
    import boto3

    if args.control_table:
        client = boto3.session.Session(region_name=args.region).client("dynamodb", endpoint_url=args.endpoint)
        return client, args.control_table
    if args.endpoint:
        raise CliError("--endpoint needs --control-table (or use --stack-file for a local stack)")
    return _local_target(args.stack_file)


def create_token_command(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from emotion_shared.auth import TokenStore, parse_expiry
    from emotion_shared.clock import now_ms

    try:
        expires_ms = parse_expiry(args.expires, now_ms())
    except ValueError as exc:
        raise CliError(str(exc)) from None
    client, table = _target(args)
    try:
        token = TokenStore(client, table).create(
            args.user, *([args.product] if args.product else []), expires_ms=expires_ms, name=args.name
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"could not store the token in {table}: {exc}") from None
    sys.stdout.write(token + "\n")
    return 0


def list_tokens_command(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from emotion_shared.auth import TokenStore
    from emotion_shared.clock import now_ms

    client, table = _target(args)
    try:
        tokens = TokenStore(client, table).list_for_user(args.user)
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"could not read the tokens in {table}: {exc}") from None
    now = now_ms()
    rows = [
        {
            "tokenId": t.token_id, "name": t.name, "scope": t.scope.value, "session": t.session_id,
            "createdAt": t.created_at, "expiresAt": t.expires_at, "lastUsedAt": t.last_used_at,
            "status": t.status(now),
        }
        for t in tokens
    ]
    if args.json:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return 0
    if not rows:
        sys.stdout.write(f"no tokens for user {args.user!r}\n")
        return 0
    columns = ["tokenId", "name", "scope", "session", "createdAt", "expiresAt", "lastUsedAt", "status"]
    table_rows = [[str(row[c]) if row[c] is not None else "-" for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table_rows)) for i, c in enumerate(columns)]
    for line in [columns, *table_rows]:
        sys.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n")
    return 0


def revoke_token_command(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from emotion_shared.auth import AmbiguousTokenId, TokenNotFound, TokenStore, token_id_of_hash

    client, table = _target(args)
    store = TokenStore(client, table)
    try:
        token_hash = store.resolve(args.token, args.user)
        revoked = store.revoke_hash(token_hash)
    except (TokenNotFound, AmbiguousTokenId) as exc:
        raise CliError(str(exc)) from None
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"could not revoke the token in {table}: {exc}") from None
    token_id = token_id_of_hash(token_hash)
    sys.stdout.write(f"revoked {token_id}\n" if revoked else f"{token_id} was already revoked\n")
    return 0
