"""``emotionctl dashboard publish``: upload the built web dashboard to a deployed stack (after ``sam deploy``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emotionctl.commands import CliError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("dashboard", help="the web dashboard in AWS")
    sub = parser.add_subparsers(dest="dashboard_command", required=True, metavar="COMMAND")
    publish = sub.add_parser(
        "publish",
        help="upload the built dashboard and its config.json to a deployed stack, then print its URL",
        description="Uploads build/dashboard (make setup builds it) to the stack's DashboardBucketName, writes "
        "config.json from the stack's outputs (DashboardUrl for the REST API on the same origin, WebSocketUrl), "
        "and invalidates the page in CloudFront. Uses your AWS credentials.",
    )
    publish.add_argument("--stack-name", required=True, help="the deployed stack, e.g. emotion-stream-dev")
    publish.add_argument("--region", help="its AWS region (default: your AWS configuration's)")
    publish.add_argument("--site-dir", type=Path, help="the built dashboard (default: build/dashboard)")
    publish.set_defaults(handler=publish_command)


def publish_command(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from emotionctl.dashboard.publish import PublishError, publish, stack_outputs
    from emotionctl.dashboard.site import SITE_DIR, SiteNotBuilt

    session = boto3.session.Session(region_name=args.region)
    try:
        outputs = stack_outputs(session.client("cloudformation"), args.stack_name)
        published = publish(outputs, session.client("s3"), session.client("cloudfront"), args.site_dir or SITE_DIR)
    except (PublishError, SiteNotBuilt) as exc:
        raise CliError(str(exc)) from None
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"publishing to stack {args.stack_name} failed: {exc}") from None
    sys.stderr.write(f"uploaded {len(published.keys)} files; CloudFront invalidation {published.invalidation_id}\n")
    sys.stdout.write(published.url + "\n")
    return 0
