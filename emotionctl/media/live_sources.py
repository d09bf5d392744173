"""Local live stream sources for tests and demos: RTMP, RTSP and RTMPS on 127.0.0.1, as real processes.

- :class:`RtmpSource`: Debian's ``ffmpeg -re … -c copy -f flv -listen 1 rtmp://127.0.0.1:PORT/live/KEY``. FFmpeg
  serves ONE client and exits; ``relisten=True`` starts a new listener after each client (and after
  :meth:`~LiveSource.kill`), as a publisher that comes back would.
- :class:`RtspSource`: GStreamer's RTSP server (``rtsp_server.py``, run by the system ``/usr/bin/python3``,
  which has the python3-gi bindings) at ``rtsp://127.0.0.1:PORT/live``; any number of clients, each from the
  start of the clip.
- :class:`RtmpsSource`: ``stunnel4`` (a throw-away self-signed certificate) in front of an :class:`RtmpSource`,
  at ``rtmps://127.0.0.1:PORT/live/KEY``.

Every source is a context manager with ``url``, ``start()``, ``wait_ready(timeout)``, ``stop()``, ``kill()``
(SIGKILL the publisher: "the publisher crashed") and ``freeze()``/``thaw()`` (SIGSTOP/SIGCONT: "the publisher
hangs with its connection open"). Readiness never connects (an FFmpeg listener would spend its
one client on it): it looks for the LISTEN socket in ``/proc/net/tcp``. Each source is bounded in time
(``max_lifetime``): its processes end by themselves even if the Python process that started them dies
(FFmpeg's own ``-t``/listen timeout, the RTSP server's lifetime and parent check, ``timeout`` around
stunnel), a timer stops it, and ``atexit`` stops whatever is left. Processes are only ever ended by their
PID.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import math
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from emotionctl.ports import free_port

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_LIFETIME = 300.0
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")


class LiveSourceError(RuntimeError):
    """A source could not start or stopped unexpectedly."""


class ToolMissing(LiveSourceError):
    """A program a source needs is not installed."""


# -------------------------------------------------------------------------------------------------- tools
@dataclass(frozen=True, slots=True)
class _Tool:
    packages: tuple[str, ...]
    present: Callable[[], bool]


def _gst_rtsp_present() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    code = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst; Gst.init(None);"
        "import sys; sys.exit(0 if all(Gst.ElementFactory.find(e) for e in ('filesrc', 'qtdemux', 'rtph264pay'))"
        " else 1)"
    )
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, timeout=30, env=_system_env())
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


TOOLS: dict[str, _Tool] = {
    "ffmpeg": _Tool(("ffmpeg",), lambda: shutil.which("ffmpeg") is not None),
    "stunnel": _Tool(("stunnel4",), lambda: _stunnel_binary() is not None),
    "openssl": _Tool(("openssl",), lambda: shutil.which("openssl") is not None),
    "timeout": _Tool(("coreutils",), lambda: shutil.which("timeout") is not None),
    "espeak-ng": _Tool(("espeak-ng",), lambda: shutil.which("espeak-ng") is not None),
    "gst-rtsp-server": _Tool(
        (
            "python3-gi",
            "gir1.2-gst-rtsp-server-1.0",
            "gstreamer1.0-plugins-base",
            "gstreamer1.0-plugins-good",
            "gstreamer1.0-rtsp",
        ),
        _gst_rtsp_present,
    ),
}
_present: dict[str, bool] = {}


def require_tools(*names: str) -> None:
    """Raise :class:`ToolMissing` naming the Debian packages to install for any missing tool in ``names``
    (``ffmpeg``, ``stunnel``, ``openssl``, ``timeout``, ``espeak-ng``, ``gst-rtsp-server``). Results are cached."""
    missing: list[str] = []
    packages: list[str] = []
    for name in names:
        tool = TOOLS.get(name)
        if tool is None:
            raise ValueError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}")
        if name not in _present:
            _present[name] = tool.present()
        if not _present[name]:
            missing.append(name)
            packages.extend(p for p in tool.packages if p not in packages)
    if missing:
        raise ToolMissing(
            f"missing {', '.join(missing)}: install the Debian packages with "
            f"`sudo apt-get install {' '.join(packages)}` (or run `make setup` as root)"
        )


def _stunnel_binary() -> str | None:
    return shutil.which("stunnel4") or shutil.which("stunnel")


def _system_env() -> dict[str, str]:
    """The environment for the system Python: no virtualenv or PYTHONPATH leaking into it."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in drop}


