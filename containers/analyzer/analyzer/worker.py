"""The analyzer container's entry point: ``python -m analyzer.worker`` (one ECS task per session).

Threads:

- the **frame thread** opens the stream (reconnecting with backoff within ``RECONNECT_WINDOW_SECONDS``), decodes
  and runs the :class:`~analyzer.pipeline.Pipeline`; closed seconds and stream events go to a queue. It may be
  blocked in a read (bounded by ``READ_TIMEOUT``) at any time; nobody waits for it and nobody closes its container
  from outside (that hangs FFmpeg).
- the **control thread** (the main thread) owns every AWS call: it writes the closed seconds through
  :class:`~emotion_shared.emotions.EmotionStore` (batched, retried, idempotent), sends the once-a-second heartbeat
  (one conditional ``UpdateItem`` that also reads back the stop flag), handles SIGTERM, the maximum duration and
  the end of the stream, writes the final state and exits the process (``os._exit``: a frame thread blocked in a
  read cannot delay the exit).

Exit codes: 0 for every orderly end (user stop, SIGTERM, stream ended, unreachable, resolution exceeded, maximum
duration), 1 for ``worker_error``, 2 when the session cannot be found or the configuration is invalid.

The worker never releases capacity: whoever finalises the session (the state machine after the task stops, or
the sweeper) does, exactly once (``SessionRepository.release_capacity``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from botocore.exceptions import BotoCoreError, ClientError
from emotion_shared import aws
from emotion_shared.audio import Segment, SegmentStore
from emotion_shared.clock import now_ms
from emotion_shared.config import ConfigError, Settings
from emotion_shared.emotions import EmotionStore
from emotion_shared.lifecycle_events import EventPublisher, EventPublishError, SessionEventType, session_event_detail
from emotion_shared.session_models import SessionState, StopReason, WorkerState
from emotion_shared.sessions import SessionRepository
from emotion_shared.uri import UnsafeStreamHost, check_stream_host, redact_uri

from .audio import AudioThread
from .ingest import CatchUp, IngestError, ReconnectPolicy, connect_with_retry
from .load import LoadReporter
from .pipeline import DEFAULT_ANALYSIS_FPS, FrameAnalyzer, Pipeline, SecondResult
from .settings import WorkerSettings

log = logging.getLogger("analyzer.worker")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
_BACKOFF_START, _BACKOFF_CAP = 0.25, 4.0


# ------------------------------------------------------------------------------------ thread messages
@dataclass(frozen=True)
class Connected:
    sources: list[dict[str, Any]]


@dataclass(frozen=True)
class Dropped:
    reason: str


@dataclass(frozen=True)
class StreamOver:
    """The frame thread is done: the session ends for ``reason``."""

    reason: StopReason
    detail: str | None = None


@dataclass(frozen=True)
class Crashed:
    error: str


type Message = Connected | Dropped | StreamOver | Crashed | SecondResult | Segment

# How long the end of a session waits for the speech analysis to finish the segment in progress.
AUDIO_CLOSE_SECONDS = 10.0


class Scrubber:
    """Removes the stream URI (credentials, stream key) from any text that leaves the worker."""

    def __init__(self, uri: str = "") -> None:
        self.set_uri(uri)

    def set_uri(self, uri: str) -> None:
        self._secrets = sorted({s for s in (uri, uri.split("?", 1)[0]) if len(s) > 8}, key=len, reverse=True)
        self._redacted = redact_uri(uri) if uri else ""

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, self._redacted)
        return text


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter, scrub: Scrubber) -> None:
        super().__init__()
        self._inner = inner
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(self._inner.format(record))


def configure_logging(session_id: str, scrub: Scrubber) -> None:
    """JSON lines on stdout (Powertools' formatter), the session id in every line, the URI never in clear."""
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stdout)
    inner = LambdaPowertoolsFormatter(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "analyzer"))
    inner.append_keys(session_id=session_id)
    handler.setFormatter(_ScrubbingFormatter(inner, scrub))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "libav"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ------------------------------------------------------------------------------------------ frame thread
