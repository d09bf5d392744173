"""Speech in a live stream: voice activity → speech recognition → sentiment, on its own thread.

- The frame thread decodes the audio packets it demuxes anyway and hands 16 kHz mono float32 chunks, stamped
  with their wall-clock time (:class:`analyzer.ingest.AudioChunk`), to :meth:`AudioThread.offer` — never
  blocking: the queue is bounded (``max_queue_seconds``); when it is full the chunk is skipped and counted.
- The audio thread runs :class:`Segmenter` (Silero VAD v6, the ONNX file inside the faster-whisper wheel, one
  thread) and, for every finished speech span, Whisper tiny.en (CTranslate2, int8, one thread, greedy) and VADER,
  and puts an :class:`emotion_shared.audio.Segment` (session seconds: the same origin as the emotion buckets)
  on the worker's outbox; the control thread writes it.
- Under CPU pressure the thread falls behind: it catches up from the queue, and audio that does not fit in the
  queue is skipped; ``stats()`` says so (``audioLagSeconds``, ``audioSkippedSeconds``) for ``meta.stats``.

The transcript text is data, never logged.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from emotion_shared.audio import MAX_SEGMENT_SECONDS, Segment

from .ingest import AUDIO_RATE, AudioChunk
from .speech_models import load_speech_manifest

log = logging.getLogger(__name__)

WINDOW = 512  # Silero VAD v6 window at 16 kHz (32 ms)
LANGUAGE = "en"  # the model is English-only; a multilingual model would take the language from the session


@dataclass(frozen=True)
class SegmenterOptions:
    threshold: float = 0.5  # speech starts at this speech probability…
    neg_threshold: float = 0.35  # …and a window below this one counts as silence
    min_silence: float = 0.5  # seconds of silence that end a segment
    min_speech: float = 0.25  # shorter spans are discarded (clicks, breaths)
    pad: float = 0.2  # seconds of audio kept before and after the speech
    max_speech: float = 15.0  # a longer span is cut here (bounded latency and memory)

    def __post_init__(self) -> None:
        if not (0 < self.neg_threshold <= self.threshold < 1) or self.max_speech > MAX_SEGMENT_SECONDS:
            raise ValueError(f"invalid segmenter options: {self}")


@dataclass(frozen=True)
class Span:
    """A stretch of speech: ``start``/``end`` in the caller's clock (seconds), 16 kHz mono samples."""

    start: float
    end: float
    samples: np.ndarray


Probabilities = Callable[[np.ndarray], np.ndarray]  # n·WINDOW samples (+ one context window) -> n probabilities