# ------------------------------------------------------------------------------------------------ sockets
def listening(port: int) -> bool:
    """True when some socket LISTENs on ``port`` (from /proc/net/tcp{,6}; no connection is made)."""
    needle = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as lines:
                next(lines, None)  # header
                for line in lines:
                    fields = line.split()
                    if len(fields) > 3 and fields[1].endswith(needle) and fields[3] == "0A":
                        return True
        except FileNotFoundError:
            continue
    return False


# ---------------------------------------------------------------------------------------------- processes
LineHandler = Callable[[str, float], None]  # (line, wall-clock time it was read)


class _Child:
    """One child process, ended by its PID only. stderr goes to a temporary file (read back for errors), or,
    with ``on_stderr``, line by line to that handler (the last lines are kept for errors); ``on_stdout`` gets
    stdout line by line. Handlers run on a reader thread and get each line with the time it was read."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        on_stdout: LineHandler | None = None,
        on_stderr: LineHandler | None = None,
    ) -> None:
        self.name = name
        self._log = None if on_stderr else tempfile.TemporaryFile(prefix=f"emotion-{name}-")  # noqa: SIM115
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if on_stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE if on_stderr else self._log,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C goes to the test runner, which stops us in order
        )
        self._readers = [
            threading.Thread(target=self._read, args=(stream, handler, keep), name=f"{name}-{what}", daemon=True)
            for stream, handler, keep, what in (
                (self.process.stdout, on_stdout, False, "stdout"),
                (self.process.stderr, on_stderr, True, "stderr"),
            )
            if stream is not None and handler is not None
        ]
        for reader in self._readers:
            reader.start()
        log.debug("%s started (pid %d)", name, self.process.pid)

    def _read(self, stream: IO[bytes], handler: LineHandler, keep: bool) -> None:
        for raw in stream:
            now = time.time()
            line = raw.decode("utf-8", "replace").rstrip()
            if keep:
                self._tail.append(line)
            try:
                handler(line, now)
            except Exception:  # a handler's bug must not stop the reading (the child would block)
                log.exception("%s: line handler failed", self.name)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def end(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the process."""
        self.signal(signal.SIGTERM)
        self.signal(signal.SIGCONT)  # a frozen (SIGSTOPped) process only acts on SIGTERM once continued
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(5)

    def errors(self, limit: int = 2000) -> str:
        if self._log is None:
            for reader in self._readers:
                reader.join(1)  # the rest of the output of a process that exited
            text = "\n".join(line for line in self._tail if not _is_trace(line))
        else:
            try:
                self._log.seek(0)
                text = self._log.read().decode("utf-8", "replace")
            except (OSError, ValueError):
                return ""
        return text[-limit:].strip()

    def close(self) -> None:
        self.end()
        for reader in self._readers:
            reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        if self._log is not None:
            self._log.close()


def _is_trace(line: str) -> bool:
    return line.startswith(("muxer <-", "demuxer", "PLAY "))


_live: weakref.WeakSet[LiveSource] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for source in list(_live):
        try:
            source.stop()
        except Exception:  # best effort at exit, for every source
            log.exception("could not stop %r at exit", source)


