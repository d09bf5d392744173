"""Start `emotionctl local up` as a subprocess for black-box tests, and talk to it over HTTP.

:func:`start_stack` is what the session fixture ``local_stack`` uses; tests that need their own stack (other
parameters, a lifecycle check) call it directly and must ``stop()`` it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from emotion_shared.errors import ErrorCode

from emotionctl.ports import free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0  # a cold import of everything on a busy 2-core machine
LIFETIME = 1800.0  # the stack stops by itself if a test run dies without stopping it


def emotionctl(*args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emotionctl", *args],
        capture_output=True, text=True, timeout=timeout, check=check, cwd=REPO,
    )


@dataclass
class StackProcess:
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    state: dict[str, Any] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.state["endpoint"])

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def token(self, user: str, product: str | None = None) -> str:
        """A token for ``user`` minted by the real CLI (cached per user/product)."""
        key = f"{user}/{product}"
        if key not in self._tokens:
            args = ["token", "create", "--user", user, "--stack-file", str(self.state_file)]
            if product:
                args += ["--product", product]
            self._tokens[key] = emotionctl(*args).stdout.strip()
        return self._tokens[key]

    def request(self, method: str, path: str, user: str | None = "alice", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if user is not None:
            headers.setdefault("Authorization", f"Bearer {self.token(user)}")
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the stack's process (by PID) and wait; kills it if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError(f"the local stack did not stop within {timeout} s:\n{self.log()}") from None
        return int(self.process.returncode)


def start_stack(state_dir: Path, *params: str, extra_args: tuple[str, ...] = ()) -> StackProcess:
    """`emotionctl local up` on free ports with its own state dir; returns once /health answers.

    ``params`` are template parameter overrides, e.g. ``"MaxActiveSessions=4"``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "stack.log"
    args = [
        sys.executable, "-m", "emotionctl", "local", "up",
        "--port", str(free_port()), "--moto-port", str(free_port()),
        "--state-dir", str(state_dir), "--lifetime", str(LIFETIME), "--no-dev-token",
        *(a for p in params for a in ("--param", p)),
        *extra_args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ))
    stack = StackProcess(process=process, state_dir=state_dir, log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(f"emotionctl local up exited with {process.returncode}:\n{stack.log()}")
        if stack.state_file.exists():
            try:
                stack.state = json.loads(stack.state_file.read_text(encoding="utf-8"))
                if requests.get(stack.url + "/health", timeout=2).status_code == 200:
                    return stack
            except (ValueError, requests.RequestException):
                pass
        if time.monotonic() > deadline:
            stack.stop(signal.SIGKILL)
            raise AssertionError(f"the local stack did not become healthy in {START_TIMEOUT} s:\n{stack.log()}")
        time.sleep(0.2)


def assert_reference_error(response: requests.Response, status: int) -> dict[str, Any]:
    """The reference API's error body, with the status it is answered with."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body.get("error") is True, body
    assert body.get("status") == status, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert body.get("code") in {code.value for code in ErrorCode}, body  # the machine-readable code
    return body
