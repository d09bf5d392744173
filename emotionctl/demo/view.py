"""What the demo shows in the terminal: pure formatting functions, and :class:`Screen` (lines plus, on a TTY,
one status line rewritten in place)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from emotion_shared.emotions import EMOTIONS


def dominant(stats: Mapping[str, Mapping[str, float]]) -> tuple[str, float] | None:
    """The emotion with the largest quantity (people × intensity) and its intensity; None without a face."""
    best = max(EMOTIONS, key=lambda e: (float(stats.get(e, {}).get("quantity", 0)), -EMOTIONS.index(e)))
    if float(stats.get(best, {}).get("quantity", 0)) <= 0:
        return None
    return best, float(stats[best].get("intensity", 0))


def faces(stats: Mapping[str, Mapping[str, float]]) -> int:
    """Faces seen in the period, as far as the per-emotion ``people`` tell (each face has a dominant emotion)."""
    return max((int(stats.get(e, {}).get("people", 0)) for e in EMOTIONS), default=0)


def bar(fraction: float, width: int = 10) -> str:
    """``fraction`` (0–1) as a bar of ``width`` cells, in eighths."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, rest = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[rest] if rest else ""
    return ("█" * full + partial).ljust(width, "·")


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def second_line(second: int, stats: Mapping[str, Mapping[str, float]]) -> str:
    """One live line: session time, faces, the dominant emotion and its intensity, the runner-up."""
    top = dominant(stats)
    if top is None:
        return f"  {clock(second):>5}  {0:>5}   {'-':<10}  {'':10}        no face in view"
    name, intensity = top
    others = sorted(
        ((e, float(stats[e].get("quantity", 0))) for e in EMOTIONS if e != name and e in stats),
        key=lambda item: -item[1],
    )
    runner_up = f"   then {others[0][0]} {float(stats[others[0][0]].get('intensity', 0)):.2f}" if (
        others and others[0][1] > 0) else ""
    return f"  {clock(second):>5}  {faces(stats):>5}   {name:<10}  {bar(intensity)} {intensity:4.2f}{runner_up}"


LIVE_HEADER = f"  {'time':>5}  {'faces':>5}   {'dominant':<10}  {'intensity':<15}"


def totals_table(totals: Mapping[str, int]) -> list[str]:
    """One bar per emotion that was dominant at least once, largest first; the others on one line."""
    counts = {e: int(totals.get(e, 0)) for e in EMOTIONS}
    top = max(counts.values(), default=0)
    seen = sorted((e for e in EMOTIONS if counts[e] > 0), key=lambda e: (-counts[e], EMOTIONS.index(e)))
    lines = [f"  {e:<10} {bar(counts[e] / top, 30)} {counts[e]:>6}" for e in seen]
    never = [e for e in EMOTIONS if counts[e] == 0]
    if never:
        lines.append(f"  {'never':<10} {', '.join(never)}")
    return lines


SHORT = {"anger": "anger", "disgust": "disgust", "fear": "fear", "happiness": "happy", "sadness": "sad",
         "surprise": "surprise", "neutral": "neutral"}


def timeline_table(timeline: Sequence[Mapping[str, Any]]) -> list[str]:
    if not timeline:
        return ["  (no interval with a face)"]
    header = f"  {'interval':<11} {'faces':>5}  {'dominant':<10}" + "".join(f"{SHORT[e]:>9}" for e in EMOTIONS)
    lines = [header]
    for entry in timeline:
        stats = entry.get("emotions", {})
        top = dominant(stats)
        cells = []
        for emotion in EMOTIONS:
            s = stats.get(emotion, {})
            cells.append(f"{float(s.get('intensity', 0)):9.2f}" if int(s.get("people", 0)) > 0 else f"{'·':>9}")
        interval = f"{clock(entry['start'])}–{clock(entry['end'])}"
        lines.append(f"  {interval:<11} {int(entry.get('detectedFaces', 0)):>5}  {(top[0] if top else '-'):<10}"
                     + "".join(cells))
    return lines


class Screen:
    """The terminal: permanent lines, and on a TTY one status line rewritten in place."""

    SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._status = ""
        self._spin = 0

    def line(self, text: str = "") -> None:
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    def status(self, text: str) -> None:
        """A transient status: rewritten in place on a TTY; elsewhere printed once per change."""
        if not self.tty:
            if text != self._status:
                self.out.write(f"  … {text}\n")
                self.out.flush()
            self._status = text
            return
        self._spin = (self._spin + 1) % len(self.SPINNER)
        self._status = text
        self.out.write(f"\r\x1b[K  {self.SPINNER[self._spin]} {text}")
        self.out.flush()

    def _clear(self) -> None:
        if self.tty and self._status:
            self.out.write("\r\x1b[K")
        self._status = ""


