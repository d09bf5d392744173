"""The analysis loop, independent of AWS.

decoded frames → rate gate (analysis fps; the newest frame available, never none) → face finder on the luma plane
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
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import numpy as np
from emotion_shared.emotions import EMOTIONS, Bucket

from .expressions import DEFAULT_CLASSIFIER, ExpressionClassifier, classify_faces
from .finder import DEFAULT_DISCOVERY_INTERVAL, DEFAULT_MAX_FACES, DEFAULT_MIN_FACE, FaceFinder
from .geometry import Box
from .liveedge import DEFAULT_DRIFT, LiveEdge
from .tracker import FaceTracker

log = logging.getLogger(__name__)

Chroma = tuple[np.ndarray, np.ndarray]

DEFAULT_ANALYSIS_FPS = 5.0
DEFAULT_MAX_LAG_SECONDS = 0.25
DEFAULT_MAX_WAIT_SECONDS = 0.3


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

    # optional: ``skipped`` (int), the frames the ingest skipped undecoded (catching up) right before this one,
    # and ``skipped_from`` (float | None), the wall clock at which the first of them was read


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


# A degraded session discovers new faces 3x less often (every 6 s by default instead of 2 s): the average cost
# of an analysed 1080p frame with one face falls from ~19 ms (a 150 ms discovery every 10th analysis at 5/s)
# to ~9 ms. And each discovery is spread over successive analysed frames (FaceFinder.spread_discovery): at
# 1080p five parts of ~30 ms instead of one 150 ms pass, which a worker getting 0.1 core would take over a
# wall second to run — a second with frames and no analysis.
PRESSURE_DISCOVERY_FACTOR = 3.0
# ... and stays relieved this long after it recovers: a session that only just keeps up (a worker getting a
# fifth of a core) would otherwise recover, pay whole discoveries again (~150 ms of CPU at 1080p, most of a wall
# second on that share: a second with frames and no analysis), and fall back into degraded.
RELIEF_HOLD_SECONDS = 30.0


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
        self._discovery_interval = finder.discovery_interval
        self.under_pressure = False

    def relieve(self, pressure: bool) -> None:
        """Under pressure (the session cannot keep up: degraded) the whole-frame discovery — most of an analysed
        frame's cost — runs :data:`PRESSURE_DISCOVERY_FACTOR` times less often, so more analyses fit in the CPU
        share the session gets, and is spread over successive frames (:attr:`FaceFinder.spread_discovery`), so
        no single frame pays a whole pass; known faces are still re-located at every analysed frame. Any thread."""
        if pressure == self.under_pressure:
            return
        self.under_pressure = pressure
        factor = PRESSURE_DISCOVERY_FACTOR if pressure else 1.0
        self.finder.discovery_interval = self._discovery_interval * factor
        self.finder.spread_discovery = pressure
        log.info("%s: whole-frame discovery every %.1f s", "under pressure" if pressure else "pressure gone",
                 self.finder.discovery_interval)

    @property
    def tracker(self) -> FaceTracker:
        return self.finder.tracker

    @classmethod
    def from_model_dir(
        cls, model_dir: Any = None, threads: int = 1, options: AnalyzerOptions | None = None
    ) -> FrameAnalyzer:
        """The shipped perception, from the verified models (``analyzer.model_files.default_model_dir()`` unless
        given): CenterFace (int8) discovers faces on the whole frame every ``discovery_interval`` s at the working size
        that ``min_face`` asks for — a new face it scores below ``CENTERFACE_DEFAULT_THRESHOLD`` becomes a track only
        when the re-locator confirms it — BlazeFace short range re-locates each known face on a crop at every
        analysed frame, and the chosen classifier reads eye-aligned crops."""
        from . import detectors, expressions, model_files

        opts = options or AnalyzerOptions()
        files = model_files.load_manifest(model_dir)
        finder = FaceFinder(
            detectors.CenterFaceDetector(
                files.path("centerface_int8"),
                threads,
                score_threshold=detectors.CENTERFACE_CONFIRMED_THRESHOLD,
                max_faces=opts.max_faces,
            ),
            detectors.FaceRelocator(files.path("face_relocator"), threads),
            discovery_interval=opts.discovery_interval,
            min_face=opts.min_face,
            max_faces=opts.max_faces,
            confirm_below=detectors.CENTERFACE_DEFAULT_THRESHOLD,
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
    CATCH_UP = "catch_up"  # due, but stale: newer frames are queued behind it, one of them is analysed instead


MAX_TIMESTAMP_STEP = 10.0  # s: consecutive frames further apart than this are a discontinuity, not a recording gap


class RateGate:
    """Chooses the frames to analyse: ``fps`` per second of stream time, the newest frame available, never none.

    Due frames: the stream time (pts, else receive time) is cut into slots of ``1/fps`` from the first frame;
    a slot owes one analysis. With ``fps`` ≥ the stream's frame rate (``stream_fps``, when known) every frame
    is owed one, whatever the timestamp jitter.

    Which frame pays it: the first frame, from the slot's start on, that is fresh — its lag behind the live edge
    (:class:`~analyzer.liveedge.LiveEdge`) at most ``max_lag`` — so a worker that fell behind decodes its
    backlog without analysing it and analyses the newest frame; or, when no fresh frame comes within
    ``max_wait`` seconds (our clock) of the slot becoming due (the CPU cannot even keep up with decoding), the
    frame at hand. An owed analysis is never given up: under load the analysis rate falls with the CPU share,
    it does not stop. (The ingest bounds the lag: it skips packets up to a keyframe when far behind.)
    """

    def __init__(
        self,
        fps: float | None,
        max_lag: float = DEFAULT_MAX_LAG_SECONDS,
        drift: float = DEFAULT_DRIFT,
        stream_fps: float | None = None,
        max_wait: float = DEFAULT_MAX_WAIT_SECONDS,
    ) -> None:
        if fps is not None and fps <= 0:
            raise ValueError("analysis fps must be positive")
        self.requested_fps = fps
        self.max_lag = max_lag
        self.max_wait = max_wait
        self._edge = LiveEdge(drift)
        # the tracker's clock (see ``frame_time``): survives reconnections, so an absence is measured across them
        self.frame_time = 0.0
        self._frame_anchor: tuple[float, float] | None = None  # (stream time t, frame_time) of the segment's start
        self._last_received: float | None = None
        self.reset(stream_fps)

    def reset(self, stream_fps: float | None = None) -> None:
        """Forget the stream clock (a new connection: timestamps restart); ``stream_fps`` if known."""
        fps = self.requested_fps
        self.fps = None if fps is None or (stream_fps and fps >= stream_fps * 0.99) else fps
        self.stream_fps = stream_fps
        self._t0: float | None = None
        self._last_slot = -1
        self._last_t = -math.inf
        self._owed_since: float | None = None
        self._edge.reset()
        self.stream_time = 0.0  # the last frame's expected arrival (wall clock paced by the stream's timestamps)
        self.lag = 0.0  # the last frame's lag behind the live edge
        self._frame_anchor = None

    @property
    def target_fps(self) -> float | None:
        """Analyses per second wanted: the requested rate, capped at the stream's frame rate (None: unknown)."""
        if self.fps is not None:
            return self.fps
        return self.stream_fps

    def decide(self, pts: float | None, received: float, now: float) -> Decision:
        t = received if pts is None else pts
        if self._t0 is None or t < self._last_t - 1.0:  # first frame, or timestamps went back: resync
            if self._t0 is not None:
                log.info("stream timestamps went back by %.1f s; resynchronising", self._last_t - t)
                self._edge.reset()
            self._t0 = t
            self._last_slot = -1
            self._frame_anchor = None
        self._advance_frame_time(t, received)
        self._last_t = t
        if self.fps is None:
            due = True
        else:
            slot = math.floor((t - self._t0) * self.fps + 1e-6)
            due = slot > self._last_slot
            if due:
                self._last_slot = slot
        # lag reference (also updated for frames that are not due)
        self.stream_time = self._edge.observe(t, received)
        self.lag = max(0.0, now - self.stream_time)
        if due and self._owed_since is None:
            self._owed_since = now
        if self._owed_since is None:
            return Decision.SKIP
        if self.lag <= self.max_lag or now - self._owed_since >= self.max_wait:
            self._owed_since = None
            return Decision.ANALYSE
        return Decision.CATCH_UP

    def _advance_frame_time(self, t: float, received: float) -> None:
        """``frame_time``: the last frame's time for motion and absence, on our clock's scale but paced by the
        stream's own timestamps within a segment. Frames that arrive in a burst (a server's cached GOP at
        connect, a backlog read after a stall) are 1/fps apart on it, as they were filmed — the expected arrival
        (``stream_time``) bunches them up, and a tracker fed with it would read their motion as a leap. Across a
        new segment, or a leap of the timestamps, it moves on by our clock's gap; it never goes back."""
        if self._frame_anchor is not None and t - self._last_t > MAX_TIMESTAMP_STEP:
            self._frame_anchor = None  # timestamps leapt forward (a publisher restarted): our clock measures the gap
        if self._frame_anchor is None:
            gap = 0.0 if self._last_received is None else max(0.0, received - self._last_received)
            self._frame_anchor = (t, (received if self._last_received is None else self.frame_time + gap))
        anchor_t, anchor_time = self._frame_anchor
        self.frame_time = max(self.frame_time, anchor_time + (t - anchor_t))
        self._last_received = received

    def settle(self) -> None:
        """The owed analysis was done on a frame the gate passed over (the pipeline's own rule)."""
        self._owed_since = None


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
    """A closed second: its bucket (analysed and received frames, faces), the due frames passed over for a newer
    one while catching up, and (optionally) per-face detail."""

    bucket: Bucket
    passed_over: int = 0
    faces: dict[str, FaceDetail] = field(default_factory=dict)
    # an analysis fell due in this second, or frames were skipped undecoded in it: without an analysed frame it
    # is a second the analysis could not keep up with; otherwise, at the end, a second cut short before its turn
    owed: bool = False

    @property
    def sec(self) -> int:
        return self.bucket.sec

    def faces_json(self) -> list[dict[str, Any]]:
        return [detail.as_json(track) for track, detail in self.faces.items()]


