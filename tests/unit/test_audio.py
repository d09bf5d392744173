"""The speech pieces: the segment data model and timeline (pure), the streaming segmenter (with a stand-in
voice-activity function: a unit test of the segmentation logic), and the real models on espeak-ng speech
(Silero VAD + Whisper tiny.en + VADER, built by `emotionctl models build`), also with no network at all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from analyzer.audio import WINDOW, Segmenter, SegmenterOptions
from analyzer.ingest import AUDIO_RATE
from emotion_shared.audio import AUDIO_KEY_BASE, Segment, label_of, timeline
from emotion_shared.dynamo import deserialize, serialize
from emotion_shared.emotions import EMOTION_KEY_LIMIT

POS = {"positive": 0.7, "neutral": 0.3, "negative": 0.0, "compound": 0.9}
NEG = {"positive": 0.0, "neutral": 0.4, "negative": 0.6, "compound": -0.8}
NEU = {"positive": 0.0, "neutral": 1.0, "negative": 0.0, "compound": 0.0}


def test_labels_follow_vaders_thresholds() -> None:
    assert label_of(0.05) == "positive" and label_of(-0.05) == "negative" and label_of(0.049) == "neutral"


def test_segment_item_round_trip_and_key_range() -> None:
    seg = Segment(12.3456, 15.5, "hello there", POS)
    item = deserialize(serialize(seg.to_item("s" * 24, ttl=99)))
    assert item["sec"] == AUDIO_KEY_BASE + 12346 and item["sec"] >= EMOTION_KEY_LIMIT and item["ttl"] == 99
    back = Segment.from_item(item)
    assert (back.start, back.end, back.text, back.label) == (12.346, 15.5, "hello there", "positive")
    assert seg.view() == {"start": 12.346, "end": 15.5, "text": "hello there", "sentiment": "positive",
                          "scores": POS}


def test_timeline_shares_counts_and_boundaries() -> None:
    segments = [Segment(1, 4, "a", POS), Segment(8, 12, "b", NEG), Segment(31, 32, "c", NEU)]
    out = timeline(segments, 10)
    assert [(e["start"], e["end"], e["segments"]) for e in out] == [(0, 10, 2), (10, 20, 1), (30, 40, 1)]
    # 3 s positive + 2 s negative in [0, 10)
    assert out[0]["sentiments"] == {"positive": 0.6, "neutral": 0.0, "negative": 0.4}
    assert out[1]["sentiments"] == {"positive": 0.0, "neutral": 0.0, "negative": 1.0}
    assert out[2]["sentiments"]["neutral"] == 1.0
    clipped = timeline(segments, 5, start=2, end=9)
    assert [(e["start"], e["end"]) for e in clipped] == [(2, 7), (7, 9)]
    assert clipped[1]["sentiments"]["negative"] == 1.0
    assert timeline([], 60) == []
    with pytest.raises(ValueError):
        timeline(segments, 0)


def _energy(block: np.ndarray) -> np.ndarray:
    """Stand-in VAD: 'speech' where the window is loud (the real one is tested below)."""
    return (np.abs(block.reshape(-1, WINDOW)).mean(axis=1) > 0.05).astype(np.float32)


def _signal(pattern: list[tuple[float, bool]]) -> np.ndarray:
    rng = np.random.default_rng(0)
    parts = [(rng.uniform(-0.5, 0.5, int(s * AUDIO_RATE)) if loud else np.zeros(int(s * AUDIO_RATE)))
             for s, loud in pattern]
    return np.concatenate(parts).astype(np.float32)


def _push_in_chunks(seg: Segmenter, audio: np.ndarray, t0: float, chunk: int = 1024) -> list:
    spans = []
    for i in range(0, len(audio), chunk):
        spans += seg.push(audio[i : i + chunk], t0 + i / AUDIO_RATE)
    return spans


def test_segmenter_finds_each_utterance_with_its_times() -> None:
    audio = _signal([(1.0, False), (2.0, True), (1.0, False), (1.5, True), (2.0, False)])
    seg = Segmenter(_energy, SegmenterOptions(pad=0.1, min_silence=0.5))
    spans = _push_in_chunks(seg, audio, 100.0)
    assert len(spans) == 2 and seg.flush() == []
    (a, b) = spans
    assert a.start == pytest.approx(100.9, abs=0.05) and a.end == pytest.approx(103.1, abs=0.05)
    assert b.start == pytest.approx(103.9, abs=0.05) and b.end == pytest.approx(105.6, abs=0.05)
    assert len(a.samples) == pytest.approx((a.end - a.start) * AUDIO_RATE, abs=2)


def test_segmenter_cuts_long_speech_flushes_at_the_end_and_on_a_time_jump() -> None:
    seg = Segmenter(_energy, SegmenterOptions(max_speech=3.0, pad=0.0))
    spans = _push_in_chunks(seg, _signal([(7.0, True)]), 0.0)
    assert [round(s.end - s.start, 1) for s in spans] == [3.0, 3.0]
    rest = seg.flush()
    assert len(rest) == 1 and rest[0].end == pytest.approx(7.0, abs=0.05)
    # a reconnect: time jumps; the speech in progress ends where the audio ended
    seg.push(_signal([(1.0, True)]), 10.0)
    spans = seg.push(_signal([(0.5, False)]), 20.0)
    assert len(spans) == 1 and spans[0].end == pytest.approx(11.0, abs=0.05)


def test_segmenter_drops_clicks_and_keeps_memory_bounded() -> None:
    seg = Segmenter(_energy, SegmenterOptions())
    spans = _push_in_chunks(seg, _signal([(1.0, False), (0.064, True), (1.0, False)] * 3), 0.0)
    assert spans == []
    _push_in_chunks(seg, _signal([(60.0, False)]), 3.2)
    assert len(seg._buf) < AUDIO_RATE  # silence is not kept


# ------------------------------------------------------------------------- real models, real speech
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def _espeak(text: str, tmp_path) -> np.ndarray:
    import av

    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True, timeout=60)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    out = []
    with av.open(str(wav)) as container:
        for frame in container.decode(audio=0):
            out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    return np.concatenate(out).astype(np.float32)


@needs_espeak
def test_real_models_transcribe_and_score_espeak_speech(tmp_path) -> None:
    from analyzer.audio import SpeechAnalyzer

    from emotionctl.media.speech import word_error_rate

    analyzer = SpeechAnalyzer()
    happy = "I love this wonderful day, everything is great."
    sad = "This is terrible, I hate it and I feel awful."
    for text, label in ((happy, "positive"), (sad, "negative")):
        audio = np.concatenate([np.zeros(8000, np.float32), _espeak(text, tmp_path), np.zeros(16000, np.float32)])
        spans = Segmenter(analyzer.probabilities).push(audio, 0.0)
        spans += Segmenter(analyzer.probabilities).flush() if not spans else []
        assert spans, "the VAD found no speech"
        hyp = analyzer.transcribe(np.concatenate([s.samples for s in spans]))
        wer = word_error_rate([text], [hyp])
        print(f"{label}: WER {wer:.2f}")
        assert wer <= 0.35
        assert label_of(analyzer.sentiment(hyp)["compound"]) == label


@needs_espeak
def test_speech_models_load_and_run_with_no_network(tmp_path) -> None:
    """In a network namespace with no interface up (unshare -n): nothing can be downloaded, and it works."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("cannot create a network namespace here (needs root or user namespaces)")
    audio = _espeak("Good morning, I am very happy today.", tmp_path)
    np.save(tmp_path / "a.npy", audio)
    script = textwrap.dedent(f"""
        import socket, numpy as np
        try:
            socket.create_connection(("1.1.1.1", 443), timeout=2)
            raise SystemExit("the network is reachable")
        except OSError:
            pass
        from analyzer.audio import SpeechAnalyzer
        a = SpeechAnalyzer()
        print(a.transcribe(np.load({str(tmp_path / "a.npy")!r})))
    """)
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "happy" in proc.stdout.lower(), (proc.stdout, proc.stderr[-2000:])