class Segmenter:
    """Streaming voice-activity segmentation: push audio, get the finished speech spans."""

    def __init__(self, probabilities: Probabilities, options: SegmenterOptions | None = None) -> None:
        self._prob = probabilities
        self.options = options or SegmenterOptions()
        self._buf = np.zeros(0, np.float32)
        self._t0: float | None = None  # time of self._buf[0]
        self._pos = 0  # next unanalysed sample in self._buf
        self._speech_start: int | None = None
        self._silence = 0

    @property
    def end_time(self) -> float | None:
        """The time just after the last sample pushed."""
        return None if self._t0 is None else self._t0 + len(self._buf) / AUDIO_RATE

    def push(self, samples: np.ndarray, t: float) -> list[Span]:
        """Append ``samples`` starting at time ``t``; a jump in time (> 0.25 s: a reconnect, skipped audio)
        first ends what was pending."""
        spans: list[Span] = []
        expected = self.end_time
        if expected is not None and abs(t - expected) > 0.25:
            spans += self.flush()
        if self._t0 is None:
            self._t0 = t
        self._buf = np.concatenate([self._buf, samples.astype(np.float32, copy=False)])
        spans += self._analyse()
        self._trim()
        return spans

    def flush(self) -> list[Span]:
        """End of audio: the speech in progress becomes a span; the state is reset."""
        spans = []
        if self._speech_start is not None:
            span = self._span(self._speech_start, len(self._buf))
            if span is not None:
                spans.append(span)
        self._buf = np.zeros(0, np.float32)
        self._t0, self._pos, self._speech_start, self._silence = None, 0, None, 0
        return spans

    def _span(self, lo: int, hi: int) -> Span | None:
        assert self._t0 is not None
        o = self.options
        if (hi - lo) < (o.min_speech + 2 * o.pad) * AUDIO_RATE:  # the speech itself, without the padding
            return None
        return Span(self._t0 + lo / AUDIO_RATE, self._t0 + hi / AUDIO_RATE, self._buf[lo:hi].copy())

    def _analyse(self) -> list[Span]:
        o = self.options
        n = (len(self._buf) - self._pos) // WINDOW
        if n <= 0:
            return []
        lo = self._pos - WINDOW if self._pos >= WINDOW else None  # one window of context for the first one
        block = self._buf[(lo if lo is not None else self._pos) : self._pos + n * WINDOW]
        probs = np.asarray(self._prob(block), np.float32).reshape(-1)
        if lo is not None:
            probs = probs[1:]
        pad = int(o.pad * AUDIO_RATE)
        spans: list[Span] = []
        for i, p in enumerate(probs):
            pos = self._pos + i * WINDOW
            if self._speech_start is None:
                if p >= o.threshold:
                    self._speech_start, self._silence = max(0, pos - pad), 0
                continue
            self._silence = self._silence + WINDOW if p < o.neg_threshold else 0
            end = pos + WINDOW
            if self._silence >= o.min_silence * AUDIO_RATE:
                span = self._span(self._speech_start, min(len(self._buf), end - self._silence + pad))
                if span is not None:
                    spans.append(span)
                self._speech_start = None
            elif end - self._speech_start >= o.max_speech * AUDIO_RATE:
                span = self._span(self._speech_start, end)
                if span is not None:
                    spans.append(span)
                self._speech_start, self._silence = end, 0
        self._pos += n * WINDOW
        return spans

    def _trim(self) -> None:
        """Keep only what a future span can still need: the speech in progress, or the padding before the next
        one and the VAD's context window."""
        keep = self._pos - WINDOW - int(self.options.pad * AUDIO_RATE)
        if self._speech_start is not None:
            keep = min(keep, self._speech_start)
        if keep <= 0 or self._t0 is None:
            return
        self._buf = self._buf[keep:]
        self._t0 += keep / AUDIO_RATE
        self._pos -= keep
        if self._speech_start is not None:
            self._speech_start -= keep