Sink = Callable[[SecondResult], None]


@dataclass
class PipelineStats:
    frames: int = 0  # decoded frames seen
    received: int = 0  # frames received: decoded + skipped undecoded by the ingest to catch up
    skipped: int = 0  # frames the ingest skipped without decoding (catching up with the live edge)
    analysed: int = 0  # analysed frames counted in a second (= the sum of the buckets' frames)
    passed_over: int = 0  # due frames not analysed because a newer one was (catching up)


LOAD_WINDOW_SECONDS = 5.0
DEGRADED_RATE_SHARE = 0.8  # below this share of the wanted analysis rate the session is degraded
RECOVERED_RATE_SHARE = 0.95  # at or above it (and no lag, no skipping) it has recovered
DEGRADED_LAG_SECONDS = 1.0  # lag p95 of the analysed frames above which the session is degraded
RECOVERED_LAG_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Load:
    """How the analysis keeps up, over the last :data:`LOAD_WINDOW_SECONDS` (``Pipeline.load``)."""

    analyses_per_second: float
    target_per_second: float | None
    lag: float  # the last analysed frame's lag behind the live edge, seconds
    lag_p95: float  # over the window's analyses
    skipped: int  # frames skipped undecoded within the window
    degraded: bool
    settled: bool = True  # at least a second of frames since the (re)connection: the rate means something

    def as_stats(self) -> dict[str, Any]:
        return {
            "analysesPerSecond": round(self.analyses_per_second, 2),
            "targetAnalysesPerSecond": None if self.target_per_second is None else round(self.target_per_second, 2),
            "lagSeconds": round(self.lag, 3),
            "lagP95Seconds": round(self.lag_p95, 3),
        }


