"""Real speech for tests and benchmarks: sentences spoken by Debian's ``espeak-ng``, muxed with a face clip.

:func:`make_speech_clip` returns an H.264 + AAC mp4 (cached by its parameters next to the face clips) and the
script with each sentence's start and end in the clip, for :class:`~emotionctl.media.RtmpSource` to serve live.
:func:`word_error_rate` compares a transcript with the script (jiwer, after lower-casing and dropping
punctuation).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .clips import default_cache_dir, make_face_clip
from .live_sources import require_tools

SPEECH_FORMAT = 2  # bump when the synthesis or the muxing changes

POSITIVE_SENTENCES = (
    "I love this wonderful day, everything is great.",
    "Thank you so much, this is a fantastic and happy surprise.",
    "What a beautiful result, I am really proud and delighted.",
)
NEGATIVE_SENTENCES = (
    "This is terrible, I hate it and I feel awful.",
    "What a horrible disaster, everyone is angry and sad.",
    "I am upset and disappointed, this is the worst failure.",
)


@dataclass(frozen=True)
class Utterance:
    """One sentence of the script: where it is spoken in the clip (seconds) and what is expected of it."""

    start: float
    end: float
    text: str
    sentiment: str


def _espeak(text: str, path: Path, speed: int) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed), "-w", str(path), text], check=True,
                   capture_output=True, timeout=60)
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise RuntimeError(f"espeak-ng wrote an unexpected WAV: {w.getparams()}")
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    if rate != ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng wrote {rate} Hz, expected {ESPEAK_RATE}")
    return data


ESPEAK_RATE = 22050


def make_speech_clip(
    script: Sequence[tuple[str, str]] | None = None,
    *,
    lead: float = 2.0,
    pause: float = 1.5,
    tail: float = 2.0,
    speed: int = 150,
    size: tuple[int, int] = (320, 240),
    fps: int = 15,
    directory: Path | None = None,
) -> tuple[Path, list[Utterance]]:
    """A clip of the smiling face while ``script`` (``(sentiment, sentence)`` pairs; default: the positive
    sentences, then the negative ones) is spoken: ``lead`` seconds of silence, each sentence followed by
    ``pause`` seconds, ``tail`` at the end. Audio: AAC 44.1 kHz stereo (the usual live-stream format)."""
    require_tools("ffmpeg", "espeak-ng")
    if script is None:
        script = [("positive", s) for s in POSITIVE_SENTENCES] + [("negative", s) for s in NEGATIVE_SENTENCES]
    params = {"format": SPEECH_FORMAT, "script": list(script), "lead": lead, "pause": pause, "tail": tail,
              "speed": speed, "size": list(size), "fps": fps}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(directory) if directory is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    clip, meta = folder / f"speech-{digest}.mp4", folder / f"speech-{digest}.json"
    if clip.is_file() and meta.is_file():
        return clip, [Utterance(**u) for u in json.loads(meta.read_text())]

    with tempfile.TemporaryDirectory(prefix="speech-") as tmp:
        parts = [np.zeros(int(lead * ESPEAK_RATE), np.int16)]
        t = lead
        script_out: list[Utterance] = []
        for i, (sentiment, text) in enumerate(script):
            voice = _espeak(text, Path(tmp) / f"s{i}.wav", speed)
            # espeak-ng pads its output with a little silence: the utterance is where the signal is
            loud = np.flatnonzero(np.abs(voice.astype(np.int32)) > 300)
            first, last = (int(loud[0]), int(loud[-1])) if loud.size else (0, len(voice))
            script_out.append(Utterance(round(t + first / ESPEAK_RATE, 3), round(t + last / ESPEAK_RATE, 3),
                                        text, sentiment))
            parts += [voice, np.zeros(int(pause * ESPEAK_RATE), np.int16)]
            t += len(voice) / ESPEAK_RATE + pause
        parts.append(np.zeros(int(tail * ESPEAK_RATE), np.int16))
        audio = np.concatenate(parts)
        wav = Path(tmp) / "speech.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(ESPEAK_RATE)
            w.writeframes(audio.tobytes())
        seconds = len(audio) / ESPEAK_RATE
        # the face clip's own H.264 (live-stream settings: no B-frames, a keyframe a second), looped as is
        face = make_face_clip(size[0], size[1], fps=fps, segments=(("face", 4),))
        out = Path(tmp) / "clip.mp4"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(face), "-i", str(wav),
             "-map", "0:v:0", "-map", "1:a:0", "-t", f"{seconds:.3f}", "-c:v", "copy",
             "-c:a", "aac", "-ar", "44100", "-ac", "2", "-b:a", "96k",
             "-movflags", "+faststart", str(out)],
            check=True, capture_output=True, timeout=300,
        )
        os.replace(out, clip)
        clip.chmod(0o644)
    meta.write_text(json.dumps([asdict(u) for u in script_out]))
    return clip, script_out


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def word_error_rate(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """WER of the concatenated hypothesis against the concatenated reference (jiwer)."""
    import jiwer

    return float(jiwer.wer(normalise(" ".join(reference)), normalise(" ".join(hypothesis))))