class LiveSource:
    """Base of the sources: life cycle, lifetime guard, context manager."""

    name = "source"

    def __init__(self, max_lifetime: float = DEFAULT_LIFETIME) -> None:
        if max_lifetime <= 0:
            raise ValueError("max_lifetime must be > 0")
        self.max_lifetime = float(max_lifetime)
        self._deadline = math.inf
        self._started = False
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        self._guard: threading.Timer | None = None

    # -- to implement
    @property
    def url(self) -> str:
        raise NotImplementedError

    def _start(self) -> None:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def _children(self) -> list[_Child]:
        raise NotImplementedError

    def _publisher(self) -> _Child | None:
        """The process that sends the stream (what kill/freeze/thaw act on)."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """The current publisher's PID."""
        child = self._publisher()
        return child.pid if child else None

    def kill(self) -> None:
        """SIGKILL the publisher, as a crash would."""
        with self._lock:
            child = self._publisher()
            if child is not None:
                child.signal(signal.SIGKILL)
                child.process.wait(5)

    def freeze(self) -> None:
        """SIGSTOP the publisher: its connections stay open and nothing more is sent (a frozen peer, which only a
        client's read timeout notices). :meth:`thaw` resumes it; :meth:`stop` also ends a frozen source."""
        with self._lock:
            child = self._publisher()
            if child is not None:
                child.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the publisher after :meth:`freeze`."""
        with self._lock:
            child = self._publisher()
            if child is not None:
                child.signal(signal.SIGCONT)

    def sent_at(self, pts_seconds: float) -> float | None:
        """With ``trace=True``: the wall-clock time (``time.time()``) at which the publisher sent the video frame
        with this presentation time (as the client's demuxer reports it) to the current client; None if unknown."""
        raise NotImplementedError

    # -- life cycle
    def remaining(self) -> float:
        """Seconds left before the lifetime guard stops the source."""
        return max(0.0, self._deadline - time.monotonic())

    def start(self) -> Self:
        with self._lock:
            if self._started:
                raise LiveSourceError(f"{self.name} already started")
            self._started = True
            self._deadline = time.monotonic() + self.max_lifetime
            _live.add(self)
            self._guard = threading.Timer(self.max_lifetime, self._expire)
            self._guard.daemon = True
            self._guard.start()
            try:
                self._start()
            except BaseException:
                self.stop()
                raise
        return self

    def _expire(self) -> None:
        log.info("%s reached its maximum lifetime (%.0f s): stopping", self.name, self.max_lifetime)
        self.stop()

    def wait_ready(self, timeout: float = 15.0) -> Self:
        """Wait until the source accepts clients (without connecting to it)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._started or self._stopping.is_set():
                    raise LiveSourceError(f"{self.name} is not running")
                for child in self._children():
                    if not child.alive():
                        raise LiveSourceError(
                            f"{self.name}: {child.name} exited with code {child.process.returncode}: "
                            f"{child.errors() or 'no error output'}"
                        )
                if self._ready():
                    return self
            if time.monotonic() > deadline:
                raise LiveSourceError(f"{self.name} not ready after {timeout:.0f} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """End every process of the source (SIGTERM, then SIGKILL), idempotent."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            if self._guard is not None:
                self._guard.cancel()
            self._stop()
            _live.discard(self)

    @property
    def running(self) -> bool:
        return self._started and not self._stopping.is_set()

    def __enter__(self) -> Self:
        self.start()
        return self.wait_ready()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self._stopping.is_set() else "new"
        return f"<{type(self).__name__} {self.name} {state}>"


# ------------------------------------------------------------------------------------------------- RTMP
class RtmpSource(LiveSource):
    """``ffmpeg -re`` playing ``clip`` (``-c copy``, so an H.264/AAC mp4) to the one RTMP client that connects.

    ``loop``: replay the clip until stopped (else the stream ends with the clip). ``relisten``: after each
    client (or a :meth:`kill`), listen again on the same URL until stopped. Each client sees the clip from
    its start, paced in real time from its connection. ``trace``: record when each video packet is handed to
    the RTMP connection (FFmpeg's ``-debug_ts``), for :meth:`sent_at` (latency measurements).
    """

    name = "rtmp"

    def __init__(
        self,
        clip: Path | str,
        loop: bool = True,
        relisten: bool = False,
        *,
        port: int | None = None,
        key: str | None = None,
        max_lifetime: float = DEFAULT_LIFETIME,
        trace: bool = False,
    ) -> None:
        super().__init__(max_lifetime)
        self.clip = Path(clip)
        if not self.clip.is_file():
            raise FileNotFoundError(f"no clip at {self.clip}")
        self.loop = loop
        self.relisten = relisten
        self.trace = trace
        self._sent: dict[int, float] = {}  # FLV timestamp (ms) -> wall-clock time it was sent
        self.port = port or free_port()
        self.key = key or secrets.token_hex(6)
        self.listeners = 0  # listeners started so far (one per client with relisten)
        self._child: _Child | None = None
        self._supervisor: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"rtmp://{HOST}:{self.port}/live/{self.key}"

    def _start(self) -> None:
        require_tools("ffmpeg")
        self._spawn()
        if self.relisten:
            self._supervisor = threading.Thread(target=self._supervise, name=f"rtmp-{self.port}", daemon=True)
            self._supervisor.start()

    def _spawn(self) -> None:
        seconds = max(1, math.ceil(self.remaining()))
        argv = ["ffmpeg", "-nostdin", "-hide_banner"]
        argv += ["-loglevel", "info", "-nostats", "-debug_ts"] if self.trace else ["-loglevel", "error"]
        argv += ["-re"]
        if self.loop:
            argv += ["-stream_loop", "-1"]
        # -t bounds the stream (paced: ≈ wall seconds); -timeout bounds the wait for a client (rtmp, seconds)
        argv += ["-i", str(self.clip), "-c", "copy", "-t", str(seconds), "-f", "flv"]
        argv += ["-listen", "1", "-timeout", str(seconds), self.url]
        self._sent = {}
        self._child = _Child(self.name, argv, on_stderr=self._on_stderr if self.trace else None)
        self.listeners += 1

    def _on_stderr(self, line: str, now: float) -> None:
        # "muxer <- type:video pkt_pts:67 pkt_pts_time:0.067 ...": written to the (unbuffered) RTMP connection
        if line.startswith("muxer <- type:video"):
            for field_ in line.split():
                if field_.startswith("pkt_pts_time:"):
                    self._sent.setdefault(round(float(field_.split(":", 1)[1]) * 1000), now)
                    break

    def sent_at(self, pts_seconds: float) -> float | None:
        if not self.trace:
            raise LiveSourceError("sent_at needs a source started with trace=True")
        return self._sent.get(round(pts_seconds * 1000))

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            child = self._child
            if child is not None and child.alive():
                time.sleep(0.02)
                continue
            # stop() holds the lock while it joins this thread: never block on it
            if not self._lock.acquire(timeout=0.05):
                continue
            try:
                if self._stopping.is_set() or self.remaining() < 1:
                    return
                if child is not None:
                    if child.process.returncode not in (0, -signal.SIGKILL, 255):
                        log.info("rtmp listener exited %s: %s", child.process.returncode, child.errors(500))
                    child.close()
                self._spawn()
            finally:
                self._lock.release()

    def _ready(self) -> bool:
        return listening(self.port)

    def _publisher(self) -> _Child | None:
        return self._child

    def _children(self) -> list[_Child]:
        # with relisten, a listener that exited is replaced: not a failure
        return [self._child] if self._child and not self.relisten else []

    def _stop(self) -> None:
        if self._child is not None:
            self._child.close()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(5)


# ------------------------------------------------------------------------------------------------- RTSP
class RtspSource(LiveSource):
    """GStreamer's RTSP server at ``rtsp://127.0.0.1:PORT/live``: each client gets ``clip`` from its start,
    in real time, H.264 as is (no re-encoding). The stream ends with the clip; ``loop=True`` serves a copy of
    the clip repeated to cover the source's lifetime (made once with ``ffmpeg -c copy``, cached). ``trace``:
    record when each client's playback started, for :meth:`sent_at` (GStreamer sends a frame when the
    pipeline clock reaches its running time)."""

    name = "rtsp"

    def __init__(
        self,
        clip: Path | str,
        loop: bool = False,
        *,
        max_lifetime: float = DEFAULT_LIFETIME,
        trace: bool = False,
    ) -> None:
        super().__init__(max_lifetime)
        self.clip = Path(clip)
        if not self.clip.is_file():
            raise FileNotFoundError(f"no clip at {self.clip}")
        self.loop = loop
        self.trace = trace
        self.port = 0
        self.play_times: list[float] = []  # with trace: wall-clock time of running time 0, one per client
        self._child: _Child | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise LiveSourceError("the RTSP source has no port until it is ready (start() then wait_ready())")
        return f"rtsp://{HOST}:{self.port}/live"

    def _start(self) -> None:
        require_tools("gst-rtsp-server")
        clip = looped_clip(self.clip, self.max_lifetime) if self.loop else self.clip
        argv = [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), str(clip), "--port", "0", "--path", "/live"]
        argv += ["--lifetime", str(math.ceil(self.max_lifetime) + 5)]
        if self.trace:
            argv.append("--trace")
        self._child = _Child(self.name, argv, env=_system_env(), on_stdout=self._on_stdout)

    def _on_stdout(self, line: str, now: float) -> None:
        if line.startswith("READY "):
            self.port = int(line.split()[1])
        elif line.startswith("PLAY "):
            self.play_times.append(float(line.split()[1]))

    def _ready(self) -> bool:
        return bool(self.port)

    def _publisher(self) -> _Child | None:
        return self._child

    def sent_at(self, pts_seconds: float) -> float | None:
        if not self.trace:
            raise LiveSourceError("sent_at needs a source started with trace=True")
        return self.play_times[-1] + pts_seconds if self.play_times else None

    def _children(self) -> list[_Child]:
        return [self._child] if self._child else []

    def _stop(self) -> None:
        if self._child is not None:
            self._child.close()