class LoadMonitor:
    """Analyses and skips of the recent past → a :class:`Load`, with hysteresis on ``degraded``: it is set as soon
    as the window shows the analysis rate below :data:`DEGRADED_RATE_SHARE` of the target, a lag p95 above
    :data:`DEGRADED_LAG_SECONDS` or frames skipped undecoded; cleared once a whole window shows none of it (rate
    ≥ :data:`RECOVERED_RATE_SHARE`, lag p95 ≤ :data:`RECOVERED_LAG_SECONDS`, nothing skipped). The first window
    after a (re)connection judges the rate over the time since then."""

    def __init__(self, window: float = LOAD_WINDOW_SECONDS) -> None:
        self.window = window
        self._analyses: deque[tuple[float, float]] = deque()  # (when, lag)
        self._skips: deque[tuple[float, int]] = deque()
        self._since: float | None = None
        self._last_lag = 0.0
        self.degraded = False

    def restart(self) -> None:
        """A new segment: the rate is judged from its first frame on."""
        self._since = None

    def frame(self, now: float, skipped: int) -> None:
        if self._since is None:
            self._since = now
        if skipped:
            self._skips.append((now, skipped))

    def analysed(self, now: float, lag: float) -> None:
        self._analyses.append((now, lag))
        self._last_lag = lag

    def assess(self, now: float, target: float | None) -> Load:
        horizon = now - self.window
        while self._analyses and self._analyses[0][0] < horizon:
            self._analyses.popleft()
        while self._skips and self._skips[0][0] < horizon:
            self._skips.popleft()
        span = self.window if self._since is None else min(self.window, max(now - self._since, 1e-9))
        rate = len(self._analyses) / span
        lags = sorted(lag for _, lag in self._analyses)
        p95 = lags[min(len(lags) - 1, math.ceil(0.95 * len(lags)) - 1)] if lags else 0.0
        skipped = sum(n for _, n in self._skips)
        settled = self._since is not None and now - self._since >= 1.0  # too early to judge a rate before
        if settled and self._since is not None:
            want = target or 0.0
            if (want and rate < DEGRADED_RATE_SHARE * want) or p95 > DEGRADED_LAG_SECONDS or skipped:
                self.degraded = True
            elif (
                self.degraded
                and now - self._since >= self.window
                and (not want or rate >= RECOVERED_RATE_SHARE * want)
                and p95 <= RECOVERED_LAG_SECONDS
            ):
                self.degraded = False
        return Load(rate, target, self._last_lag, p95, skipped, self.degraded, settled)


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
        self.monitor = LoadMonitor()
        self._sink = sink
        self._origin = origin
        self._detail = detail
        self._clock = clock
        self._lock = threading.Lock()
        self._open: SecondResult | None = None
        self._last_emitted: SecondResult | None = None
        self._closed = False
        self._relieved_until = -math.inf  # our clock: the analyzer is relieved until then (see load())
        self.latencies: list[float] | None = None  # set to [] to record analysis seconds per analysed frame

    # ---------------------------------------------------------------- frames
    def run(self, frames: Iterable[FrameLike]) -> None:
        for frame in frames:
            if self._closed:
                return
            self.process(frame)

    def new_segment(self, stream_fps: float | None = None) -> None:
        """Call when a stream is (re)opened: its timestamps restart; face identities are kept."""
        with self._lock:
            self.gate.reset(stream_fps)
            self.monitor.restart()

    def load(self) -> Load:
        """How the analysis keeps up right now (any thread); a degraded session's analyzer is relieved
        (:meth:`FrameAnalyzer.relieve`) until :data:`RELIEF_HOLD_SECONDS` after it recovers."""
        with self._lock:
            now = self._clock()
            load = self.monitor.assess(now, self.gate.target_fps)
            if load.degraded:
                self._relieved_until = now + RELIEF_HOLD_SECONDS
        self.analyzer.relieve(now < self._relieved_until)
        return load

    def process(self, frame: FrameLike) -> None:
        now = self._clock()
        skipped = int(getattr(frame, "skipped", 0))
        sec = max(0, math.floor(frame.received - self._origin))
        decision = self.gate.decide(frame.pts_seconds, frame.received, now)
        with self._lock:
            self.stats.frames += 1
            self.monitor.frame(now, skipped)
            if skipped:
                self._count_skipped(skipped, getattr(frame, "skipped_from", None), sec)
            current = self._second(sec)
            if current is None:
                return
            current.bucket.received += 1
            self.stats.received += 1
            behind = decision is Decision.CATCH_UP or (decision is Decision.SKIP and self.gate.lag > self.gate.max_lag)
            if behind and current.bucket.frames == 0:
                # never a second with frames but no analysis: when behind, the first frame of a second is analysed
                # even when stale or not due (the ingest keeps the lag bounded)
                self.gate.settle()
                decision = Decision.ANALYSE
            if decision is not Decision.SKIP:
                current.owed = True
            if decision is Decision.CATCH_UP:
                current.passed_over += 1
                self.stats.passed_over += 1
                return
            if decision is Decision.SKIP:
                return
        started = time.perf_counter() if self.latencies is not None else 0.0
        lag = self.gate.lag
        # the finder runs on the stream's own timestamps (RateGate.frame_time): frames that arrive in a burst are
        # still 1/fps apart for it, so their motion is not mistaken for a leap
        analysis = self.analyzer.analyse(frame.luma, self.gate.frame_time, frame.chroma)
        with self._lock:
            current = self._second(sec)
            if current is None:
                return
            bucket = current.bucket
            bucket.frames += 1
            self.stats.analysed += 1  # under the lock: the counts always equal what the buckets hold
            self.monitor.analysed(self._clock(), lag)
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

    def _count_skipped(self, skipped: int, skipped_from: float | None, sec: int) -> None:
        """Frames skipped undecoded, spread evenly over the seconds from the first one's read time to ``sec``
        (lock held): a second in which frames arrived and none could be analysed is recorded as such — a bucket
        with ``received`` and no analysed frame — not left out as if nothing had come."""
        first = sec if skipped_from is None else min(sec, max(0, math.floor(skipped_from - self._origin)))
        span = sec - first + 1
        for i, second in enumerate(range(first, sec + 1)):
            share = skipped * (i + 1) // span - skipped * i // span
            current = self._second(second)
            if current is None:
                return
            current.bucket.received += share
            current.owed = current.owed or share > 0
            self.stats.received += share
            self.stats.skipped += share

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
        """Final: emit the open second (unless ``flush`` is False: discard it); no second is emitted afterwards.

        An open second that no analysis fell due in — the stream stopped a frame or two after a second began,
        before its next analysis slot — is not emitted: it would read as a second the analysis could not keep
        up with. Its frames stay counted in :attr:`stats` (``received``)."""
        with self._lock:
            if self._closed:
                return None
            current = self._open
            self._closed = True
            self._open = None
            if current is not None and flush and current.bucket.frames == 0 and not current.owed:
                log.info("the stream ended %d frame(s) into second %d, before its analysis was due: not recorded",
                         current.bucket.received, current.sec)
                return None
            if current is not None and flush:
                self._last_emitted = current
                self._sink(current)
                return current
            return None

    @property
    def closed(self) -> bool:
        return self._closed
