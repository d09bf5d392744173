"""The analysis loop, independent of AWS.

decoded frames → rate gate (analysis fps; late frames dropped and counted) → face finder on the luma plane
(:mod:`analyzer.finder`: discovery at a low rate, re-location of known faces in between, tracker ids) →
eye-aligned crops → expression classifier (:mod:`analyzer.expressions`, all faces of a frame in small
batches) → per-second :class:`~emotion_shared.emotions.Bucket`.

A second is closed and handed to the sink when a frame of a later second arrives, or by :meth:`Pipeline.flush`.
The second of a frame is ``floor(frame.received - origin)``: the wall clock at which the frame was received,
relative to the session's ``createdAt`` (worker) or to the start of the analysis (``emotionctl analyze``).

Thread safety: :meth:`Pipeline.process` runs on the frame thread; :meth:`Pipeline.flush` /
:meth:`Pipeline.close` may be called from another thread (the worker's control thread) while the frame thread
is blocked in a read. After :meth:`close` no further second is emitted.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import numpy as np
from emotion_shared.emotions import EMOTIONS, Bucket

from .expressions import DEFAULT_CLASSIFIER, ExpressionClassifier, classify_faces
from .finder import DEFAULT_DISCOVERY_INTERVAL, DEFAULT_MAX_FACES, DEFAULT_MIN_FACE, FaceFinder
from .tracker import FaceTracker

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
Chroma = tuple[np.ndarray, np.ndarray]

DEFAULT_ANALYSIS_FPS = 5.0
DEFAULT_MAX_LAG_SECONDS = 0.25


class FrameLike(Protocol):
    """What the pipeline needs of a decoded frame (``analyzer.ingest.Frame``)."""

    @property
    def received(self) -> float: ...  # wall clock (epoch seconds) at which the frame was received

    @property
    def pts_seconds(self) -> float | None: ...

    @property
    def luma(self) -> np.ndarray: ...  # uint8[H, W]

    @property
    def chroma(self) -> Chroma | None: ...  # U and V planes (yuv420p), or None


@dataclass(frozen=True, slots=True)
class AnalyzerOptions:
    """What a deployment may tune about perception (worker environment, ``emotionctl analyze`` flags).

    ``min_face``: the smallest face, as a fraction of the frame height (the one size setting: the discovery
    detector's working resolution follows from it). ``discovery_interval``: seconds of stream time between
    full-frame discoveries (a new face is found within it). ``max_faces``: per frame. ``classifier``: an
    :func:`analyzer.expressions.load_classifier` name.
    """

    min_face: float = DEFAULT_MIN_FACE
    discovery_interval: float = DEFAULT_DISCOVERY_INTERVAL
    max_faces: int = DEFAULT_MAX_FACES
    classifier: str = DEFAULT_CLASSIFIER


@dataclass(frozen=True, slots=True)
class Analysis:
    """One analysed frame: track id, box and probabilities (``float32[N, 7]``) per face."""

    tracks: list[str]
    boxes: list[Box]
    scores: np.ndarray


class FrameAnalyzer:
    """The models and the face finder of one stream: frame planes → faces with ids and emotion probabilities.

    The models are loaded once by the caller and shared; the finder (and so the tracker) is per stream.
    ``align``: crops are rotated so the eyes are level (the detectors' eye keypoints) before classification.
    """

    def __init__(self, finder: FaceFinder, classifier: ExpressionClassifier, *, align: bool = True) -> None:
        self.finder = finder
        self.classifier = classifier
        self.align = align
        self._empty = np.zeros((0, len(EMOTIONS)), np.float32)

    @property
    def tracker(self) -> FaceTracker:
        return self.finder.tracker

    @classmethod
    def from_model_dir(
        cls, model_dir: Any = None, threads: int = 1, options: AnalyzerOptions | None = None
    ) -> FrameAnalyzer:
        """The shipped perception, from the verified models (``analyzer.models.default_model_dir()`` unless given):
        CenterFace discovers faces on the whole frame every ``discovery_interval`` s at the working size that
        ``min_face`` asks for, BlazeFace short range re-locates each known face on a crop at every analysed
        frame, and the chosen classifier reads eye-aligned crops."""
        from . import detectors, expressions, models

        opts = options or AnalyzerOptions()
        files = models.load_manifest(model_dir)
        finder = FaceFinder(
            detectors.CenterFaceDetector(files.path("centerface"), threads, max_faces=opts.max_faces),
            detectors.FaceRelocator(files.path("face_relocator"), threads),
            discovery_interval=opts.discovery_interval,
            min_face=opts.min_face,
            max_faces=opts.max_faces,
        )
        return cls(finder, expressions.load_classifier(opts.classifier, files.directory, threads))

    def warm_up(self, width: int, height: int) -> None:
        """Run the discovery detector once at the stream's size, so the first real frame is not slow (resize plans)."""
        self.finder.discovery.detect(np.zeros((height, width), np.uint8), min_face=self.finder.min_face_px(height))

    def analyse(self, luma: np.ndarray, now: float, chroma: Chroma | None = None) -> Analysis:
        """Faces in the frame's Y plane ``luma`` (and U, V planes ``chroma`` for colour classifiers) at stream
        time ``now``."""
        faces = self.finder.find(luma, now)
        if not faces:
            return Analysis([], [], self._empty)
        scores = classify_faces(self.classifier, luma, faces, chroma=chroma, rotate=self.align)
        return Analysis([f.track for f in faces], [f.box for f in faces], scores)


class Decision(Enum):
    ANALYSE = "analyse"
    SKIP = "skip"  # not due at the analysis rate
    DROP = "drop"  # due, but too late: dropped and counted


class RateGate:
    """Chooses the frames to analyse: ``fps`` per second of stream time, never behind real time.

    Due frames: the stream time (pts, else receive time) is cut into slots of ``1/fps`` from the first frame;
    the first frame of each slot is analysed. With ``fps`` ≥ the stream's frame rate (``stream_fps``, when
    known) every frame is analysed, whatever the timestamp jitter.

    Lateness: the expected arrival of a frame is ``pts + base`` where ``base`` is the smallest
    ``received - pts`` seen so far (the stream's clock offset; it may creep up by ``drift`` per second so a
    sender clock slower than ours is not mistaken for lateness). A due frame whose analysis would start more
    than ``max_lag`` seconds after its expected arrival is dropped. This also catches frames that waited in
    socket buffers while the previous analysis ran (their receive stamp alone would look fresh).
    """

    def __init__(
        self,
        fps: float | None,
        max_lag: float = DEFAULT_MAX_LAG_SECONDS,
        drift: float = 0.002,
        stream_fps: float | None = None,
    ) -> None:
        if fps is not None and fps <= 0:
            raise ValueError("analysis fps must be positive")
        self.requested_fps = fps
        self.max_lag = max_lag
        self.drift = drift
        self.reset(stream_fps)

    def reset(self, stream_fps: float | None = None) -> None:
        """Forget the stream clock (a new connection: timestamps restart); ``stream_fps`` if known."""
        fps = self.requested_fps
        self.fps = None if fps is None or (stream_fps and fps >= stream_fps * 0.99) else fps
        self._t0: float | None = None
        self._last_slot = -1
        self._last_t = -math.inf
        self._base: float | None = None
        self._last_received = 0.0
        self.stream_time = 0.0  # the last frame's expected arrival (wall clock paced by the stream's timestamps)

    def decide(self, pts: float | None, received: float, now: float) -> Decision:
        t = received if pts is None else pts
        if self._t0 is None or t < self._last_t - 1.0:  # first frame, or timestamps went backwards: resync
            if self._t0 is not None:
                log.info("stream timestamps went back by %.1f s; resynchronising", self._last_t - t)
            self._t0 = t
            self._last_slot = -1
            self._base = None
        self._last_t = t
        if self.fps is None:
            due = True
        else:
            slot = math.floor((t - self._t0) * self.fps + 1e-6)
            due = slot > self._last_slot
            if due:
                self._last_slot = slot
        # lateness reference (also updated for frames that are not due)
        offset = received - t
        if self._base is None:
            self._base = offset
        else:
            self._base = min(self._base + self.drift * max(0.0, received - self._last_received), offset)
        self._last_received = received
        self.stream_time = t + self._base
        if not due:
            return Decision.SKIP
        if now - (t + self._base) > self.max_lag:
            return Decision.DROP
        return Decision.ANALYSE


@dataclass
class FaceDetail:
    """Per second and track: the last box seen and the mean probabilities (for ``emotionctl analyze``)."""

    box: Box
    score_sum: np.ndarray
    count: int = 1

    def as_json(self, track: str) -> dict[str, Any]:
        mean = self.score_sum / self.count
        best = int(np.argmax(mean))
        return {
            "track": track,
            "box": [round(v) for v in self.box],
            "emotion": EMOTIONS[best],
            "scores": {name: round(float(p), 4) for name, p in zip(EMOTIONS, mean, strict=True)},
        }


@dataclass
class SecondResult:
    """A closed second: its bucket, the analysis frames dropped in it and (optionally) per-face detail."""

    bucket: Bucket
    dropped: int = 0
    faces: dict[str, FaceDetail] = field(default_factory=dict)

    @property
    def sec(self) -> int:
        return self.bucket.sec

    def faces_json(self) -> list[dict[str, Any]]:
        return [detail.as_json(track) for track, detail in self.faces.items()]


Sink = Callable[[SecondResult], None]


@dataclass
class PipelineStats:
    frames: int = 0  # decoded frames seen
    analysed: int = 0  # analysed frames counted in a second (= the sum of the buckets' frames)
    dropped: int = 0  # due for analysis but late


class Pipeline:
    """Frames in, closed seconds out (to ``sink``)."""

    def __init__(
        self,
        analyzer: FrameAnalyzer,
        sink: Sink,
        *,
        origin: float,
        analysis_fps: float | None = DEFAULT_ANALYSIS_FPS,
        max_lag: float = DEFAULT_MAX_LAG_SECONDS,
        detail: bool = False,
        stream_fps: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.analyzer = analyzer
        self.gate = RateGate(analysis_fps, max_lag, stream_fps=stream_fps)
        self.stats = PipelineStats()
        self._sink = sink
        self._origin = origin
        self._detail = detail
        self._clock = clock
        self._lock = threading.Lock()
        self._open: SecondResult | None = None
        self._last_emitted: SecondResult | None = None
        self._closed = False
        self.latencies: list[float] | None = None  # set to [] to record analysis seconds per analysed frame

    # ---------------------------------------------------------------- frames
    def run(self, frames: Iterable[FrameLike]) -> None:
        for frame in frames:
            if self._closed:
                return
            self.process(frame)

    def new_segment(self, stream_fps: float | None = None) -> None:
        """Call when a stream is (re)opened: its timestamps restart; face identities are kept."""
        self.gate.reset(stream_fps)

    def process(self, frame: FrameLike) -> None:
        self.stats.frames += 1
        now = self._clock()
        decision = self.gate.decide(frame.pts_seconds, frame.received, now)
        if decision is Decision.SKIP:
            return
        sec = max(0, math.floor(frame.received - self._origin))
        if decision is Decision.DROP:
            with self._lock:
                current = self._second(sec)
                if current is not None:
                    current.dropped += 1
                    self.stats.dropped += 1
            return
        started = time.perf_counter() if self.latencies is not None else 0.0
        # the tracker runs on stream time: frames that arrive in a burst (a server's cached GOP at connect) are
        # still 1/fps apart for it, so their motion is not mistaken for a jump
        analysis = self.analyzer.analyse(frame.luma, self.gate.stream_time, frame.chroma)
        with self._lock:
            current = self._second(sec)
            if current is None:
                return
            bucket = current.bucket
            bucket.frames += 1
            self.stats.analysed += 1  # under the lock: the counts always equal what the buckets hold
            scores = analysis.scores
            for i, track in enumerate(analysis.tracks):
                probs = scores[i]
                bucket.observe(track, probs.tolist())
                if self._detail:
                    detail = current.faces.get(track)
                    if detail is None:
                        current.faces[track] = FaceDetail(analysis.boxes[i], probs.astype(np.float64))
                    else:
                        detail.box = analysis.boxes[i]
                        detail.score_sum += probs
                        detail.count += 1
        if self.latencies is not None:
            self.latencies.append(time.perf_counter() - started)

    def _second(self, sec: int) -> SecondResult | None:
        """The open second for ``sec`` (lock held); emits the previous one when ``sec`` is later."""
        if self._closed:
            return None
        current = self._open
        if current is not None and sec <= current.sec:
            return current  # a clock step back: keep counting in the open second
        if current is not None:
            self._emit(current)
        last = self._last_emitted
        if last is not None and last.sec == sec:
            # flushed (e.g. on a stream drop) and the stream came back within the same second: reopen it,
            # the next emit re-puts the whole, larger bucket (writes are idempotent whole-bucket puts). A copy:
            # the emitted one may still be read by the sink's consumer.
            self._open = copy.deepcopy(last)
        else:
            self._open = SecondResult(Bucket(sec=sec))
        return self._open

    def _emit(self, result: SecondResult) -> None:
        self._open = None
        self._last_emitted = result
        self._sink(result)

    # --------------------------------------------------------------- control
    def flush(self) -> SecondResult | None:
        """Emit the open second now (it can still be reopened by a later frame of the same second)."""
        with self._lock:
            current = self._open
            if current is None or self._closed:
                return None
            self._emit(current)
            return current

    def close(self, *, flush: bool = True) -> SecondResult | None:
        """Final: emit the open second (unless ``flush`` is False: discard it); no second is emitted afterwards."""
        with self._lock:
            if self._closed:
                return None
            current = self._open
            self._closed = True
            self._open = None
            if current is not None and flush:
                self._last_emitted = current
                self._sink(current)
                return current
            return None

    @property
    def closed(self) -> bool:
        return self._closed