def looped_clip(clip: Path, seconds: float) -> Path:
    """``clip`` repeated (``ffmpeg -stream_loop … -c copy``) to last at least ``seconds``, next to it, cached."""
    require_tools("ffmpeg")
    duration = _duration(clip)
    loops = max(1, math.ceil(seconds / duration))
    if loops == 1:
        return clip
    path = clip.with_name(f"{clip.stem}.x{loops}{clip.suffix}")
    if path.is_file() and path.stat().st_mtime >= clip.stat().st_mtime:
        return path
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=clip.suffix, dir=clip.parent)
    os.close(fd)
    try:
        subprocess.run(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops - 1),
             "-i", str(clip), "-c", "copy", "-movflags", "+faststart", tmp],
            check=True, timeout=300, capture_output=True,
        )  # fmt: skip
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except subprocess.CalledProcessError as exc:
        raise LiveSourceError(f"cannot loop {clip.name}: {exc.stderr.decode(errors='replace')[-500:]}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _duration(clip: Path) -> float:
    import av

    with av.open(str(clip)) as container:
        if container.duration:
            return float(container.duration) / 1_000_000
        stream = container.streams.video[0]
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
    raise LiveSourceError(f"cannot tell the duration of {clip}")


# ------------------------------------------------------------------------------------------------ RTMPS
class RtmpsSource(LiveSource):
    """``stunnel4`` with a throw-away self-signed certificate (CN=127.0.0.1) in front of an
    :class:`RtmpSource`: ``rtmps://127.0.0.1:PORT/live/KEY``. :meth:`kill` kills the RTMP publisher behind
    the tunnel (the TLS side then closes the client's connection). ``trace`` times the RTMP publisher's sends
    (into the tunnel)."""

    name = "rtmps"

    def __init__(
        self,
        clip: Path | str,
        loop: bool = True,
        relisten: bool = False,
        *,
        max_lifetime: float = DEFAULT_LIFETIME,
        trace: bool = False,
    ) -> None:
        super().__init__(max_lifetime)
        self.rtmp = RtmpSource(clip, loop, relisten, max_lifetime=max_lifetime, trace=trace)
        self.port = free_port()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._child: _Child | None = None

    @property
    def url(self) -> str:
        return f"rtmps://{HOST}:{self.port}/live/{self.rtmp.key}"

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate (PEM), for clients that verify (``tls_verify=1``, ``ca_file``)."""
        if self._dir is None:
            raise LiveSourceError("the RTMPS source is not started")
        return Path(self._dir.name) / "cert.pem"

    def _start(self) -> None:
        require_tools("ffmpeg", "stunnel", "openssl", "timeout")
        self._dir = tempfile.TemporaryDirectory(prefix="emotion-rtmps-")
        folder = Path(self._dir.name)
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={HOST}", "-days", "1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        config = folder / "stunnel.conf"
        config.write_text(
            "foreground = yes\n"
            "pid =\n"
            "debug = 3\n"
            f"[rtmps]\naccept = {HOST}:{self.port}\nconnect = {HOST}:{self.rtmp.port}\n"
            f"cert = {cert}\nkey = {key}\n",
            encoding="ascii",
        )
        self.rtmp.start()
        stunnel = _stunnel_binary() or "stunnel4"
        # `timeout` ends stunnel even if we die; SIGTERM to it is passed on to stunnel.
        seconds = str(math.ceil(self.max_lifetime) + 5)
        self._child = _Child("stunnel", ["timeout", "-k", "5", seconds, stunnel, str(config)])

    def _ready(self) -> bool:
        return listening(self.port) and self.rtmp._ready()

    def _children(self) -> list[_Child]:
        return [c for c in (self._child, *self.rtmp._children()) if c is not None]

    def _publisher(self) -> _Child | None:
        return self.rtmp._publisher()

    def sent_at(self, pts_seconds: float) -> float | None:
        return self.rtmp.sent_at(pts_seconds)

    def _stop(self) -> None:
        if self._child is not None:
            self._child.close()
        self.rtmp.stop()
        if self._dir is not None:
            self._dir.cleanup()


__all__ = [
    "DEFAULT_LIFETIME",
    "LiveSource",
    "LiveSourceError",
    "RtmpSource",
    "RtmpsSource",
    "RtspSource",
    "ToolMissing",
    "free_port",
    "listening",
    "looped_clip",
    "require_tools",
]
