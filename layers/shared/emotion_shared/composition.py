"""How every Lambda function builds its collaborators: once per cold start, from validated settings.

Each function has one :class:`CompositionRoot`, a module-level object next to the code it wires:

- REST API: :data:`emotion_shared.rest.deps.runtime` → :class:`~emotion_shared.rest.deps.ApiRuntime`;
- authorizer: :data:`emotion_shared.auth.authorizer_runtime` → :class:`~emotion_shared.auth.TokenStore`;
- WebSocket API and its idle sweeper: :data:`emotion_shared.ws.runtime.service`;
- publisher: :data:`emotion_shared.ws.runtime.publisher`;
- stale-worker sweeper: :data:`emotion_shared.sweeper.runtime`.

The first ``get()`` of an execution environment reads the settings (``<Settings>.from_env()``: a missing or
malformed variable fails that invocation with its name) and builds the clients and services; every later
invocation of that environment reuses them. Nothing is ever reset: a new environment (a new process) is a
new cold start. Tests inject what they need with :meth:`CompositionRoot.override`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class CompositionRoot[T]:
    """The collaborators of one function, built lazily by ``build`` and kept for the life of the process."""

    def __init__(self, name: str, build: Callable[[], T]) -> None:
        self.name = name
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()  # a function may use threads of its own (the publisher's push pool)

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    @contextmanager
    def override(self, value: T) -> Iterator[T]:
        """Use ``value`` instead of what ``build`` would make, until the block ends (then the previous state,
        built or not, comes back). The way tests inject collaborators; production code never calls it."""
        with self._lock:
            previous, self._value = self._value, value
        try:
            yield value
        finally:
            with self._lock:
                self._value = previous

    def __repr__(self) -> str:
        return f"CompositionRoot({self.name!r}, built={self._value is not None})"