class StreamThread(threading.Thread):
    """Connects, decodes, analyses; reconnects within the window; reports to the control thread."""

    def __init__(
        self,
        uri: str,
        settings: WorkerSettings,
        pipeline: Pipeline,
        outbox: queue.SimpleQueue[Message],
        stop: threading.Event,
        scrub: Scrubber,
        ingest: Any,
        audio: AudioThread | None = None,
    ) -> None:
        super().__init__(name="frames", daemon=True)
        self._ingest = ingest
        self._audio = audio
        self._uri = uri
        self._settings = settings
        self._pipeline = pipeline
        self._outbox = outbox
        self._stop = stop
        self._scrub = scrub
        self._catch_up: CatchUp[Any] = CatchUp()

    def run(self) -> None:
        try:
            outcome = self._loop()
            if outcome is not None:
                self._outbox.put(outcome)
        except Exception as exc:  # reported to the control thread, which fails the session loudly
            log.exception("frame thread failed")
            self._outbox.put(Crashed(self._scrub(f"{type(exc).__name__}: {exc}")))

    def _connect(self, first: bool) -> Any | StreamOver | None:
        """A container, or the session's end when the reconnect window passes (None when asked to stop)."""
        ingest = self._ingest
        policy = ReconnectPolicy(
            window_seconds=self._settings.reconnect_window_seconds, initial=_BACKOFF_START, max_delay=_BACKOFF_CAP
        )

        def failed(attempt: int, last: IngestError | None) -> None:
            if last is not None:
                log.info("connect attempt %d failed: %s", attempt - 1, self._scrub(str(last)))

        try:
            return connect_with_retry(
                self._uri,
                policy,
                self._stop,
                failed,
                timeout=(self._settings.open_timeout, self._settings.read_timeout),
                opener=ingest.open_stream,
            )
        except ingest.ResolutionExceeded as exc:
            return StreamOver(StopReason.RESOLUTION_EXCEEDED, self._scrub(str(exc)))
        except ingest.UnsupportedStream as exc:
            return StreamOver(StopReason.STREAM_UNREACHABLE, self._scrub(f"unsupported stream: {exc}"))
        except ingest.IngestError as exc:  # the window is spent
            reason = StopReason.STREAM_UNREACHABLE if first else StopReason.STREAM_ENDED
            return StreamOver(reason, self._scrub(str(exc)))

    def _loop(self) -> StreamOver | None:
        ingest = self._ingest
        first = True
        while not self._stop.is_set():
            container = self._connect(first)
            if container is None or isinstance(container, StreamOver):
                return container
            try:
                sources = ingest.describe_sources(container)
                self._pipeline.new_segment(_stream_fps(container))
                self._pipeline.analyzer.warm_up(*_frame_size(container))
                self._outbox.put(Connected(sources))
                first = False
                try:
                    # the audio track, when analysed, is decoded by this thread and analysed by its own
                    extra = {"audio": self._audio.offer} if self._audio is not None else {}
                    for frame in ingest.frames(container, self._stop, self._catch_up, **extra):
                        self._pipeline.process(frame)
                        if self._pipeline.closed:
                            return None
                except ingest.ResolutionExceeded as exc:
                    self._pipeline.close(flush=False)  # nothing of a rejected stream is kept
                    return StreamOver(StopReason.RESOLUTION_EXCEEDED, self._scrub(str(exc)))
                except ingest.StreamEnded as exc:
                    reason = self._scrub(str(exc)) or "stream ended"
                else:
                    reason = "stream ended"
            finally:
                with contextlib.suppress(Exception):  # closing in the thread that reads is safe
                    container.close()
            if self._stop.is_set():
                return None
            log.info("stream dropped: %s; reconnecting", reason)
            self._pipeline.flush()  # readers see the last second now, not after the reconnect
            self._outbox.put(Dropped(reason))
        return None