class _SlowAnalyzer:
    """Stand-in models: every window is speech, and transcribing takes a while (a CPU-starved thread)."""

    def __init__(self, gate: threading.Event) -> None:
        self._gate = gate

    def probabilities(self, block: np.ndarray) -> np.ndarray:
        return np.ones(len(block) // WINDOW, np.float32)

    def transcribe(self, samples: np.ndarray) -> str:
        self._gate.wait(10)
        return "slow words"

    def sentiment(self, text: str) -> dict[str, float]:
        return dict(NEU)


def test_audio_thread_never_blocks_the_caller_skips_what_does_not_fit_and_says_so() -> None:
    from analyzer.audio import AudioThread
    from analyzer.ingest import AudioChunk

    gate = threading.Event()
    emitted: list[Segment] = []
    thread = AudioThread(emitted.append, origin=1000.0, analyzer_factory=lambda: _SlowAnalyzer(gate),  # type: ignore[arg-type,return-value]
                         max_queue_seconds=2.0, options=SegmenterOptions(max_speech=1.0, pad=0.0))
    second = np.full(AUDIO_RATE, 0.3, np.float32)
    for i in range(10):  # 10 s of speech offered at once while the thread is stuck on its first segment
        thread.offer(AudioChunk(1000.0 + i, second))
    # offer() never waited for the stuck thread (it would hang here otherwise)
    snapshot = thread.snapshot()
    assert snapshot["audioSkippedSeconds"] >= 6.0  # at most ~2 s queued + what the thread had taken
    gate.set()
    thread.close(10)
    assert emitted and all(s.text == "slow words" for s in emitted)
    assert emitted[0].start == pytest.approx(0.0, abs=0.05)  # session seconds from the origin
    assert thread.snapshot()["audioSegments"] == len(emitted)
