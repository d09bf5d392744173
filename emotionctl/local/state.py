"""The local stack's state file (``<state dir>/stack.json``): how tools find a running stack.

Written atomically once every component has started, removed when the stack stops. Format (version 1)::

    {
      "version": 1,
      "pid": 4242,                                  # the `emotionctl local up` process
      "startedAt": "2025-01-01T10:00:00.000Z",
      "endpoint": "http://127.0.0.1:3000",          # REST API base URL (routes under /v1)
      "healthUrl": "http://127.0.0.1:3000/health",
      "openapiUrl": "http://127.0.0.1:3000/openapi.yaml",
      "stage": "dev",
      "aws": {"endpoint": "http://127.0.0.1:5123", "region": "us-east-1", "accountId": "123456789012"},
      "ports": {"gateway": 3000, "moto": 5123},
      "tables": {"SessionsTable": "local-SessionsTable", ...},   # template logical id -> table name
      "env": {"SESSIONS_TABLE": "local-SessionsTable", ...},      # what the functions get
      "resources": {"SessionsTable": "local-SessionsTable", ...}, # every resolved !Ref
      "components": {"moto": {...}, "gateway": {...}}            # each component's describe()
    }

Components may add top-level keys through :meth:`LocalStack.state`; readers ignore keys they do not know.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .template import REPO_ROOT

STATE_FILE_NAME = "stack.json"
STATE_VERSION = 1
STATE_DIR_ENV = "EMOTIONCTL_STATE_DIR"


class StackNotRunning(RuntimeError):
    """No state file, or the process it names is gone."""


def default_state_dir() -> Path:
    override = os.environ.get(STATE_DIR_ENV)
    return Path(override) if override else REPO_ROOT / ".local"


def state_path(state_dir: Path | None = None) -> Path:
    return (state_dir or default_state_dir()) / STATE_FILE_NAME


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie — exited, not yet reaped — counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_state(path: Path, *, require_alive: bool = True) -> dict[str, Any]:
    """The state of the stack at ``path``; :class:`StackNotRunning` when there is none (or it is stale)."""
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StackNotRunning(
            f"no local stack is running ({path} does not exist): start one with `make run` or "
            "`emotionctl local up`"
        ) from None
    except (OSError, ValueError) as exc:
        raise StackNotRunning(f"cannot read the local stack's state file {path}: {exc}") from exc
    if state.get("version") != STATE_VERSION:
        raise StackNotRunning(f"{path} has state format {state.get('version')!r}, expected {STATE_VERSION}")
    pid = state.get("pid")
    if require_alive and (not isinstance(pid, int) or not pid_alive(pid)):
        raise StackNotRunning(f"the local stack recorded in {path} (pid {pid}) is not running any more")
    return state


def remove_state(path: Path, pid: int) -> None:
    """Remove the state file if it is this process's (never another stack's)."""
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if current.get("pid") == pid:
        path.unlink(missing_ok=True)
