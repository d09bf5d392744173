#!/usr/bin/env python
"""bench/audio — what the speech analysis costs and how late its segments are.

    .venv/bin/python bench/audio.py [--sessions 2] [--offline-only]

Speech: espeak-ng sentences (three positive, three negative) muxed with the face clip
(`emotionctl.media.speech.make_speech_clip`, ~36 s, AAC 44.1 kHz stereo).

1. **Cost** (in this process, the worker's code): the clip's audio decoded and resampled to 16 kHz mono as the
   frame thread does (`analyzer.ingest`), then the audio thread's work — Silero VAD, Whisper tiny.en (int8,
   one thread), VADER — timed with the process CPU clock. Prints CPU seconds per second of audio (the share of
   a core at real time), the real-time factor (wall / audio), and the word error rate of the transcripts.
2. **Latency** (its own `emotionctl local up`, real RTMP, the real worker): for each sentence, from the
   moment its last sound was sent by the RTMP publisher (`RtmpSource(trace=True)`, FFmpeg's own send log) to
   the moment its segment is readable over REST (`GET …/audio/transcript`, polled every 50 ms) and received
   over the WebSocket (`session_audio_sentiment`). p50/p95 over every sentence of every session. The
   segmenter waits for 0.5 s of silence before it closes a segment: that wait is part of the figure.

Numbers are wall-clock on whatever machine runs this (a shared 2-core box here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from session_flow import local_stack, percentile, wait_for  # bench/session_flow.py: the script's own folder

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ 1. cost
def decode_16k(clip: Path) -> tuple[np.ndarray, float]:
    """The clip's audio through ingest's decoder (16 kHz mono chunks); returns the samples and the CPU time."""
    import av
    from analyzer import ingest

    chunks: list[np.ndarray] = []
    started = time.process_time()
    with av.open(str(clip)) as container:
        decoder = ingest._AudioDecoder(container.streams.audio[0], lambda c: chunks.append(c.samples))
        for packet in container.demux(container.streams.audio[0]):
            if packet.size:
                decoder.packet(packet)
    return np.concatenate(chunks), time.process_time() - started


def cost(clip: Path, script: list[Any]) -> dict[str, float]:
    from analyzer.audio import Segmenter, SpeechAnalyzer
    from analyzer.ingest import AUDIO_RATE

    from emotionctl.media.speech import word_error_rate

    audio, decode_cpu = decode_16k(clip)
    seconds = len(audio) / AUDIO_RATE
    t = time.process_time()
    analyzer = SpeechAnalyzer()
    load_cpu = time.process_time() - t
    cpu: dict[str, float] = {"vad": 0.0, "asr": 0.0, "sentiment": 0.0}
    texts: list[str] = []

    def vad(block: np.ndarray) -> np.ndarray:
        t0 = time.process_time()
        out = analyzer.probabilities(block)
        cpu["vad"] += time.process_time() - t0
        return out

    segmenter = Segmenter(vad)
    wall0 = time.perf_counter()
    chunk = 1024
    spans = []
    for i in range(0, len(audio), chunk):
        spans += segmenter.push(audio[i : i + chunk], i / AUDIO_RATE)
    spans += segmenter.flush()
    for span in spans:
        t0 = time.process_time()
        text = analyzer.transcribe(span.samples)
        cpu["asr"] += time.process_time() - t0
        t0 = time.process_time()
        analyzer.sentiment(text)
        cpu["sentiment"] += time.process_time() - t0
        texts.append(text)
    wall = time.perf_counter() - wall0
    total = decode_cpu + sum(cpu.values())
    wer = word_error_rate([u.text for u in script], texts)
    print(f"audio {seconds:.1f} s, {len(spans)} segments for {len(script)} sentences; "
          f"model load {load_cpu:.2f} s CPU")
    print(f"CPU per second of audio: {total / seconds:.3f} core-s/s  (decode+resample {decode_cpu / seconds:.4f}, "
          f"VAD {cpu['vad'] / seconds:.4f}, Whisper {cpu['asr'] / seconds:.4f}, "
          f"VADER {cpu['sentiment'] / seconds:.5f})")
    print(f"real-time factor (wall / audio, one thread): {wall / seconds:.3f}")
    print(f"word error rate (Whisper tiny.en, espeak-ng speech): {wer:.3f}")
    compare_pocketsphinx(spans, script, seconds)
    return {"cpu_per_audio_second": total / seconds, "rtf": wall / seconds, "wer": wer}


def compare_pocketsphinx(spans: list[Any], script: list[Any], seconds: float) -> None:
    """The alternative the issue names, on the same segments, when ``pocketsphinx`` happens to be importable
    (it is no dependency: ``pip install --target DIR pocketsphinx`` and put DIR on PYTHONPATH to compare)."""
    try:
        from pocketsphinx import Decoder
    except ImportError:
        print("pocketsphinx: not installed (optional comparison skipped)")
        return
    from emotionctl.media.speech import word_error_rate

    started = time.process_time()
    decoder = Decoder(samprate=16000, loglevel="FATAL")
    texts = []
    for span in spans:
        decoder.start_utt()
        decoder.process_raw((np.clip(span.samples, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
        decoder.end_utt()
        texts.append(decoder.hyp().hypstr if decoder.hyp() else "")
    cpu = time.process_time() - started
    wer = word_error_rate([u.text for u in script], texts)
    print(f"pocketsphinx (bundled en-us model): CPU per second of audio {cpu / seconds:.3f}, word error rate {wer:.3f}")


# ------------------------------------------------------------------ 2. latency
def _ws_listener(stack: Any, session_id: str, received: list[tuple[float, dict[str, Any]]],
                 ready: threading.Event, stop: threading.Event) -> None:
    import aiohttp

    async def run() -> None:
        url = stack.url.replace("http", "ws", 1) + "/ws/v1"
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"id": 1, "path": "auth:token", "body": {"token": stack.token}}))
            await ws.receive(timeout=10)
            await ws.send_str(json.dumps({"id": 2, "path": "channels:subscribe",
                                          "body": {"channel": "session_audio_sentiment", "key": session_id}}))
            await ws.receive(timeout=10)
            ready.set()
            last_ping = time.monotonic()
            while not stop.is_set():
                try:
                    message = await ws.receive(timeout=0.5)
                except TimeoutError:
                    message = None
                if message is not None and message.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(message.data)
                    if isinstance(data, list) and data[2] == "sas":
                        received.append((time.time(), data[3][0]))
                elif message is not None and message.type != aiohttp.WSMsgType.TEXT:
                    return
                if time.monotonic() - last_ping > 20:
                    await ws.send_str(json.dumps({"id": 3, "path": "ping"}))
                    last_ping = time.monotonic()

    asyncio.run(run())


def one_session(stack: Any, clip: Path, script: list[Any], index: int) -> list[tuple[float, float]]:
    """(REST latency, WebSocket latency) per sentence, seconds."""
    from emotionctl.media import RtmpSource

    fps = 15
    with RtmpSource(clip, loop=False, trace=True, max_lifetime=300) as source:
        created = stack.call("POST", "/v1/sessions", json={"name": f"bench-audio-{index}", "streamUri": source.url})
        created.raise_for_status()
        session_id = created.json()["_id"]
        received: list[tuple[float, dict[str, Any]]] = []
        ready, stop = threading.Event(), threading.Event()
        listener = threading.Thread(target=_ws_listener, args=(stack, session_id, received, ready, stop), daemon=True)
        listener.start()
        ready.wait(30)
        seen_rest: dict[float, float] = {}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            body = stack.call("GET", f"/v1/sessions/{session_id}/audio/transcript").json()
            now = time.time()
            for seg in body.get("segments", []):
                seen_rest.setdefault(seg["start"], now)
            if stack.call("GET", f"/v1/sessions/{session_id}").json()["state"] != "active":
                break
            time.sleep(0.05)
        time.sleep(3)  # the publisher's last events
        stop.set()
        segments = stack.call("GET", f"/v1/sessions/{session_id}/audio/transcript").json()["segments"]
        out: list[tuple[float, float]] = []
        if not segments:
            print(f"  session {index}: no segment")
            return out
        offset = segments[0]["start"] - script[0].start
        for utterance in script:
            lo, hi = utterance.start + offset, utterance.end + offset
            overlapping = [s for s in segments if min(hi, s["end"]) > max(lo, s["start"])]
            if not overlapping:
                print(f"  session {index}: no segment for {utterance.text!r}")
                continue
            seg = max(overlapping, key=lambda s: s["end"])
            # the last video frame at or after the sentence's end, as sent by the publisher
            k = math.ceil(utterance.end * fps)
            sent = None
            while sent is None and k < utterance.end * fps + fps:
                sent = source.sent_at(k / fps)
                k += 1
            ws_at = next((t for t, s in received if s["start"] == seg["start"]), None)
            if sent is None or seg["start"] not in seen_rest or ws_at is None:
                print(f"  session {index}: incomplete timing for {utterance.text!r}")
                continue
            out.append((seen_rest[seg["start"]] - sent, ws_at - sent))
        stack.call("DELETE", f"/v1/sessions/{session_id}")
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2, help="live sessions for the latency figures")
    parser.add_argument("--offline-only", action="store_true", help="only the cost part (no local stack)")
    args = parser.parse_args()
    from emotionctl.media.speech import make_speech_clip

    clip, script = make_speech_clip()
    print("== cost (the worker's audio code, in this process)")
    cost(clip, script)
    if args.offline_only:
        return 0
    print(f"\n== latency: speech ends → segment readable over REST / received over WebSocket "
          f"({args.sessions} sessions)")
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-audio-") as tmp, local_stack(Path(tmp)) as stack:
        wait_for(lambda: stack.call("GET", "/health").status_code == 200, 60, "the stack's health")
        for i in range(args.sessions):
            got = one_session(stack, clip, script, i)
            samples += got
            print(f"  session {i}: {len(got)} sentences timed")
    if not samples:
        print("no latency sample")
        return 1
    rest = [r for r, _ in samples]
    ws = [w for _, w in samples]
    print(f"REST      p50 {percentile(rest, 50):.2f} s  p95 {percentile(rest, 95):.2f} s  (n={len(rest)})")
    print(f"WebSocket p50 {percentile(ws, 50):.2f} s  p95 {percentile(ws, 95):.2f} s  (n={len(ws)})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    code = main()
    sys.stdout.flush()
    os._exit(code)  # CTranslate2's threads must not be joined at interpreter exit
