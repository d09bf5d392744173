"""The demo's surroundings: the local stack (found through its state file, or started for the demo), the dev
token, and the face clip's RTMP source (the media package)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

# The clip: a face that moves and zooms, then an empty room; the source plays it in a loop.
CLIP_SIZE = (640, 360)
CLIP_FPS = 15
CLIP_SEGMENTS: tuple[tuple[str, float], ...] = (("face", 7.0), ("empty", 3.0))
STACK_START_SECONDS = 120.0  # --start-stack: a cold start on a busy machine


class DemoError(RuntimeError):
    """Something the user can fix; the message says what."""


class StackMissing(DemoError):
    pass


@dataclass(frozen=True)
class StackTarget:
    api_url: str  # e.g. http://127.0.0.1:3000
    ws_url: str  # e.g. ws://127.0.0.1:3000/ws/v1
    aws_endpoint: str
    region: str
    control_table: str
    state_file: Path


def no_stack_message(state_file: Path) -> str:
    return (
        f"no local stack is running (no live state file at {state_file}).\n"
        "  Start one in another terminal with `make run` (or `emotionctl local up`), then run `emotionctl demo` "
        "again;\n  or let the demo start its own for this run: `emotionctl demo --start-stack`."
    )


def ws_url_for(api_url: str) -> str:
    """The local gateway serves the WebSocket API on the REST port, at ``/ws/v1``."""
    parts = urlsplit(api_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws/v1", "", ""))


def find_stack(state_file: Path, endpoint: str | None = None) -> StackTarget:
    """The running local stack, from its state file; ``endpoint`` replaces the API address it names."""
    from emotionctl.local.state import StackNotRunning, read_state

    try:
        state = read_state(state_file)
    except StackNotRunning:
        raise StackMissing(no_stack_message(state_file)) from None
    api_url = (endpoint or str(state["endpoint"])).rstrip("/")
    ws = state.get("components", {}).get("websocket", {}).get("url")
    return StackTarget(
        api_url=api_url,
        ws_url=str(ws) if ws and not endpoint else ws_url_for(api_url),
        aws_endpoint=str(state["aws"]["endpoint"]),
        region=str(state["aws"]["region"]),
        control_table=str(state["tables"]["ControlTable"]),
        state_file=state_file,
    )


def mint_token(target: StackTarget, user: str) -> str:
    """A dev token in the stack's control table, as ``emotionctl token create`` mints it."""
    import boto3
    from emotion_shared.auth import create_token

    from emotionctl.local.moto_server import local_aws_env

    env = local_aws_env(target.aws_endpoint)
    client = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=target.region,
    ).client("dynamodb", endpoint_url=target.aws_endpoint)
    return create_token(client, target.control_table, user)


@asynccontextmanager
async def own_stack(lifetime: float, status: Callable[[str], None]) -> AsyncIterator[Path]:
    """``emotionctl local up`` on free ports with a temporary state dir, for this demo only; yields its state
    file once the stack says it is up; stopped (SIGTERM, by PID) on exit. Its own session, so the terminal's
    Ctrl-C reaches the demo (which then stops its session cleanly) and not the stack."""
    with tempfile.TemporaryDirectory(prefix="emotionctl-demo-") as tmp:
        state_dir = Path(tmp)
        log_path = state_dir / "stack.log"
        status("starting a local stack for this demo (--start-stack)")
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "emotionctl", "local", "up", "--port", "0", "--state-dir", str(state_dir),
                "--no-dev-token", "--lifetime", str(int(lifetime)),
                stdout=asyncio.subprocess.PIPE, stderr=log_file, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        drain: asyncio.Task[None] | None = None
        try:
            assert process.stdout is not None
            try:
                await asyncio.wait_for(_until_line(process.stdout, "local stack is up"), STACK_START_SECONDS)
            except (TimeoutError, EOFError):
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise DemoError(f"the demo's local stack did not start:\n{tail}") from None
            drain = asyncio.create_task(_drain(process.stdout))
            yield state_dir / "stack.json"
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    log.warning("the demo's local stack (pid %d) did not stop in 30 s: killing it", process.pid)
                    process.kill()
                    await process.wait()
            if drain is not None:
                drain.cancel()


async def _until_line(stream: asyncio.StreamReader, marker: str) -> None:
    while True:
        line = await stream.readline()
        if not line:
            raise EOFError
        if marker in line.decode(errors="replace"):
            return


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


# ---------------------------------------------------------------------------------------------- the source
def prepare_clip() -> Path:
    """The face clip (encoded once, then cached by the media package). Blocking: run it in a thread."""
    from emotionctl.media.clips import make_face_clip

    return make_face_clip(width=CLIP_SIZE[0], height=CLIP_SIZE[1], fps=CLIP_FPS, segments=CLIP_SEGMENTS)


@contextmanager
def rtmp_source(clip: Path, lifetime: float) -> Iterator[str]:
    """A local RTMP source playing ``clip`` in a loop, listening again after each client (the worker reconnects
    if it drops), for at most ``lifetime`` seconds; yields its URL."""
    from emotionctl.media.live_sources import LiveSourceError, RtmpSource

    source = RtmpSource(clip, loop=True, relisten=True, max_lifetime=lifetime)
    try:
        source.start()
        source.wait_ready()
    except LiveSourceError as exc:  # ToolMissing says which package to install
        source.stop()
        raise DemoError(f"cannot start the demo's RTMP source: {exc}") from None
    try:
        yield source.url
    finally:
        source.stop()
