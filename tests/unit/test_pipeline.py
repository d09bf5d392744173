"""The analysis loop: rate gate (newest frame, never none), load, per-second buckets; then the real models on a
real photo."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from analyzer.finder import FaceFinder
from analyzer.ingest import CatchUp
from analyzer.pipeline import (
    PRESSURE_DISCOVERY_FACTOR,
    Decision,
    FrameAnalyzer,
    LoadMonitor,
    Pipeline,
    RateGate,
    SecondResult,
)
from emotion_shared.emotions import EMOTIONS, interval_stats


@dataclass
class Frame:
    received: float
    pts_seconds: float | None
    width: int
    height: int
    luma: np.ndarray
    chroma: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class Det:
    box: tuple[float, float, float, float]
    score: float = 0.9
    keypoints: None = None


class FakeDetector:
    """A face at a fixed place while the frame's top-left pixel is 255."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, luma: np.ndarray, min_face: float = 0.0) -> list[Det]:
        self.calls += 1
        return [Det((10.0, 10.0, 30.0, 30.0))] if luma[0, 0] == 255 else []


class FakeClassifier:
    name = "fake"
    size = 64
    colour = "gray"
    crop_scale = 1.25

    def classify(self, crops: np.ndarray) -> np.ndarray:
        out = np.full((len(crops), 7), 0.02, np.float32)
        out[:, EMOTIONS.index("happiness")] = 0.88
        return out


FACE = np.zeros((48, 64), np.uint8)
FACE[0, 0] = 255
EMPTY = np.zeros((48, 64), np.uint8)


def stream(seconds: float, fps: float, start: float = 1000.0, face: bool = True) -> list[Frame]:
    n = round(seconds * fps)
    return [Frame(start + i / fps, i / fps, 64, 48, FACE if face else EMPTY) for i in range(n)]


def make(fps: float | None = 5.0, clock: Any = None, detail: bool = False, origin: float = 1000.0):
    out: list[SecondResult] = []
    analyzer = FrameAnalyzer(FaceFinder(FakeDetector(), min_face=0.0), FakeClassifier())
    kwargs = {"clock": clock} if clock else {}
    pipe = Pipeline(analyzer, out.append, origin=origin, analysis_fps=fps, detail=detail, **kwargs)
    return pipe, out


