"""Standalone use of the analyzer, with no AWS: ``probe`` and ``analyze``.

``emotionctl`` registers them with :func:`register` (argparse sub-commands); they also run as
``python -m analyzer.cli probe URI`` / ``python -m analyzer.cli analyze URI [--fps N] [--seconds S]``.

``analyze`` prints one JSON object per second of stream on stdout::

    {"t": 0, "detectedFaces": 1, "emotions": {"happiness": {"people": 1, "quantity": 0.98, "intensity": 0.98}, …},
     "faces": [{"track": "f1", "box": [x0, y0, x1, y1], "emotion": "happiness", "scores": {…}}],
     "frames": {"received": 30, "analysed": 5}}

``t`` is whole seconds since the analysis began (receive wall clock). ``faces`` has one entry per track seen in
that second: its last box and its mean probabilities over the second (``emotion`` is their argmax); ``frames``:
the frames received in that second and how many were analysed (fewer when the CPU cannot keep up); the
``emotions`` figures are ``emotion_shared.emotions.interval_stats`` of the second's bucket, as the API computes them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from emotion_shared.uri import redact_uri

if TYPE_CHECKING:  # numpy/onnxruntime are imported only when a command runs (fast `--help`)
    from .pipeline import FrameAnalyzer, Pipeline, SecondResult

log = logging.getLogger(__name__)


class ExitCode(IntEnum):
    """The exit codes of ``probe`` and ``analyze`` (the one definition)."""

    OK = 0  # accepted / analysed to the end
    REJECTED = 2  # above 1080p, or a bad option
    UNREACHABLE = 3  # could not be opened or read


DEFAULT_ANALYSIS_FPS = 5.0  # = analyzer.pipeline.DEFAULT_ANALYSIS_FPS


def second_json(result: SecondResult) -> dict[str, Any]:
    from emotion_shared.emotions import frame_counts, interval_stats

    stats = interval_stats([result.bucket])
    return {
        "t": result.sec,
        "detectedFaces": stats["detectedFaces"],
        "emotions": stats["emotions"],
        "faces": result.faces_json(),
        "frames": frame_counts([result.bucket]),
    }


def probe(uri: str, *, open_timeout: float = 10.0, read_timeout: float = 5.0) -> dict[str, Any]:
    """The stream's sources and whether the service would accept it (``accepted``, ``reason``)."""
    from . import probe as probe_mod

    return probe_mod.probe(uri, timeout=(open_timeout, read_timeout))


def analyze(
    uri: str,
    *,
    fps: float | None = DEFAULT_ANALYSIS_FPS,
    seconds: float | None = None,
    out: Callable[[dict[str, Any]], None],
    open_timeout: float = 10.0,
    read_timeout: float = 5.0,
    model_dir: Path | None = None,
    analyzer: FrameAnalyzer | None = None,
) -> Pipeline:
    """Run the worker's pipeline on ``uri`` until the stream ends or ``seconds`` have been analysed.

    Each closed second goes to ``out`` as a JSON-able dict. Raises the ingest errors (``StreamUnreachable``,
    ``ResolutionExceeded``…) for the caller to report. Returns the pipeline (for its stats).
    """
    from . import ingest
    from .pipeline import FrameAnalyzer, Pipeline

    analyzer = analyzer or FrameAnalyzer.from_model_dir(model_dir)
    stop = threading.Event()

    def sink(result: SecondResult) -> None:
        if seconds is not None and result.sec >= seconds:
            stop.set()
            return
        out(second_json(result))
        if seconds is not None and result.sec + 1 >= seconds:
            stop.set()

    container = ingest.open_stream(uri, timeout=(open_timeout, read_timeout))
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate
        analyzer.warm_up(int(stream.codec_context.width), int(stream.codec_context.height))
        pipeline = Pipeline(
            analyzer,
            sink,
            origin=time.time(),
            analysis_fps=fps,
            detail=True,
            stream_fps=float(rate) if rate else None,
        )
        try:
            for frame in ingest.frames(container, stop, ingest.CatchUp()):
                pipeline.process(frame)
                if stop.is_set():
                    break
        except ingest.StreamEnded as exc:
            log.info("stream ended: %s", exc)
        pipeline.close(flush=not stop.is_set())
    finally:
        container.close()
    return pipeline


