"""The demo itself: create a session on the face clip's stream, follow it live, stop it, show its results."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from .client import Api, Channels, RequestFailed
from .environment import (
    CLIP_FPS,
    CLIP_SIZE,
    DemoError,
    StackTarget,
    find_stack,
    mint_token,
    own_stack,
    prepare_clip,
    rtmp_source,
)
from .view import LIVE_HEADER, Screen, second_line, timeline_table, totals_table

DEMO_USER = "demo"
TIMELINE_GRANULARITY = 5
STOP_WAIT_SECONDS = 30.0  # after the stop: how long to wait for the workflow to finish the session
ENDED_STATES = frozenset({"stopped", "error"})


@dataclass
class DemoOptions:
    seconds: float = 20.0  # of live analysis, counted from the first `working`
    stack_file: Path | None = None
    endpoint: str | None = None
    start_stack: bool = False
    user: str = DEMO_USER
    analysis_fps: float = 5.0
    working_timeout: float = 120.0  # provisioning + connecting must be done by then


@dataclass
class DemoResult:
    session_id: str | None = None
    states: list[str] = field(default_factory=list)  # worker states seen on the WebSocket, in order
    seconds: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (second, sei data) shown live
    final: dict[str, Any] = field(default_factory=dict)  # the session after the end
    totals: dict[str, int] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False


class Interrupted(DemoError):
    """Ctrl-C before a session existed: nothing to stop, nothing to show."""


class Signals:
    """Ctrl-C / SIGTERM: the first ends the demo early (the session is stopped and its results shown); the
    second stops waiting for the worker to finish."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.abort = asyncio.Event()
        self._installed: list[int] = []

    def __call__(self) -> None:
        (self.abort if self.stop.is_set() else self.stop).set()

    @contextmanager
    def installed(self) -> Iterator[Signals]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests): no handler
                continue
            self._installed.append(signum)
        try:
            yield self
        finally:
            for installed in self._installed:
                loop.remove_signal_handler(installed)
            self._installed.clear()


async def run_demo(options: DemoOptions, out: TextIO, signals: Signals | None = None) -> DemoResult:
    """The demo. Returns what it saw; raises :class:`DemoError` for what the user must fix."""
    from emotionctl.local.state import state_path

    screen = Screen(out)
    result = DemoResult()
    signals = signals or Signals()
    with signals.installed():
        async with contextlib.AsyncExitStack() as resources:
            if options.start_stack:
                lifetime = options.seconds + options.working_timeout + 600  # it stops by itself in any case
                state_file = await resources.enter_async_context(own_stack(lifetime, screen.status))
            else:
                state_file = options.stack_file or state_path()
            target = find_stack(state_file, options.endpoint)
            try:
                await _Demo(options, target, screen, result, signals).run()
            except aiohttp.ClientError as exc:
                raise DemoError(f"cannot reach the API at {target.api_url}: {exc}") from None
    result.interrupted = signals.stop.is_set()
    return result