class Clock:
    """Real time that follows the frames: now = the frame's receive time + ``lag``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed(pipe: Pipeline, frames: list[Frame], clock: Clock | None = None, lag: float = 0.001) -> None:
    for frame in frames:
        if clock is not None:
            clock.now = frame.received + lag
        pipe.process(frame)


# ------------------------------------------------------------------------------------------- rate gate
@pytest.mark.parametrize(("fps", "expected"), [(5.0, 5), (1.0, 1), (10.0, 10), (30.0, 30), (60.0, 30), (None, 30)])
def test_rate_gate_analyses_fps_frames_per_stream_second(fps: float | None, expected: int) -> None:
    gate = RateGate(fps)
    decisions = [gate.decide(i / 30, 500 + i / 30, 500 + i / 30) for i in range(300)]
    assert decisions.count(Decision.ANALYSE) == expected * 10
    assert Decision.CATCH_UP not in decisions


def test_rate_gate_tolerates_timestamp_jitter_at_full_rate() -> None:
    rng = np.random.default_rng(1)
    gate = RateGate(30.0, stream_fps=30.0)
    pts = np.arange(300) / 30 + rng.uniform(-0.004, 0.004, 300)
    decisions = [gate.decide(float(p), 10 + float(p), 10 + float(p)) for p in pts]
    assert decisions.count(Decision.ANALYSE) == 300


def test_rate_gate_analyses_the_newest_frame_when_behind() -> None:
    # Given a worker that fell 2 s behind (a backlog in the socket) and drains it at 300 frames/s of wall time
    gate = RateGate(5.0, max_lag=0.25, max_wait=0.3)
    for i in range(30):  # one live second first: the live edge
        gate.decide(i / 30, 100 + i / 30, 100 + i / 30)
    out = []
    for i in range(30, 120):
        pts = i / 30
        now = 103.0 + (i - 30) / 300  # frame i read from the backlog
        out.append(gate.decide(pts, now, now))
    # Then the stale due frames are passed over, and the first frame near the live edge is analysed
    analysed = [30 + k for k, d in enumerate(out) if d is Decision.ANALYSE]
    assert out[0] is Decision.CATCH_UP
    assert analysed and 100 + analysed[0] / 30 >= 103.0 + (analysed[0] - 30) / 300 - 0.25 - 1e-9


def test_rate_gate_never_gives_up_an_owed_analysis() -> None:
    # Given frames that are always 1 s late (the CPU cannot even keep up with decoding)
    gate = RateGate(5.0, max_lag=0.25, max_wait=0.3)
    gate.decide(0.0, 50.0, 50.0)  # the live edge
    out = [gate.decide(i / 30, 51 + i / 30 * 1.5, 51 + i / 30 * 1.5) for i in range(1, 300)]
    # Then an analysis still happens about every max_wait: fewer than asked, never none
    assert out.count(Decision.ANALYSE) >= 10
    assert Decision.CATCH_UP in out


def test_rate_gate_burst_at_start_is_not_late() -> None:
    # A server that sends its cached GOP at once: 1 s of frames arrive within a few ms, then real time
    gate = RateGate(None)
    decisions = [gate.decide(i / 30, 50.0 + i * 0.0001, 50.0 + i * 0.0001) for i in range(30)]
    decisions += [gate.decide(1 + i / 30, 50.01 + i / 30, 50.012 + i / 30) for i in range(60)]
    assert decisions == [Decision.ANALYSE] * 90


def test_frame_time_follows_the_stream_timestamps_through_a_burst_and_across_reconnections() -> None:
    """The finder's clock: a burst of frames (cached GOP at connect) keeps its 1/fps spacing, so a moving face
    is not extrapolated off the frame; a reconnection moves it on by the wall-clock gap; it never goes back."""
    gate = RateGate(5.0)
    times = []
    for i in range(15):  # 1 s of frames received within 15 ms
        gate.decide(i / 15, 50.0 + i * 0.001, 50.0 + i * 0.001)
        times.append(gate.frame_time)
    assert times[0] == 50.0
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [round(1 / 15, 6)] * 14
    assert gate.stream_time < times[-1]  # the expected arrival bunched the burst up

    gate.reset()  # a new connection 3 s later: timestamps restart at 0
    gate.decide(0.0, 50.014 + 3.0, 50.014 + 3.0)
    assert gate.frame_time == pytest.approx(times[-1] + 3.0)
    gate.decide(1000.0, 53.1, 53.1)  # timestamps leapt forward: our clock measures the step
    assert gate.frame_time == pytest.approx(times[-1] + 3.0 + 0.086)
    gate.decide(0.5, 53.2, 53.2)  # ... and back (a wrapped clock): resynchronised, not rewound
    assert gate.frame_time == pytest.approx(times[-1] + 3.0 + 0.186)


def test_rate_gate_resyncs_when_timestamps_restart() -> None:
    gate = RateGate(5.0)
    for i in range(50):
        gate.decide(100 + i * 0.2, 10 + i * 0.2, 10 + i * 0.2)
    # a reconnect: pts restart at 0, without an explicit reset
    assert gate.decide(0.0, 20.5, 20.5) is Decision.ANALYSE
    assert gate.decide(0.2, 20.7, 20.7) is Decision.ANALYSE


# ------------------------------------------------------------------------------------------ seconds
def test_seconds_are_emitted_when_a_later_second_starts_and_on_flush() -> None:
    clock = Clock()
    pipe, out = make(5.0, clock)
    feed(pipe, stream(2.5, 30), clock)
    # Then seconds 0 and 1 are closed, each with 5 analysed frames and 5 observations of one face
    assert [r.sec for r in out] == [0, 1]
    for result in out:
        assert result.bucket.frames == 5
        assert result.bucket.faces == {"f1": {"happiness": [5, pytest.approx(5 * 0.88)]}}
        assert result.passed_over == 0 and result.bucket.received == 30
    # When flushed, the open second 2 is emitted with what it has so far
    flushed = pipe.flush()
    assert flushed is not None and flushed.sec == 2 and flushed.bucket.frames == 3
    assert pipe.stats.frames == 75 and pipe.stats.analysed == 13 and pipe.stats.passed_over == 0


def test_second_index_is_relative_to_origin() -> None:
    clock = Clock()
    pipe, out = make(5.0, clock, origin=990.0)  # session created 10 s before the first frame
    feed(pipe, stream(1.2, 30), clock)
    pipe.close()
    assert [r.sec for r in out] == [10, 11]


def test_seconds_without_faces_are_emitted_with_frames_and_no_faces() -> None:
    clock = Clock()
    pipe, out = make(5.0, clock)
    feed(pipe, stream(2, 30, face=False), clock)
    pipe.close()
    assert [(r.sec, r.bucket.frames, r.bucket.faces) for r in out] == [(0, 5, {}), (1, 5, {})]


def test_close_without_flush_discards_the_open_second_and_stops_emitting() -> None:
    clock = Clock()
    pipe, out = make(5.0, clock)
    feed(pipe, stream(1.5, 30), clock)
    assert pipe.close(flush=False) is None
    feed(pipe, stream(2, 30, start=1002.0), clock)
    assert [r.sec for r in out] == [0]
    assert pipe.closed


@pytest.mark.parametrize(("seconds", "recorded"), [(0.6, [0]), (1.2, [0, 1])])
def test_a_last_second_cut_short_before_its_analysis_was_due_is_not_recorded(
    seconds: float, recorded: list[int]
) -> None:
    """1 analysis/s with slots half a second off the second boundaries: a stream that stops 0.1 s into second 1
    leaves it with frames but no analysis due — not a second the analysis failed to keep up with, so not
    recorded (its frames stay in the stats); 0.7 s into it, its analysis was done and it is recorded."""
    clock = Clock()
    pipe, out = make(1.0, clock)
    frames = [Frame(1000.5 + f.pts_seconds, f.pts_seconds, 64, 48, FACE) for f in stream(seconds, 30)]
    feed(pipe, frames, clock)
    pipe.close()
    assert [r.sec for r in out] == recorded
    assert all(r.bucket.frames > 0 for r in out)
    assert pipe.stats.received == len(frames)


def test_flush_then_more_frames_in_the_same_second_reemits_the_whole_second() -> None:
    clock = Clock()
    pipe, out = make(None, clock)
    frames = stream(1, 10)
    feed(pipe, frames[:4], clock)
    pipe.flush()  # e.g. the stream dropped
    pipe.new_segment()
    feed(pipe, [Frame(f.received, (f.pts_seconds or 0.0) - 0.4, 64, 48, f.luma) for f in frames[4:]], clock)
    pipe.close()
    assert [(r.sec, r.bucket.frames) for r in out] == [(0, 4), (0, 10)]
    assert out[0].bucket.frames == 4  # what was handed out is not changed afterwards


def test_a_second_behind_still_gets_an_analysis_and_counts_received_frames() -> None:
    clock = Clock()
    pipe, out = make(5.0, clock)
    frames = stream(2, 30)
    feed(pipe, frames[:30], clock)
    feed(pipe, frames[30:], clock, lag=1.0)  # the analysis falls 1 s behind in the second second
    pipe.close()
    # every second with frames has an analysis; the stale frames passed over are counted
    assert [(r.sec, r.bucket.received) for r in out] == [(0, 30), (1, 30)]
    assert out[0].bucket.frames == 5 and out[1].bucket.frames >= 1 and out[1].passed_over > 0
    assert all(r.bucket.faces for r in out)  # a face was seen in both: the late second is not "nobody there"


def test_frames_skipped_by_the_ingest_count_as_received() -> None:
    @dataclass
    class SkippingFrame(Frame):
        skipped: int = 0

    clock = Clock()
    pipe, out = make(5.0, clock)
    frames: list[Frame] = [SkippingFrame(f.received, f.pts_seconds, 64, 48, f.luma, skipped=29 if i == 30 else 0)
                           for i, f in enumerate(stream(2, 30))]
    feed(pipe, frames[:31], clock)
    pipe.close()
    assert [(r.sec, r.bucket.received) for r in out] == [(0, 30), (1, 30)]
    assert pipe.stats.skipped == 29 and pipe.stats.received == 60


def test_load_monitor_degrades_and_recovers_with_hysteresis() -> None:
    monitor = LoadMonitor(window=5.0)
    t = 0.0
    for _ in range(50):  # 5 analyses/s for 10 s
        monitor.frame(t, 0)
        monitor.analysed(t, 0.05)
        t += 0.2
    assert not monitor.assess(t, 5.0).degraded
    for _ in range(10):  # 1 analysis/s, 1.5 s lag
        monitor.frame(t, 5)
        monitor.analysed(t, 1.5)
        t += 1.0
    load = monitor.assess(t, 5.0)
    assert load.degraded and load.analyses_per_second < 4 and load.lag_p95 > 1.0 and load.skipped > 0
    for _ in range(10):  # 2 s of keeping up again: still degraded (the window still holds the bad part)
        monitor.frame(t, 0)
        monitor.analysed(t, 0.05)
        t += 0.2
    assert monitor.assess(t, 5.0).degraded
    for _ in range(30):
        monitor.frame(t, 0)
        monitor.analysed(t, 0.05)
        t += 0.2
    assert not monitor.assess(t, 5.0).degraded


def test_a_degraded_session_discovers_less_often_until_it_recovers() -> None:
    clock = Clock()
    pipe, _ = make(5.0, clock)
    finder = pipe.analyzer.finder
    normal = finder.discovery_interval
    t = 0.0
    for _ in range(10):  # 1 analysis/s, 1.5 s behind
        pipe.monitor.frame(t, 5)
        pipe.monitor.analysed(t, 1.5)
        t += 1.0
    clock.now = t
    assert pipe.load().degraded
    assert finder.discovery_interval == normal * PRESSURE_DISCOVERY_FACTOR and pipe.analyzer.under_pressure
    assert finder.spread_discovery
    for _ in range(60):  # keeping up again
        pipe.monitor.frame(t, 0)
        pipe.monitor.analysed(t, 0.05)
        t += 0.2
    clock.now = t
    assert not pipe.load().degraded
    assert pipe.analyzer.under_pressure  # relieved a while longer: it only just keeps up
    for _ in range(100):  # still keeping up, past the hold
        pipe.monitor.frame(t, 0)
        pipe.monitor.analysed(t, 0.05)
        t += 0.2
    clock.now = t
    assert not pipe.load().degraded
    assert finder.discovery_interval == normal and not pipe.analyzer.under_pressure
    assert not finder.spread_discovery


def _catch_up_run(
    catch: CatchUp[int],
    packets: list[tuple[int, float]],
    reorder: int = 0,
    pictures: list[float] | None = None,
    keyframes: set[int] | None = None,
) -> tuple[list[int], int]:
    """Feed 30 fps packets ``(index, read time)`` to ``catch`` as :func:`analyzer.ingest.frames` does, keyframes
    every 30 (or ``keyframes``); the decoded indices and how many were let go undecoded (the read times at which
    a picture came out go to ``pictures``). The decoder gives a picture out ``reorder`` decoded packets after its
    own (B-frame reordering)."""
    decoded: list[int] = []
    pending: list[int] = []  # decoded, picture not out yet
    dropped = 0
    for i, now in packets:
        keyframe = i % 30 == 0 if keyframes is None else i in keyframes
        run = catch.take(i, i / 30, keyframe, now)
        assert run == sorted(run) and (not run or run[-1] == i)  # in order, ending with the packet read
        assert not decoded or not run or run[0] > decoded[-1]  # nothing decoded twice
        for k, packet in enumerate(run):
            decoded.append(packet)
            pending.append(packet)
            if len(pending) > reorder:
                del pending[0]
                dropped += catch.dropped()[0]
                catch.decoded(now)
                if pictures is not None:
                    pictures.append(now)
                if len(run) > 1:
                    catch.hold(run[k + 1 :])  # a replay: one picture is enough
                    break
    return decoded, dropped


def _chain_intact(decoded: list[int], keyframes: set[int] | None = None) -> bool:
    """Every decoded packet follows the one decoded before it or is a keyframe: the decoder's references hold."""
    return all(
        (i % 30 == 0 if keyframes is None else i in keyframes) or i == before + 1
        for before, i in itertools.pairwise(decoded)
    )


