"""Live stream input with PyAV: open safely, describe, and yield decoded frames' luma planes.

Facts this module relies on (measured with PyAV 18.1 / FFmpeg 8.1):

- ``av.open(..., timeout=(open_s, read_s))`` bounds both the open and every stall between packets, for every
  protocol. Protocol options are traps: for rtmp the option ``timeout`` means *listen*; so none is passed.
- ``analyzeduration=0`` + a small ``probesize`` open a live stream in well under a second and the first frames
  are fresh; width/height/fps are still known right after the open.
- RTMP publisher gone: ``OSError(EIO)`` within milliseconds; RTSP: demux simply ends; frozen peer: the read
  timeout. All of them are :class:`StreamEnded` here.
- Never close a container from another thread while it is blocked in demux: the reader checks ``stop``
  between packets and the read timeout bounds the wait.
"""

from __future__ import annotations

import errno
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from .liveedge import LiveEdge

# Stream resolution rule: at most 1080p, either orientation.
MAX_LONG_SIDE = 1920
MAX_SHORT_SIDE = 1080

DEFAULT_TIMEOUT = (10.0, 5.0)
_LUMA_FORMATS = frozenset({"yuv420p", "yuvj420p", "nv12", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv21"})


class IngestError(Exception):
    """Base class of every stream input failure."""


class StreamUnreachable(IngestError):
    """The stream could not be opened (refused, timed out, not found, bad address)."""


class StreamEnded(IngestError):
    """An open stream ended or stalled. ``cause``: ``"eof"`` (the demuxer reached the end: RTSP server gone, a
    finite stream over), ``"dropped"`` (the connection failed: RTMP publisher gone → EIO, reset) or
    ``"stalled"`` (no packet within the read timeout: a frozen peer)."""

    def __init__(self, message: str, cause: str = "eof") -> None:
        super().__init__(message)
        self.cause = cause


class ResolutionExceeded(IngestError):
    """The stream is larger than 1080p (see :func:`resolution_allowed`); ``width``/``height`` as seen."""

    def __init__(self, message: str, width: int = 0, height: int = 0) -> None:
        super().__init__(message)
        self.width = width
        self.height = height


class UnsupportedStream(IngestError):
    """The stream has no decodable video."""


def resolution_allowed(width: int, height: int) -> bool:
    """True for anything that fits 1920x1080 in either orientation: long side ≤ 1920 and short side ≤ 1080
    (which also bounds the pixel count to 1920*1080). 1080x1920 portrait passes; 2560x1080, 1920x1200 and
    1088x1088 do not (the last two are short-side violations)."""
    return max(width, height) <= MAX_LONG_SIDE and min(width, height) <= MAX_SHORT_SIDE


def check_resolution(width: int, height: int) -> None:
    if not resolution_allowed(width, height):
        raise ResolutionExceeded(f"stream resolution {width}x{height} is above the 1080p maximum", width, height)


def _options(uri: str) -> dict[str, str]:
    # No ``fflags=nobuffer``: it discards the keyframe read while opening, so the first frame would only come
    # with the next keyframe (+1-2 s) — and it does not lower the steady-state latency.
    options = {"analyzeduration": "0", "probesize": "32768"}
    if uri.lower().startswith("rtsp://"):
        options["rtsp_transport"] = "tcp"
    return options


def open_stream(uri: str, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> Any:
    """Open a live stream for decoding; checks that it has video within the resolution rule."""
    try:
        container = av.open(uri, mode="r", options=_options(uri), timeout=(float(timeout[0]), float(timeout[1])))
    except av.error.ExitError:  # PyAV's open timeout interrupted the connect/handshake/probe
        raise StreamUnreachable(f"no answer within the open timeout ({float(timeout[0]):g} s)") from None
    except (av.error.FFmpegError, OSError) as exc:
        raise StreamUnreachable(f"cannot open stream: {_describe(exc)}") from None
    try:
        if not container.streams.video:
            raise UnsupportedStream("the stream has no video track")
        ctx = container.streams.video[0].codec_context
        if ctx.width and ctx.height:
            check_resolution(int(ctx.width), int(ctx.height))
    except IngestError:
        container.close()
        raise
    return container


def _describe(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    # FFmpeg errors repeat the URL (with its stream key) — keep only the reason.
    return str(text).split(": '", 1)[0]


def describe_sources(container: Any) -> list[dict[str, Any]]:
    """The session's ``sources``: one entry per video/audio stream, with a stable id per stream index."""
    sources: list[dict[str, Any]] = []
    for stream in container.streams:
        if stream.type == "video":
            ctx = stream.codec_context
            rate = stream.average_rate
            sources.append(
                {
                    "id": f"stream-{stream.index}",
                    "name": f"video {stream.index}",
                    "type": "video",
                    "device": "stream",
                    "codec": ctx.name,
                    "width": int(ctx.width or 0),
                    "height": int(ctx.height or 0),
                    "fps": round(float(rate), 3) if rate else None,
                }
            )
        elif stream.type == "audio":
            ctx = stream.codec_context
            sources.append(
                {
                    "id": f"stream-{stream.index}",
                    "name": f"audio {stream.index}",
                    "type": "audio",
                    "device": "stream",
                    "codec": ctx.name,
                    "sampleRate": int(ctx.sample_rate or 0),
                    "channels": int(getattr(ctx, "channels", 0) or 0),
                }
            )
    return sources


@dataclass(frozen=True, slots=True)
class Frame:
    # wall clock (time.time()) at which the packet that gave the picture out was read: the frame's second is the
    # second it arrived in, however long its decoding took (a replay of held packets decodes many)
    received: float
    pts_seconds: float | None
    width: int
    height: int
    luma: np.ndarray  # uint8 [height, width], a view of the decoded Y plane where possible
    chroma: tuple[np.ndarray, np.ndarray] | None = None  # U and V planes of yuv420p (views), else None
    skipped: int = 0  # frames skipped undecoded right before this one, to catch up with the live edge
    skipped_from: float | None = None  # wall clock at which the first of them was read


def luma_of(frame: Any) -> np.ndarray:
    """The Y plane as uint8 [h, w] with no colour conversion (other formats: converted to gray)."""
    width, height = frame.width, frame.height
    if frame.format.name in _LUMA_FORMATS:
        plane = frame.planes[0]
        return np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)[:, :width]
    return frame.to_ndarray(format="gray")


def chroma_of(frame: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The U and V planes of a 4:2:0 planar frame as uint8 views (for colour crops of faces), else None."""
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        return None
    cw, ch = (frame.width + 1) // 2, (frame.height + 1) // 2
    u, v = frame.planes[1], frame.planes[2]
    return (
        np.frombuffer(u, np.uint8).reshape(-1, u.line_size)[:ch, :cw],
        np.frombuffer(v, np.uint8).reshape(-1, v.line_size)[:ch, :cw],
    )


# Audio handed to the speech analysis: 16 kHz mono float32 (analyzer.audio).
AUDIO_RATE = 16000


@dataclass(frozen=True, slots=True)
class AudioChunk:
    wall: float  # wall-clock time (time.time()) of the first sample: the connection's first audio packet's
    # arrival + the pts since then, so the audio keeps the stream's own clock (no arrival jitter)
    samples: np.ndarray  # float32 [n], 16 kHz mono


AudioSink = Callable[[AudioChunk], None]


class _AudioDecoder:
    """Decodes the audio packets of one connection (any codec, rate and layout) to 16 kHz mono chunks."""

    def __init__(self, stream: Any, sink: AudioSink) -> None:
        self._sink = sink
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        self._time_base = float(stream.time_base) if stream.time_base else None
        self._anchor: float | None = None  # wall clock - pts
        self._next: float | None = None  # wall time after the last samples handed over
        self.undecodable = 0  # packets the decoder rejected (counted, the stream goes on)

    def packet(self, packet: Any) -> None:
        try:
            decoded = packet.decode()
        except av.error.InvalidDataError:
            self.undecodable += 1
            return
        for frame in decoded:
            pts = frame.pts * self._time_base if (frame.pts is not None and self._time_base) else None
            if self._anchor is None:
                self._anchor = time.time() - (pts or 0.0)
            wall = self._anchor + pts if pts is not None else (self._next or time.time())
            for out in self._resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                if samples.size:
                    start = self._next if (self._next is not None and abs(self._next - wall) < 0.1) else wall
                    self._sink(AudioChunk(start, samples))
                    self._next = start + samples.size / AUDIO_RATE
                    wall = self._next


StopFlag = threading.Event | Callable[[], bool]


def _stopped(stop: StopFlag | None) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


DEFAULT_CATCH_UP_LAG = 0.75
# While skipping, the held packets are decoded when no picture came out for this long (our clock): every wall
# second in which packets are read gets a picture, and a backlog read at once is still drained undecoded.
LATE_PICTURE_SPACING = 0.5
# At most this many skipped packets are held for a replay (~10 s at 30 fps, ~8 MB at 6 Mb/s); past it the chain is
# broken and decoding waits for a keyframe.
MAX_HELD_PACKETS = 300


class CatchUp[P]:
    """Skipping undecoded packets to get back to the live edge (for :func:`frames` on a live stream).

    A packet whose lag behind the live edge (:class:`~analyzer.liveedge.LiveEdge`, on packet timestamps and
    read times) is above ``max_lag`` starts a skip: that packet and the ones after it are not decoded, up to a
    keyframe whose lag is at most ``max_lag`` (a decoder can only restart at a keyframe). The backlog is
    drained at demux speed (no decoding), so the first keyframe near the live edge is reached in milliseconds;
    decoding resumes there.

    The skipped packets are held, from the decoder's last packet or from the last keyframe skipped: decoding them
    in order gives correct pictures. When no picture came out for ``picture_spacing`` seconds, the held packets are
    decoded in order until the decoder gives a picture out (a *replay*: one packet, or two or three where the
    decoder reorders B-frames); the rest stays held (:meth:`hold`) and the skip goes on to a keyframe near the live
    edge. Without it, a skip that drained its backlog and waits at the live edge for the next keyframe saw nothing
    for up to a keyframe interval (2 s on most live platforms): whole seconds with frames and no analysis. So a
    worker that stays behind, or a source whose packets all come late, gets a picture about every
    ``picture_spacing`` seconds for the cost of decoding a packet or two, and the lag of what is decoded stays
    within about ``max_lag`` plus one keyframe interval, whatever the CPU.

    Held packets that are let go undecoded (a later keyframe starts a new chain, decoding restarts at a keyframe,
    too many are held) are counted: each is one frame received and not analysed (:meth:`dropped`, reported as
    ``Frame.skipped`` of the next frame yielded).
    """

    def __init__(
        self,
        max_lag: float = DEFAULT_CATCH_UP_LAG,
        picture_spacing: float = LATE_PICTURE_SPACING,
        max_held: int = MAX_HELD_PACKETS,
    ) -> None:
        if max_lag <= 0 or picture_spacing < 0 or max_held < 1:
            raise ValueError("catch-up lag and held packets must be positive and the picture spacing not negative")
        self.max_lag = max_lag
        self.picture_spacing = picture_spacing
        self.max_held = max_held
        self.edge = LiveEdge()
        self.skipping = False
        self.awaiting_picture = False  # a replay is under way: decode on until the decoder gives a picture out
        self._last_picture = -math.inf  # our clock when the decoder last gave a picture out
        self._held: list[tuple[P, float]] = []  # (packet, read time), a chain the decoder can go on with
        self._chain = True  # False: too many were held, the chain is broken until a keyframe
        self._replay: list[tuple[P, float]] = []  # the run :meth:`take` last handed out, for :meth:`hold`
        self._dropped = 0
        self._dropped_from: float | None = None

    def reset(self) -> None:
        self.edge.reset()
        self.skipping = False
        self.awaiting_picture = False
        self._last_picture = -math.inf
        self._held, self._chain, self._replay = [], True, []
        self._dropped, self._dropped_from = 0, None

    def take(self, packet: P, pts: float | None, keyframe: bool, now: float) -> list[P]:
        """What to decode now, in order, for ``packet`` (stream time ``pts``, read at ``now``): ``[]`` to skip it,
        ``[packet]``, or a replay: the held packets then ``packet``, to be decoded until a picture comes out (the
        rest goes back with :meth:`hold`)."""
        lag = None if pts is None else self.edge.lag(pts, now, now)
        if lag is not None and not self.skipping and lag > self.max_lag:
            self.skipping = True
        if not self.skipping or self.awaiting_picture:
            return self._decode([(packet, now)])
        if keyframe and lag is not None and lag <= self.max_lag:
            self.skipping = False  # a place to restart from, near the live edge: decoding goes on from here
            self._let_go()
            return self._decode([(packet, now)])
        if keyframe:  # a new chain starts here: what was held before it is no longer needed
            self._let_go()
            self._chain = True
        if self._chain:
            self._held.append((packet, now))
            if len(self._held) > self.max_held:
                self._let_go()
                self._chain = False
        else:
            self._let_go([(packet, now)])
        if not self._held or now - self._last_picture < self.picture_spacing:
            return []  # a picture came out a moment ago: drain on
        self.awaiting_picture = True
        self.skipping = lag is None or lag > self.max_lag
        return self._decode([])

    def _decode(self, run: list[tuple[P, float]]) -> list[P]:
        """``run`` after the held packets; nothing is held any more (the decoder moves on past them, and a chain
        starts again from the last of them)."""
        self._replay = self._held + run
        self._held = []
        self._chain = True
        return [packet for packet, _ in self._replay]

    def hold(self, packets: list[P]) -> None:
        """The last packets of a replay, left undecoded once a picture came out: held again, in order, and the skip
        goes on (the decoder is behind them: nothing after them can be decoded before them)."""
        if packets:
            self._held = self._replay[len(self._replay) - len(packets) :]
            self.skipping = True

    def _let_go(self, packets: list[tuple[P, float]] | None = None) -> None:
        gone = self._held if packets is None else packets
        if gone:
            self._dropped += len(gone)
            first = gone[0][1]
            self._dropped_from = first if self._dropped_from is None else min(self._dropped_from, first)
        if packets is None:
            self._held = []

    def decoded(self, now: float) -> None:
        """The decoder gave a picture out at ``now``."""
        self._last_picture = now
        self.awaiting_picture = False

    def dropped(self) -> tuple[int, float | None]:
        """How many packets were let go undecoded since the last call, and when the first of them was read."""
        count, first = self._dropped, self._dropped_from
        self._dropped, self._dropped_from = 0, None
        return count, first


def frames(
    container: Any, stop: StopFlag | None = None, catch_up: CatchUp[Any] | None = None, audio: AudioSink | None = None
) -> Iterator[Frame]:
    """Decoded video frames until ``stop`` or the stream ends (:class:`StreamEnded`).

    Slice-threaded decoding (frame threading would hold every frame back by one per extra thread: ~130 ms at
    15 fps on two cores), video packets only, resolution checked on every frame, ``stop`` checked between packets.
    With ``audio``, the first audio track's packets are decoded too and handed to it as 16 kHz mono
    :class:`AudioChunk` s (``audio`` must not block: the speech analysis has its own thread).
    With ``catch_up`` (live streams), packets far behind the live edge are skipped undecoded up to a keyframe
    near it (:class:`CatchUp`).
    """
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"
    time_base = float(stream.time_base) if stream.time_base else None
    audio_stream = container.streams.audio[0] if (audio is not None and container.streams.audio) else None
    decoder = _AudioDecoder(audio_stream, audio) if (audio_stream is not None and audio is not None) else None
    selected = (stream, audio_stream) if audio_stream is not None else (stream,)
    if catch_up is not None:
        catch_up.reset()
    try:
        for packet in container.demux(*selected):
            if _stopped(stop):
                return
            if decoder is not None and packet.stream.type == "audio":
                decoder.packet(packet)
                continue
            read = time.time()
            if catch_up is not None and packet.size:
                pts = packet.pts if packet.pts is not None else packet.dts
                seconds = pts * time_base if (pts is not None and time_base) else None
                run = catch_up.take(packet, seconds, bool(packet.is_keyframe), read)
            else:
                run = [packet]
            pictures: list[Any] = []
            for k, held in enumerate(run):
                pictures.extend(held.decode())
                if pictures and len(run) > 1 and catch_up is not None:
                    catch_up.hold(run[k + 1 :])  # a replay: one picture is enough
                    break
            for picture in pictures:
                check_resolution(picture.width, picture.height)
                pts = picture.pts * time_base if (picture.pts is not None and time_base) else None
                skipped, skipped_from = (0, None) if catch_up is None else catch_up.dropped()
                if catch_up is not None:
                    catch_up.decoded(time.time())  # when it came out, not when its analysis is over
                yield Frame(
                    read, pts, picture.width, picture.height, luma_of(picture), chroma_of(picture), skipped,
                    skipped_from,
                )
            if _stopped(stop):
                return
    except av.error.EOFError:
        pass
    except av.error.ExitError:  # PyAV's read timeout interrupted a blocked read: nothing came for that long
        raise StreamEnded("stream stalled: no data within the read timeout", "stalled") from None
    except (av.error.FFmpegError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.EIO, errno.ETIMEDOUT, errno.ECONNRESET, None):
            raise StreamEnded(f"stream read failed: {_describe(exc)}", "dropped") from None
        raise StreamEnded(f"stream ended: {_describe(exc)}", "dropped") from None
    raise StreamEnded("end of stream", "eof")


# ------------------------------------------------------------------------------------------- reconnecting
@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Exponential backoff within a window: delays ``initial``, ``initial*factor``, … capped at ``max_delay``;
    no new attempt once ``window_seconds`` have passed since the first one."""

    window_seconds: float = 30.0
    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.window_seconds < 0 or self.initial <= 0 or self.factor < 1 or self.max_delay < self.initial:
            raise ValueError(f"invalid reconnect policy: {self}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_delay, self.initial * self.factor ** max(0, attempt - 1)))


# The shortest open timeout an attempt gets when the window is almost spent (an open needs a few round trips).
MIN_ATTEMPT_OPEN_SECONDS = 1.0

Opener = Callable[[str, tuple[float, float]], Any]
AttemptHook = Callable[[int, "StreamUnreachable | None"], None]


def _wait(stop: StopFlag | None, seconds: float) -> bool:
    """Sleep up to ``seconds``; True as soon as ``stop`` is set."""
    if isinstance(stop, threading.Event):
        return stop.wait(seconds)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if _stopped(stop):
            return True
        time.sleep(min(0.05, left))
    return _stopped(stop)


def connect_with_retry(
    uri: str,
    policy: ReconnectPolicy | None = None,
    stop: StopFlag | None = None,
    on_attempt: AttemptHook | None = None,
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    opener: Opener | None = None,
) -> Any | None:
    """Open ``uri``, retrying :class:`StreamUnreachable` with the policy's backoff until its window is spent,
    then re-raise the last one. Returns the container, or None when ``stop`` is set (checked before each
    attempt and during the waits). ``ResolutionExceeded``/``UnsupportedStream`` are not retried.

    ``on_attempt(n, last_error)`` is called before attempt ``n`` (1-based) with the previous attempt's error
    (None before the first): where a worker writes ``connecting``/``reconnecting``. An attempt's open timeout
    is cut to what is left of the window (at least :data:`MIN_ATTEMPT_OPEN_SECONDS`), so giving up happens
    within about the window. The worker uses this at start (→ ``stream_unreachable``) and after a drop
    (→ ``stream_ended``)."""
    policy = policy or ReconnectPolicy()
    open_ = opener or open_stream
    deadline = time.monotonic() + policy.window_seconds
    last: StreamUnreachable | None = None
    attempt = 0
    while not _stopped(stop):
        attempt += 1
        if on_attempt is not None:
            on_attempt(attempt, last)
        left = deadline - time.monotonic()
        open_seconds = max(MIN_ATTEMPT_OPEN_SECONDS, min(float(timeout[0]), left))
        try:
            return open_(uri, (open_seconds, float(timeout[1])))
        except StreamUnreachable as exc:
            last = exc
        left = deadline - time.monotonic()
        if left <= 0:
            raise last
        if _wait(stop, min(policy.delay(attempt), left)):
            break
    return None