class SpeechAnalyzer:
    """The models: Silero VAD (probabilities), Whisper tiny.en (text), VADER (sentiment). Loaded once."""

    def __init__(self, model_dir: Path | None = None, *, threads: int = 1) -> None:
        # the model is a local directory: faster-whisper must never look anything up on a model hub
        os.environ["HF_HUB_OFFLINE"] = "1"
        from faster_whisper import WhisperModel
        from faster_whisper.utils import get_assets_path
        from faster_whisper.vad import SileroVADModel
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        whisper_dir = load_speech_manifest(model_dir)
        self._whisper = WhisperModel(
            str(whisper_dir), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1,
            local_files_only=True,
        )
        self._vad = SileroVADModel(os.path.join(get_assets_path(), "silero_vad_v6.onnx"))
        self._vader = SentimentIntensityAnalyzer()

    def probabilities(self, block: np.ndarray) -> np.ndarray:
        return np.asarray(self._vad(block)).reshape(-1)

    def transcribe(self, samples: np.ndarray) -> str:
        segments, _info = self._whisper.transcribe(
            samples,
            language=LANGUAGE,
            beam_size=1,
            vad_filter=False,
            without_timestamps=True,
            condition_on_previous_text=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def sentiment(self, text: str) -> dict[str, float]:
        s = self._vader.polarity_scores(text)
        return {"positive": s["pos"], "neutral": s["neu"], "negative": s["neg"], "compound": s["compound"]}


@dataclass
class AudioStats:
    seconds: float = 0.0  # audio analysed (VAD), seconds
    speech_seconds: float = 0.0  # of which transcribed
    segments: int = 0
    skipped_seconds: float = 0.0  # audio that did not fit in the queue (the thread was behind)
    lag_seconds: float = 0.0  # how far behind real time the thread was at its last chunk
    error: str | None = None


_END = object()


class AudioThread(threading.Thread):
    """Consumes :class:`AudioChunk` s, emits :class:`Segment` s through ``emit`` (session seconds from ``origin``)."""

    def __init__(
        self,
        emit: Callable[[Segment], None],
        origin: float,
        *,
        analyzer_factory: Callable[[], SpeechAnalyzer] = SpeechAnalyzer,
        max_queue_seconds: float = 30.0,
        options: SegmenterOptions | None = None,
    ) -> None:
        super().__init__(name="audio", daemon=True)
        self._emit = emit
        self._origin = origin
        self._factory = analyzer_factory
        self._options = options
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queued = 0.0
        self._lock = threading.Lock()
        self._max_queue = max_queue_seconds
        self.stats = AudioStats()
        self._done = threading.Event()
        self._active = False

    # -------------------------------------------------------------- frame thread side
    def offer(self, chunk: AudioChunk) -> None:
        """Never blocks: a chunk that does not fit in the bounded queue is skipped (and counted)."""
        seconds = len(chunk.samples) / AUDIO_RATE
        with self._lock:
            if self.stats.error is not None:
                return
            if self._queued + seconds > self._max_queue:
                self.stats.skipped_seconds += seconds
                return
            self._queued += seconds
        if not self._active:
            self._active = True
            self.start()
        self._queue.put(chunk)

    def close(self, timeout: float) -> None:
        """End of stream: finish the speech in progress (bounded wait)."""
        if not self._active:
            return
        self._queue.put(_END)
        self._done.wait(timeout)

    def snapshot(self) -> dict[str, Any]:
        """The ``audio*`` keys of ``meta.stats``."""
        s = self.stats
        out: dict[str, Any] = {
            "audioSeconds": round(s.seconds, 1),
            "audioSegments": s.segments,
            "audioSkippedSeconds": round(s.skipped_seconds, 1),
            "audioLagSeconds": round(s.lag_seconds, 1),
        }
        if s.error:
            out["audioError"] = s.error
        return out

    # -------------------------------------------------------------- audio thread
    def run(self) -> None:
        try:
            analyzer = self._factory()
            segmenter = Segmenter(analyzer.probabilities, self._options)
            while True:
                item = self._queue.get()
                if item is _END:
                    self._finish(analyzer, segmenter.flush())
                    return
                chunk: AudioChunk = item
                seconds = len(chunk.samples) / AUDIO_RATE
                with self._lock:
                    self._queued -= seconds
                self.stats.lag_seconds = max(0.0, time.time() - (chunk.wall + seconds))
                spans = segmenter.push(chunk.samples, chunk.wall - self._origin)
                self.stats.seconds += seconds
                self._finish(analyzer, spans)
        except Exception as exc:  # audio must never take the video analysis down: it stops, and says why
            log.exception("audio analysis failed; it is off for the rest of the session")
            with self._lock:
                self.stats.error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self._done.set()

    def _finish(self, analyzer: SpeechAnalyzer, spans: list[Span]) -> None:
        for span in spans:
            self.stats.speech_seconds += span.end - span.start
            text = analyzer.transcribe(span.samples)
            if not text:
                continue
            self._emit(Segment(round(span.start, 3), round(span.end, 3), text, analyzer.sentiment(text)))
            self.stats.segments += 1