def test_catch_up_skips_to_a_keyframe_near_the_live_edge() -> None:
    catch: CatchUp[int] = CatchUp(max_lag=0.75)
    # live: 30 fps, keyframe every 30 packets, read in time
    assert _catch_up_run(catch, [(i, 10 + i / 30) for i in range(60)]) == (list(range(60)), 0)
    # then the worker stalls 3 s; the backlog is read at once (3 s of packets in 10 ms), then live again
    backlog = [(i, 15.0 + (i - 60) / 9000) for i in range(60, 150)]
    live = [(i, 15.0 + (i - 150) / 30) for i in range(150, 200)]
    decoded, dropped = _catch_up_run(catch, backlog + live)
    # the backlog is drained undecoded but for its first packet (no picture for 3 s: a picture at once)
    assert [i for i in decoded if i < 150] == [60]
    # decoding restarts at the first keyframe near the live edge and stays on once caught up
    assert [i for i in decoded if i >= 150] == list(range(150, 200))
    assert _chain_intact(decoded)
    assert dropped == 89  # every packet read is decoded or counted as let go


def test_catch_up_waiting_at_the_live_edge_for_a_keyframe_replays_what_it_held() -> None:
    """A skip that drained its backlog waits for a keyframe near the live edge (here 1.9 s): meanwhile the held
    packets are decoded one at a time whenever no picture came out for the picture spacing, so a picture comes
    out at least every ~0.5 s, never a second without one."""
    catch: CatchUp[int] = CatchUp(max_lag=0.75)
    keyframes = {0, 60, 150}
    packets = [(i, 10 + i / 30) for i in range(51)]
    # the worker stalls 1.4 s after packet 50; the backlog (with the keyframe 60) is read at once, then live
    packets += [(i, 13.1 + (i - 51) / 9000) for i in range(51, 94)]
    packets += [(i, 10 + i / 30) for i in range(94, 171)]
    pictures: list[float] = []
    decoded, dropped = _catch_up_run(catch, packets, pictures=pictures, keyframes=keyframes)
    after = [t for t in pictures if t >= 13.1]  # from the first read after the stall
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert after[0] == 13.1 and max(gaps) < 0.55, gaps  # the picture spacing, not the wait for keyframe 150
    assert _chain_intact(decoded, keyframes)
    # a replay decodes one packet (the next of the chain from the late keyframe); from the keyframe near the edge
    # decoding goes on
    assert [i for i in decoded if 50 < i < 150] == [51, 60, 61, 62]
    assert set(range(150, 171)) <= set(decoded)
    assert dropped + len(decoded) == 171  # every packet read is decoded or counted as let go


