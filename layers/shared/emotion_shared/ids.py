"""Session ids: 24 lowercase hex characters, ordered by creation time (like a MongoDB ObjectId).

Layout (as an ObjectId): 4 bytes of epoch seconds, 5 random bytes drawn once per process, 3 bytes of a
per-process counter. Sorting ids sorts sessions by creation second, and within a second by creation order
for sessions created by the same process, which the ``byUser`` index uses for "newest first" and for time
ranges. (Per-id random bytes would shuffle sessions created within the same second.)
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import threading

_ID_RE = re.compile(r"^[0-9a-f]{24}$")
_lock = threading.Lock()
_process_random = ""
_counter: itertools.count[int] = itertools.count()


def _reseed() -> None:
    global _process_random, _counter
    _process_random = secrets.token_hex(5)
    _counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_session_id(epoch_seconds: int) -> str:
    with _lock:
        count = next(_counter) & 0xFFFFFF
    return f"{epoch_seconds & 0xFFFFFFFF:08x}{_process_random}{count:06x}"


def is_session_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def lowest_id_at(epoch_seconds: int) -> str:
    """The smallest id that a session created at ``epoch_seconds`` can have."""
    return f"{max(0, min(epoch_seconds, 0xFFFFFFFF)):08x}" + "0" * 16


def highest_id_at(epoch_seconds: int) -> str:
    """The largest id that a session created at ``epoch_seconds`` can have."""
    return f"{max(0, min(epoch_seconds, 0xFFFFFFFF)):08x}" + "f" * 16
