"""Black-box fixtures: one local stack (`emotionctl local up` as a subprocess) for the test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stack_support import StackProcess, start_stack


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """The stack on free ports with its own state dir; stopped by PID (SIGTERM) at the end of the session."""
    stack = start_stack(tmp_path_factory.mktemp("local-stack"))
    try:
        yield stack
    finally:
        code = stack.stop()
        assert code == 0, f"the local stack exited with {code}:\n{stack.log()}"
        assert not stack.state_file.exists(), "the local stack left its state file behind"