class _Demo:
    def __init__(self, options: DemoOptions, target: StackTarget, screen: Screen, result: DemoResult,
                 signals: Signals) -> None:
        self.options = options
        self.target = target
        self.screen = screen
        self.result = result
        self.signals = signals
        self.api: Api | None = None
        self.channels: Channels | None = None
        self.origin_ms = 0
        self.ended = False  # the WebSocket said stopped/error

    async def run(self) -> None:
        screen, options = self.screen, self.options
        screen.line("emotion-stream demo: a live stream, a session on it, its emotions second by second")
        screen.line(f"  stack     {self.target.api_url}   (state file {self.target.state_file})")
        token = await asyncio.to_thread(mint_token, self.target, options.user)
        screen.status("preparing the face clip (encoded once, then cached)")
        clip = await asyncio.to_thread(prepare_clip)
        if self.signals.stop.is_set():
            raise Interrupted("interrupted")
        lifetime = options.seconds + options.working_timeout + STOP_WAIT_SECONDS + 60
        with rtmp_source(clip, lifetime) as source_url:
            width, height = CLIP_SIZE
            screen.line(f"  source    {source_url}   ({width}x{height} @ {CLIP_FPS} fps: a smiling face, then an "
                        "empty room, in a loop)")
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                self.api = Api(http, self.target.api_url, token)
                async with http.ws_connect(self.target.ws_url, heartbeat=None) as ws:
                    channels = self.channels = Channels(ws)
                    reader = asyncio.create_task(channels.run())
                    pinger = asyncio.create_task(channels.keepalive())
                    try:
                        await channels.request("auth:token", {"token": token})
                        await self._create(source_url)
                        try:
                            await self._subscribe()
                            await self._watch()
                        except BaseException:
                            with contextlib.suppress(Exception):  # the original error is the one to see
                                await self._stop(wait=False)
                            raise
                        await self._stop(wait=True)
                    finally:
                        pinger.cancel()
                        await ws.close()
                        await reader
                await self._read_results()
        self._print_results()

    # -------------------------------------------------------------------------------- steps
    async def _create(self, source_url: str) -> None:
        assert self.api is not None and self.channels is not None
        body = {"name": "emotionctl demo", "streamUri": source_url,
                "config": {"analysisFps": self.options.analysis_fps}}
        try:
            created: dict[str, Any] = await self.api.call("POST", "/v1/sessions", body)
        except RequestFailed as exc:
            if exc.status == 503:
                raise DemoError(f"{exc}\n  the stack is at capacity: stop a session (or wait for one to end) and "
                                "try again") from None
            raise
        session_id = self.result.session_id = str(created["_id"])
        self.origin_ms = _epoch_ms(str(created["timestamp"]))
        self.screen.line(f"  session   {session_id}   (user {self.options.user!r}, analysis at "
                         f"{self.options.analysis_fps:g} frames/s, POST /v1/sessions)")
        self.screen.line()

    async def _subscribe(self) -> None:
        assert self.channels is not None and self.result.session_id is not None
        session_id = self.result.session_id
        await self.channels.request("channels:subscribe", {"channel": "session_worker_state", "key": session_id})
        await self.channels.request("channels:subscribe",
                                    {"channel": "session_emotions_intensities", "key": f"{session_id}:1s"})

    async def _next(self, timeout: float, until: asyncio.Event) -> tuple[str, int, Any] | None:
        """The next WebSocket event; None when ``timeout`` passed or ``until`` was set first."""
        assert self.channels is not None
        if until.is_set():
            return None
        getter = asyncio.ensure_future(self.channels.events.get())
        waiter = asyncio.ensure_future(until.wait())
        done, pending = await asyncio.wait({getter, waiter}, timeout=max(0.0, timeout),
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()  # a cancelled Queue.get() takes nothing from the queue
        if getter in done:
            event = getter.result()
            if event is None:
                raise DemoError("the WebSocket connection closed")
            return event
        return None

    async def _watch(self) -> None:
        """The worker's state until it works (a status line), then one line per analysed second until the
        chosen time has passed, the session ends, or Ctrl-C."""
        loop = asyncio.get_running_loop()
        screen, states = self.screen, self.result.states
        began = loop.time()
        deadline = began + self.options.working_timeout
        working = False
        header = False
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                if not working:
                    screen.line(f"  the worker is not working after {self.options.working_timeout:.0f} s "
                                f"(state: {states[-1] if states else 'unknown'}): stopping the session")
                return
            refresh = not working and screen.tty
            event = await self._next(min(remaining, 0.2) if refresh else remaining, self.signals.stop)
            if self.signals.stop.is_set():
                screen.line("  interrupted (Ctrl-C): stopping the session")
                return
            if event is None:
                if refresh:
                    screen.status(_state_status(states, loop.time() - began))
                continue
            kind, stamp, data = event
            if kind == "sws":
                state = str(data)
                if states and states[-1] == state:
                    continue
                states.append(state)
                if not working and state == "working":
                    working = True
                    deadline = loop.time() + self.options.seconds
                    screen.line(f"  worker    {' → '.join(states)}   ({loop.time() - began:.1f} s after create)")
                elif working:
                    screen.line(f"  worker    {state}")
                else:
                    screen.status(_state_status(states, loop.time() - began))
                if state in ENDED_STATES:
                    self.ended = True
                    if not working:
                        screen.line(f"  worker    {' → '.join(states)}")
                    return
                if state == "stopping":  # stopped by someone else
                    return
            elif kind == "sei" and isinstance(data, dict):
                if not header:
                    header = True
                    screen.line()
                    screen.line(LIVE_HEADER)
                second = (stamp - self.origin_ms) // 1000 - 1
                self.result.seconds.append((second, data))
                screen.line(second_line(second, data))

    async def _stop(self, wait: bool) -> None:
        """Stop the session if it is still active; then (``wait``) await the end of its worker on the WebSocket:
        the workflow writes ``stopped`` once the worker has exited, after its last seconds were written."""
        assert self.api is not None and self.result.session_id is not None
        path = f"/v1/sessions/{self.result.session_id}"
        session = await self.api.call("GET", path)
        if session.get("state") == "active":
            self.screen.status("stopping the session (POST …/stop)")
            try:
                await self.api.call("POST", path + "/stop")
            except RequestFailed as exc:
                if exc.status != 409:  # 409: it ended on its own meanwhile
                    raise
        if not wait or self.ended:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_WAIT_SECONDS
        while (remaining := deadline - loop.time()) > 0:
            self.screen.status("waiting for the worker to finish (Ctrl-C again: do not wait)")
            event = await self._next(remaining, self.signals.abort)
            if event is None:
                return
            kind, _, data = event
            if kind == "sws":
                state = str(data)
                if not self.result.states or self.result.states[-1] != state:
                    self.result.states.append(state)
                if state in ENDED_STATES:
                    self.ended = True
                    return

    async def _read_results(self) -> None:
        assert self.api is not None and self.result.session_id is not None
        path = f"/v1/sessions/{self.result.session_id}"
        self.result.final = await self.api.call("GET", path)
        emotions = await self.api.call("GET", path + "/emotions")
        self.result.totals = {e: int(v) for e, v in emotions.get("emotions", {}).items()}
        timeline = await self.api.call("GET", f"{path}/emotions/timeline?granularity={TIMELINE_GRANULARITY}")
        self.result.timeline = list(timeline.get("timeline", []))

    def _print_results(self) -> None:
        screen, final, session_id = self.screen, self.result.final, self.result.session_id
        meta = final.get("meta", {})
        reason = meta.get("stopReason")
        screen.line()
        screen.line(f"Session {session_id}: {final.get('state')}" + (f" ({reason})" if reason else "")
                    + f" after {final.get('duration', 0)} s" + (f"; {meta['error']}" if meta.get("error") else ""))
        screen.line()
        screen.line(f"Totals: observations in which each emotion was dominant   (GET …/{session_id}/emotions)")
        for text in totals_table(self.result.totals):
            screen.line(text)
        screen.line()
        screen.line(f"Timeline: {TIMELINE_GRANULARITY} s intervals, mean intensity of each emotion for the faces it "
                    f"dominated   (GET …/emotions/timeline?granularity={TIMELINE_GRANULARITY})")
        for text in timeline_table(self.result.timeline):
            screen.line(text)
        screen.line()
        if not self.options.start_stack:  # a stack started for the demo is gone after it
            url = f"{self.target.api_url}/v1/sessions/{session_id}/emotions/timeline?granularity=10"
            screen.line("The same data over the REST API:")
            mint = f"emotionctl token create --user {self.options.user}"
            if self.options.stack_file:
                mint += f" --stack-file {self.options.stack_file}"
            screen.line(f"  curl -s -H \"Authorization: Bearer $({mint})\" '{url}'")


def _state_status(states: list[str], elapsed: float) -> str:
    return f"worker    {' → '.join(states) or 'starting'}   {elapsed:4.1f} s"


def _epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