def test_catch_up_holds_a_bounded_chain_and_starts_a_new_one_where_decoding_goes_on() -> None:
    """Past ``max_held`` the chain is broken: nothing is replayed until a keyframe starts a new one; once decoding
    went on (a keyframe near the live edge), the next skip holds a chain from the decoder again."""
    catch: CatchUp[int] = CatchUp(max_lag=0.75, max_held=5)
    _catch_up_run(catch, [(i, 10 + i / 30) for i in range(31)])
    # a source whose packets all come 1.5 s late: more than 5 packets after each keyframe break the chain, so
    # only the keyframes are replayed
    decoded, dropped = _catch_up_run(catch, [(i, 10 + i / 30 + 1.5) for i in range(60, 100)])
    assert decoded == [60, 90] and dropped == 29  # 61-89; 91-99 are reported with the next picture
    # its backlog arrives at once and the keyframe 120 is near the live edge: decoding goes on from there
    packets = [(i, 14.3 + (i - 100) / 9000) for i in range(100, 130)] + [(i, 10 + i / 30) for i in range(130, 151)]
    decoded, dropped = _catch_up_run(catch, packets)
    assert decoded == list(range(120, 151)) and dropped == 9 + 20
    # a stall: the skip holds a chain from the decoder again, and its first packet is replayed at once
    decoded, _ = _catch_up_run(catch, [(i, 16.5 + (i - 151) / 9000) for i in range(151, 166)])
    assert decoded == [151]