# ------------------------------------------------------------------------------------------ commands
def _emit(stream: TextIO) -> Callable[[dict[str, Any]], None]:
    def write(obj: dict[str, Any]) -> None:
        stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
        stream.flush()

    return write


def _fps(value: str) -> float | None:
    if value in ("all", "max"):
        return None
    number = float(value)
    if not 0 < number <= 120:
        raise argparse.ArgumentTypeError("fps must be in (0, 120], or 'all' for every frame")
    return number


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", help="rtmp://, rtmps:// or rtsp:// stream (or a media file)")
    parser.add_argument("--open-timeout", type=float, default=10.0, help="seconds to connect (default 10)")
    parser.add_argument("--read-timeout", type=float, default=5.0, help="max stall between packets (default 5)")
    parser.set_defaults(handler=run_probe)


def add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    add_probe_arguments(parser)
    parser.add_argument(
        "--fps", type=_fps, default=DEFAULT_ANALYSIS_FPS, help="analyses per second, or 'all' (default 5)"
    )
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds of stream")
    parser.add_argument("--models", type=Path, default=None, help="model directory (default: EMOTION_MODELS_DIR)")
    parser.add_argument(
        "--min-face",
        type=_fraction,
        default=None,
        help="smallest face, as a fraction of the frame height (default: the analyzer's, 24 px at 1080p)",
    )
    parser.add_argument(
        "--classifier",
        default=None,
        help="expression model: mini_xception, human_emotion, faceapi, ensemble or ensemble:a+b "
        "(default: the analyzer's)",
    )
    parser.set_defaults(handler=run_analyze)


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number < 0.5:
        raise argparse.ArgumentTypeError("a fraction of the frame height in (0, 0.5)")
    return number


def run_probe(args: argparse.Namespace) -> int:
    from . import ingest

    try:
        result = probe(args.uri, open_timeout=args.open_timeout, read_timeout=args.read_timeout)
    except ingest.IngestError as exc:
        reason = str(exc).replace(args.uri, redact_uri(args.uri))
        result = {"uri": redact_uri(args.uri), "accepted": False, "reason": reason, "sources": []}
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        return ExitCode.UNREACHABLE
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return ExitCode.OK if result.get("accepted") else ExitCode.REJECTED


def run_analyze(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from . import ingest
    from .expressions import check_classifier_name
    from .pipeline import AnalyzerOptions, FrameAnalyzer

    options = AnalyzerOptions()
    if args.min_face is not None:
        options = replace(options, min_face=args.min_face)
    if args.classifier is not None:
        try:
            check_classifier_name(args.classifier)
        except ValueError as exc:
            log.error("--classifier: %s", exc)
            return ExitCode.REJECTED
        options = replace(options, classifier=args.classifier)
    try:
        pipeline = analyze(
            args.uri,
            fps=args.fps,
            seconds=args.seconds,
            out=_emit(sys.stdout),
            open_timeout=args.open_timeout,
            read_timeout=args.read_timeout,
            model_dir=args.models,
            analyzer=FrameAnalyzer.from_model_dir(args.models, options=options),
        )
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly, as CLI tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except ingest.ResolutionExceeded as exc:
        log.error("rejected: %s", exc)
        return ExitCode.REJECTED
    except ingest.IngestError as exc:
        log.error("%s", str(exc).replace(args.uri, redact_uri(args.uri)))
        return ExitCode.UNREACHABLE
    stats = pipeline.stats
    log.info("done: %d frames received, %d analysed, %d skipped undecoded", stats.received, stats.analysed,
             stats.skipped)
    return ExitCode.OK


def register(subparsers: Any) -> None:
    """Add ``probe`` and ``analyze`` to an argparse sub-parser set; each sets ``handler(args) -> int``."""
    add_probe_arguments(
        subparsers.add_parser("probe", help="describe a stream and say whether it would be accepted (JSON)")
    )
    add_analyze_arguments(
        subparsers.add_parser("analyze", help="analyse a stream locally (no AWS): one JSON line per second")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analyzer.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