def _stream_fps(container: Any) -> float | None:
    try:
        rate = container.streams.video[0].average_rate
        return float(rate) if rate else None
    except (AttributeError, IndexError, ZeroDivisionError):
        return None


def _frame_size(container: Any) -> tuple[int, int]:
    ctx = container.streams.video[0].codec_context
    return int(ctx.width) or 16, int(ctx.height) or 16


# ------------------------------------------------------------------------------------- control thread
class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        shared: Settings,
        *,
        dynamodb: Any = None,
        events: Any = None,
        analyzer: FrameAnalyzer | None = None,
        ingest: Any = None,
        scrub: Scrubber | None = None,
    ) -> None:
        self.settings = settings
        self._ingest = ingest
        self.shared = shared
        self.session_id = settings.session_id
        db = dynamodb if dynamodb is not None else aws.client("dynamodb")
        self.repo = SessionRepository(db, shared.sessions_table)
        self.store = EmotionStore(db, shared.emotions_table)
        self.segments = SegmentStore(db, shared.emotions_table)
        self._audio: AudioThread | None = None
        self._segments_written = 0
        self._events_client = events
        self._analyzer = analyzer
        self.scrub = scrub or Scrubber()
        self.stop_signal = threading.Event()  # SIGTERM
        self._frames_stop = threading.Event()
        self._outbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.state = WorkerState.CONNECTING
        self._announced = False
        self._written = 0
        self._pipeline: Pipeline | None = None
        self._item: dict[str, Any] = {}
        self._publisher: EventPublisher | None = None
        self._load: LoadReporter | None = None

    # ----------------------------------------------------------------- entry
    def run(self) -> int:
        try:
            return self._run()
        except Exception as exc:
            log.exception("worker failed")
            return self._fail(f"{type(exc).__name__}: {exc}")

    def _run(self) -> int:
        item = self.repo.get(self.session_id)
        if item is None:
            log.error("session not found")
            return EXIT_CONFIG
        self._item = item
        uri = str(item.get("streamUri") or "")
        self.scrub.set_uri(uri)
        if item.get("state") != SessionState.ACTIVE.value or item.get("stopRequested"):
            log.info("session is no longer active (%s); nothing to do", item.get("state"))
            self._set_final_state(WorkerState.STOPPED)
            return EXIT_OK
        log.info("starting", extra={"stream": redact_uri(uri)})
        if self._heartbeat(task_arn=self.settings.resolve_task_arn()):
            return self._finish(None)
        try:
            check_stream_host(uri, self.shared.allow_private_stream_hosts)
        except UnsafeStreamHost as exc:
            log.warning("stream host rejected: %s", exc)
            return self._finish(StopReason.STREAM_UNREACHABLE, error=str(exc), flush=False)

        analyzer = self._analyzer or FrameAnalyzer.from_model_dir(
            threads=self.settings.model_threads, options=self.settings.analyzer_options()
        )
        config = item.get("config") or {}
        fps = float(config.get("analysisFps") or DEFAULT_ANALYSIS_FPS)
        created = float(item["createdAtMs"]) / 1000.0
        self._pipeline = Pipeline(analyzer, self._outbox.put, origin=created, analysis_fps=fps)
        self._load = LoadReporter(
            self._pipeline, self._publish, session_id=self.session_id, event_interval=self.settings.load_event_interval
        )
        if self._ingest is None:
            from . import ingest

            self._ingest = ingest
        if config.get("audioAnalysis", True):
            # started by the first audio chunk: a stream without audio costs nothing
            self._audio = AudioThread(self._outbox.put, origin=created)
        StreamThread(
            uri, self.settings, self._pipeline, self._outbox, self._frames_stop, self.scrub, self._ingest, self._audio
        ).start()
        return self._control_loop(created)

    def _control_loop(self, created: float) -> int:
        interval = self.settings.heartbeat_seconds
        next_beat = time.monotonic() + interval
        deadline = created + self.shared.max_session_seconds
        while True:
            messages = self._receive(max(0.0, min(0.1, next_beat - time.monotonic())))
            results = [m for m in messages if isinstance(m, SecondResult)]
            if results:
                self._write(results)
            segments = [m for m in messages if isinstance(m, Segment)]
            if segments:
                self._write_segments(segments)
            for message in messages:
                if isinstance(message, Connected):
                    self.state = WorkerState.WORKING
                    log.info("working", extra={"sources": message.sources})
                    if self._heartbeat(sources=message.sources):
                        return self._finish(None)
                    next_beat = time.monotonic() + interval
                    self._announce()
                elif isinstance(message, Dropped):
                    self.state = WorkerState.RECONNECTING
                    log.info("reconnecting: %s", message.reason)
                    if self._heartbeat():
                        return self._finish(None)
                    next_beat = time.monotonic() + interval
                elif isinstance(message, StreamOver):
                    log.info("stream over: %s", message.reason.value, extra={"detail": message.detail})
                    # the detail is kept for a failure or a rejection; a stream that ended is no error
                    keep = message.reason.final_state is SessionState.FAILED or (
                        message.reason is StopReason.RESOLUTION_EXCEEDED
                    )
                    return self._finish(message.reason, error=message.detail if keep else None)
                elif isinstance(message, Crashed):
                    return self._fail(message.error)
            if self.stop_signal.is_set():
                log.info("SIGTERM: stopping")
                return self._finish(None)
            if time.time() >= deadline:
                log.info("maximum session duration reached")
                return self._finish(StopReason.MAX_DURATION)
            if time.monotonic() >= next_beat:
                if self._heartbeat():
                    log.info("stop requested")
                    return self._finish(None)
                next_beat = max(next_beat + interval, time.monotonic())

    def _receive(self, timeout: float) -> list[Message]:
        messages: list[Message] = []
        try:
            messages.append(self._outbox.get(timeout=timeout))
            while True:
                messages.append(self._outbox.get_nowait())
        except queue.Empty:
            pass
        return messages

    # ------------------------------------------------------------- AWS calls
    def _heartbeat(self, **extra: Any) -> bool:
        """The once-a-second write; True when the session must stop. Transient failures are tolerated for a
        while (``HEARTBEAT_FAILURE_SECONDS``), then the worker fails loudly."""
        stats = None
        degraded = None
        if self._load is not None:
            report = self._load.report(working=self.state is WorkerState.WORKING)
            stats, degraded = report.stats, report.degraded
        if stats is not None and self._audio is not None:
            stats = stats | self._audio.snapshot()
        started = time.monotonic()
        while True:
            try:
                result = self.repo.heartbeat(
                    self.session_id, self.state, now_ms(), stats=stats, degraded=degraded, **extra
                )
                return result.stop
            except (ClientError, BotoCoreError) as exc:
                if time.monotonic() - started > self.settings.heartbeat_failure_seconds:
                    raise
                log.warning("heartbeat failed, retrying: %s", exc)
                time.sleep(0.5)

    def _write(self, results: list[SecondResult]) -> None:
        """Write closed seconds (the last emission of a second wins); raises RetriesExhausted."""
        latest: dict[int, SecondResult] = {}
        for result in results:
            latest[result.sec] = result
        ttl = self._item.get("ttl")
        buckets = [latest[sec].bucket for sec in sorted(latest)]
        retries = self.store.write(self.session_id, buckets, ttl=int(ttl) if ttl is not None else None)
        self._written += len(buckets)
        if retries:
            log.warning("emotion writes needed %d retries", retries)

    def _write_segments(self, segments: list[Segment]) -> None:
        """Write finished speech segments (the text is data: never logged); raises RetriesExhausted."""
        ttl = self._item.get("ttl")
        retries = self.segments.write(self.session_id, segments, ttl=int(ttl) if ttl is not None else None)
        self._segments_written += len(segments)
        if retries:
            log.warning("speech segment writes needed %d retries", retries)

    def _announce(self) -> None:
        if self._announced:
            return
        self._announced = True
        self._publish(SessionEventType.STARTED)

    def _publish(self, event_type: SessionEventType, **extra: Any) -> None:
        """A session event on the bus (none when no bus is configured); a lost notification never stops the
        analysis, it is logged."""
        if not self.shared.event_bus_name:
            return
        if self._publisher is None:
            client = self._events_client if self._events_client is not None else aws.client("events")
            self._publisher = EventPublisher(client, self.shared.event_bus_name)
        detail = session_event_detail(
            self.session_id, str(self._item.get("user")), SessionState.ACTIVE.value, None
        ) | extra
        try:
            self._publisher.publish(event_type, detail)
        except (ClientError, BotoCoreError, EventPublishError) as exc:
            log.error("%s event failed: %s", event_type.value, exc)

    # -------------------------------------------------------------------- end
    def _finish(self, reason: StopReason | None, *, error: str | None = None, flush: bool = True) -> int:
        """Orderly end. ``reason`` None: a user stop or SIGTERM (the session is ended by whoever asked)."""
        self._frames_stop.set()
        discard = reason is StopReason.RESOLUTION_EXCEEDED
        if self._pipeline is not None:
            self._pipeline.close(flush=flush and not discard)
        if self._audio is not None and not discard:
            self._audio.close(AUDIO_CLOSE_SECONDS)  # the speech in progress becomes a last segment
        messages = self._receive(0.0)
        pending = [m for m in messages if isinstance(m, SecondResult)]
        speech = [m for m in messages if isinstance(m, Segment)]
        if speech and not discard:
            self._write_segments(speech)
        if discard:
            # a stream above the limit gets no emotion data at all (also what an earlier segment left)
            removed = self.store.delete_session(self.session_id) if self._written else 0
            log.info("resolution exceeded: discarded %d pending and %d written seconds", len(pending), removed)
        elif pending:
            self._write(pending)
        worker_state = WorkerState.STOPPED
        if reason is not None:
            ended = self.repo.end(self.session_id, reason, now_ms(), worker_state=worker_state, error=error)
            if not ended:
                self._set_final_state(worker_state)
        else:
            self._set_final_state(worker_state)
        log.info(
            "stopped",
            extra={
                "stopReason": reason.value if reason else "stop_requested",
                "analysedFrames": self._pipeline.stats.analysed if self._pipeline else 0,
                "receivedFrames": self._pipeline.stats.received if self._pipeline else 0,
                "skippedFrames": self._pipeline.stats.skipped if self._pipeline else 0,
                "secondsWritten": self._written,
                "speechSegmentsWritten": self._segments_written,
            },
        )
        return EXIT_OK

    def _fail(self, error: str) -> int:
        error = self.scrub(error)
        self._frames_stop.set()
        log.error("worker_error: %s", error)
        try:
            ended = self.repo.end(
                self.session_id, StopReason.WORKER_ERROR, now_ms(), worker_state=WorkerState.ERROR, error=error
            )
            if not ended:
                self._set_final_state(WorkerState.ERROR)
        except (ClientError, BotoCoreError) as exc:
            log.error("could not record the error on the session: %s", exc)
        return EXIT_ERROR

    def _set_final_state(self, state: WorkerState) -> None:
        try:
            self.repo.set_worker_state(self.session_id, state, now_ms())
        except ClientError as exc:
            log.warning("could not record worker state %s: %s", state.value, exc)


def main() -> int:
    scrub = Scrubber()
    try:
        settings = WorkerSettings.from_env()
        shared = Settings.from_env()
    except ConfigError as exc:
        configure_logging(os.environ.get("SESSION_ID", "?"), scrub)
        log.error("%s", exc)
        return EXIT_CONFIG
    configure_logging(settings.session_id, scrub)
    worker = Worker(settings, shared, scrub=scrub)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        worker.stop_signal.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    return worker.run()


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # do not wait for the frame thread: it may be blocked in a read (bounded, but not by us)
    os._exit(code)