def test_catch_up_decodes_a_late_keyframe_until_its_picture_is_out() -> None:
    """A decoder that reorders B-frames gives a picture out a packet late: a replay decodes on until its picture is
    out, then the skip goes on; a source that stays 1.5 s late still gives a picture every ~0.5 s."""
    catch: CatchUp[int] = CatchUp(max_lag=0.75)
    _catch_up_run(catch, [(i, 10 + i / 30) for i in range(60)], reorder=1)
    # from here on the worker reads every packet 1.5 s late (a source that stalled, nothing newer to skip to)
    pictures: list[float] = []
    decoded, _ = _catch_up_run(catch, [(i, 10 + i / 30 + 1.5) for i in range(60, 150)], reorder=1, pictures=pictures)
    assert _chain_intact(decoded)
    # the late keyframe and the packet that gets its picture out of the decoder, then a replay every ~0.5 s
    assert decoded[:2] == [60, 61] and pictures[0] == 10 + 61 / 30 + 1.5
    gaps = [b - a for a, b in itertools.pairwise(pictures)]
    assert len(pictures) >= 5 and max(gaps) < 0.55, gaps
    # a packet or two per picture, not every packet: a worker that stays behind decodes little
    assert len(decoded) <= 2 * len(pictures) + 1, decoded


