"""What tests and benches share: polling for a condition (``wait_for``), a free local port (``free_port``,
:mod:`emotionctl.ports`) and the skip-unless-installed rule for Debian programs (``needs``). Tests import it as
``testsupport`` (``tests/`` is on ``sys.path`` under pytest); a bench puts ``tests/`` on its path first. Never
timed assertions: a deadline only bounds how long a failure takes."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

import pytest

from emotionctl.media.live_sources import ToolMissing, require_tools
from emotionctl.ports import free_port

__all__ = ["free_port", "needs", "wait_for"]


def needs(*tools: str) -> None:
    """Skip the test when a Debian program it needs is missing (with the install command); under CI (``CI`` set,
    where ``.ci/run`` installs them all) a missing program fails it instead: nothing is skipped unseen."""
    try:
        require_tools(*tools)
    except ToolMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def wait_for[T](
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    process: subprocess.Popen[bytes] | None = None,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that. Fails (``AssertionError`` naming
    ``what``) after ``timeout`` seconds, or as soon as ``process`` (when given) has exited without the condition
    holding; ``context()`` (e.g. the process's log) is added to the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        exited = process is not None and process.poll() is not None
        if exited or time.monotonic() > deadline:
            value = predicate()  # one last look: the condition may have come with the exit
            if value:
                return value
            why = f"the process exited ({process.poll()})" if exited and process is not None else (
                f"timed out after {timeout:.0f} s"
            )
            detail = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"{why} waiting for {what}{detail}")
        time.sleep(interval)
