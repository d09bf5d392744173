"""``emotionctl local up``: run the local stack in the foreground until Ctrl-C / SIGTERM (or its lifetime)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .components import default_components
from .stack import Component, LocalStack, StackConfig, StartError
from .state import StackNotRunning, read_state, remove_state, write_state

logger = logging.getLogger(__name__)


class StackAlreadyRunning(RuntimeError):
    pass


@dataclass(frozen=True)
class Started:
    """Handed to the ``on_ready`` callback once everything has started and the state file is written."""

    stack: LocalStack
    state: dict[str, Any]


def ensure_not_running(config: StackConfig) -> None:
    try:
        state = read_state(config.state_dir / "stack.json")
    except StackNotRunning:
        return
    raise StackAlreadyRunning(
        f"a local stack is already running (pid {state['pid']}, {state['endpoint']}); stop it with "
        f"`emotionctl local down` or start this one with another --state-dir"
    )


async def serve(
    config: StackConfig,
    components: Sequence[Component] | None = None,
    on_ready: Callable[[Started], None] | None = None,
    *,
    handle_signals: bool = True,
) -> int:
    """Start the stack, write the state file, wait for a stop signal, stop everything, remove the file.

    ``handle_signals=False`` when not on the main thread (tests); then set ``stack.stopping`` to stop."""
    stack = LocalStack(config, default_components() if components is None else components)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for sig in signals:
        loop.add_signal_handler(sig, stack.stopping.set)
    path = stack.state_file
    try:
        try:
            await stack.start()
        except asyncio.CancelledError:
            logger.warning("stopped while starting")
            return 130
        except StartError as exc:
            logger.error("the local stack failed to start: %s", exc)
            return 1
        except Exception:
            logger.exception("the local stack failed to start")
            return 1
        state = stack.state()
        write_state(path, state)
        if on_ready is not None:
            on_ready(Started(stack, state))
        try:
            await asyncio.wait_for(stack.stopping.wait(), timeout=config.lifetime_seconds)
        except TimeoutError:
            logger.warning("lifetime of %s s reached: stopping", config.lifetime_seconds)
        logger.info("stopping")
        return 0
    finally:
        await stack.stop()
        remove_state(path, os.getpid())
        for sig in signals:
            loop.remove_signal_handler(sig)


def run(
    config: StackConfig,
    components: Sequence[Component] | None = None,
    on_ready: Callable[[Started], None] | None = None,
) -> int:
    ensure_not_running(config)
    code = asyncio.run(serve(config, components, on_ready))
    _exit_despite_stray_threads(code)
    return code


def _exit_despite_stray_threads(code: int, grace_seconds: float = 5.0) -> None:
    """Every component has stopped; a thread one of them left behind must not keep the process alive
    (Ctrl-C must end it). Name the culprits and leave without waiting for them."""
    deadline = time.monotonic() + grace_seconds
    while True:
        stray = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
                 and t.is_alive()]
        if not stray:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    logger.warning("threads still running after stop, exiting without them: %s", ", ".join(t.name for t in stray))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