def test_detail_per_track() -> None:
    clock = Clock()
    pipe, out = make(5.0, clock, detail=True)
    feed(pipe, stream(1, 30), clock)
    pipe.close()
    (face,) = out[0].faces_json()
    assert face["track"] == "f1" and face["box"] == [10, 10, 30, 30] and face["emotion"] == "happiness"
    assert face["scores"]["happiness"] == pytest.approx(0.88)
    assert interval_stats([out[0].bucket])["emotions"]["happiness"]["people"] == 1


def test_flush_from_another_thread_while_frames_flow() -> None:
    clock = Clock()
    pipe, out = make(None, clock)
    frames = stream(20, 30)
    stop = threading.Event()

    def control() -> None:
        while not stop.wait(0.0002):  # as often as a frame arrives (a busy loop only starves the feed of the GIL)
            pipe.flush()

    thread = threading.Thread(target=control)
    thread.start()
    try:
        feed(pipe, frames, clock)
    finally:
        stop.set()
        thread.join()
    pipe.close()
    assert len(out) > 2 * 20  # flushes came between frames: seconds were emitted, reopened and emitted again
    # every second's last emission holds all its frames
    last: dict[int, int] = {}
    for result in out:
        last[result.sec] = result.bucket.frames
    assert last == dict.fromkeys(range(20), 30)


# ------------------------------------------------------------------------------------- real models
@pytest.fixture(scope="module")
def real_analyzer(model_dir: Any) -> FrameAnalyzer:
    return FrameAnalyzer.from_model_dir(model_dir)


def astronaut_luma(width: int = 640, height: int = 360) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    rgb = data.astronaut().astype(np.float32)
    y = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.uint8)
    frame = np.full((height, width), 40, np.uint8)
    frame[:, 100:460] = resize(y, (360, 360), preserve_range=True).astype(np.uint8)  # the face: ~65 px
    return frame


def test_real_models_find_a_happy_astronaut_with_one_track(real_analyzer: FrameAnalyzer) -> None:
    real_analyzer.tracker.reset()
    out: list[SecondResult] = []
    pipe = Pipeline(real_analyzer, out.append, origin=0.0, analysis_fps=5.0, detail=True, clock=lambda: 0.0)
    face = astronaut_luma()
    empty = np.full_like(face, 40)
    for i in range(60):  # 2 s of face, then 1 s of empty background, at 20 fps
        luma = face if i < 40 else empty
        pipe.process(Frame(i / 20, i / 20, 640, 360, luma))
    pipe.close()
    assert [r.sec for r in out] == [0, 1, 2]
    for result in out[:2]:
        stats = interval_stats([result.bucket])
        assert stats["detectedFaces"] == 1
        top = max(stats["emotions"], key=lambda e: stats["emotions"][e]["quantity"])
        assert top == "happiness"
        (face_json,) = result.faces_json()
        x0, y0, x1, y1 = face_json["box"]
        assert 100 <= x0 < x1 <= 460 and 0 <= y0 < y1 <= 360  # the face is inside the photo
    assert out[2].bucket.faces == {} and out[2].bucket.frames == 5
    assert {t for r in out for t in r.bucket.faces} == {"f1"}


def test_seconds_whose_frames_were_all_skipped_are_recorded_as_not_analysed() -> None:
    @dataclass
    class SkippingFrame(Frame):
        skipped: int = 0
        skipped_from: float | None = None

    clock = Clock()
    pipe, out = make(5.0, clock)
    first = stream(1, 30)
    feed(pipe, first, clock)
    # then 60 frames (seconds 1 and 2) were skipped undecoded; the next decoded frame is read in second 3
    resumed = SkippingFrame(1003.0, 3.0, 64, 48, FACE, skipped=60, skipped_from=1001.0)
    feed(pipe, [resumed], clock)
    pipe.close()
    seconds = [(r.sec, r.bucket.received, r.bucket.frames) for r in out]
    assert seconds == [(0, 30, 5), (1, 20, 0), (2, 20, 0), (3, 21, 1)]
    assert pipe.stats.received == 91 and pipe.stats.skipped == 60
