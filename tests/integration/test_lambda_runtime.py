"""The local Lambda runtime (emotionctl.local.lambda_runtime): every function in worker processes of its own,
with its own environment, its handler module imported once per process and kept warm between invocations.
Real processes (forkserver), tiny handler fixtures; nothing here needs AWS."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from emotionctl.local.lambda_runtime import (
    FunctionError,
    FunctionLoadError,
    FunctionSpec,
    LambdaFunction,
    running,
)

HANDLER = '''
import os, pathlib, time

IMPORTED_IN = os.getpid()  # module state: set once, at the cold start of this process
STATE = {"invocations": 0}

def handler(event, context):
    STATE["invocations"] += 1
    if event.get("raise"):
        raise ValueError("handler failure: " + event["raise"])
    if event.get("rendezvous"):  # wait until `count` invocations are running at once (each in its process)
        folder = pathlib.Path(event["rendezvous"])
        (folder / str(os.getpid())).touch()
        deadline = time.monotonic() + 30
        while len(list(folder.iterdir())) < event["count"] and time.monotonic() < deadline:
            time.sleep(0.01)
    return {
        "pid": os.getpid(),
        "importedIn": IMPORTED_IN,
        "invocations": STATE["invocations"],
        "env": {k: os.environ.get(k) for k in ("ONLY_A", "ONLY_B", "SHARED", "STACK_ONLY",
                                               "AWS_LAMBDA_FUNCTION_NAME", "_HANDLER")},
        "function": context.function_name,
        "remainingMs": context.get_remaining_time_in_millis(),
    }
'''


def spec(tmp: Path, name: str, env: dict[str, str], code: str = HANDLER, max_workers: int = 2) -> FunctionSpec:
    code_dir = tmp / name
    code_dir.mkdir()
    (code_dir / "app.py").write_text(textwrap.dedent(code), encoding="utf-8")
    return FunctionSpec(logical_id=name, code_dir=code_dir, handler="app.handler", timeout_seconds=10,
                        memory_mb=128, function_name=f"test-{name}", region="us-east-1", account_id="123456789012",
                        environment=env, max_workers=max_workers)


def test_two_invocations_of_one_function_hit_the_same_warm_worker(tmp_path: Path) -> None:
    # Given a started function (one execution environment cold-started)
    with running(spec(tmp_path, "A", {"ONLY_A": "a"})) as function:
        # When it is invoked twice, one after the other
        first = function.invoke_sync({})
        second = function.invoke_sync({})
        described = function.describe()
    # Then both ran in the same worker process, not in this one, with the module imported once and its state kept
    assert first["pid"] == second["pid"] != os.getpid()
    assert first["importedIn"] == second["importedIn"] == first["pid"]
    assert (first["invocations"], second["invocations"]) == (1, 2)
    assert described["workers"] == [first["pid"]]
    assert (described["invocations"], described["coldStarts"]) == (2, 1)
    assert first["function"] == "test-A" and 0 < first["remainingMs"] <= 10_000


def test_two_functions_never_share_a_process_or_an_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a variable in the stack's own environment and two functions with different environments
    monkeypatch.setenv("STACK_ONLY", "not for the functions")
    a_spec = spec(tmp_path, "A", {"ONLY_A": "a", "SHARED": "from A"})
    b_spec = spec(tmp_path, "B", {"ONLY_B": "b", "SHARED": "from B"})
    with running(a_spec) as a, running(b_spec) as b:
        # When each is invoked
        from_a, from_b = a.invoke_sync({}), b.invoke_sync({})
        again_a = a.invoke_sync({})
    # Then each ran in a process of its own, saw only its own environment, and kept its own module state
    assert len({from_a["pid"], from_b["pid"], os.getpid()}) == 3
    assert from_a["env"] == {"ONLY_A": "a", "ONLY_B": None, "SHARED": "from A", "STACK_ONLY": None,
                             "AWS_LAMBDA_FUNCTION_NAME": "test-A", "_HANDLER": "app.handler"}
    assert from_b["env"] == {"ONLY_A": None, "ONLY_B": "b", "SHARED": "from B", "STACK_ONLY": None,
                             "AWS_LAMBDA_FUNCTION_NAME": "test-B", "_HANDLER": "app.handler"}
    assert (from_a["invocations"], from_b["invocations"], again_a["invocations"]) == (1, 1, 2)


def test_concurrent_invocations_run_in_separate_processes_up_to_the_bound(tmp_path: Path) -> None:
    # Given a function of at most 2 execution environments
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    function = LambdaFunction(spec(tmp_path, "A", {}, max_workers=2))
    function.start()
    try:
        # When two invocations must be running at the same time to finish (each waits for the other)
        futures = [function.submit({"rendezvous": str(rendezvous), "count": 2}) for _ in range(2)]
        results = [f.result(timeout=60)["result"] for f in futures]
        # Then they ran in two processes (a process runs one invocation at a time), and never more than the bound
        assert len({r["pid"] for r in results}) == 2
        assert len(list(rendezvous.iterdir())) == 2
        third = function.invoke_sync({})
        assert third["pid"] in {r["pid"] for r in results}
    finally:
        function.stop()


def test_a_handler_error_comes_back_as_lambda_reports_it_and_the_worker_stays(tmp_path: Path) -> None:
    with running(spec(tmp_path, "A", {})) as function:
        with pytest.raises(FunctionError) as raised:
            function.invoke_sync({"raise": "boom"})
        after = function.invoke_sync({})
    assert raised.value.error_type == "ValueError"
    assert raised.value.message == "handler failure: boom"
    assert any("handler failure" in line for line in raised.value.stack_trace)
    assert after["invocations"] == 2  # the same warm environment served the next invocation
    assert function.describe()["errors"] == 1


def test_a_handler_that_cannot_load_fails_at_start_with_its_traceback(tmp_path: Path) -> None:
    broken = spec(tmp_path, "Broken", {},
                  code="import not_a_module_anywhere\n\ndef handler(event, context):\n    pass\n")
    with pytest.raises(FunctionLoadError, match="not_a_module_anywhere"):
        with running(broken):
            pass
    missing: Any = spec(tmp_path, "NoHandler", {}, code="def other(event, context):\n    pass\n")
    with pytest.raises(FunctionLoadError, match="no callable 'handler'"):
        with running(missing):
            pass
