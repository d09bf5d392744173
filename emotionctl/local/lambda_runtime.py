"""Run the template's Lambda functions in this process: load the handler by path, invoke it with a context.

A function is ``CodeUri`` + ``Handler`` of an ``AWS::Serverless::Function`` in template.yaml; its module is
loaded once (Lambda's init phase) under a private module name, with its code directory on ``sys.path`` as in
Lambda (``/var/task``). The shared package comes from the editable install (the layer, locally).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class FunctionLoadError(RuntimeError):
    pass


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers (and Powertools) read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline_monotonic: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    logical_id: str
    code_dir: Path
    handler: str  # "module.function", as in the template
    timeout_seconds: float
    memory_mb: int
    function_name: str
    region: str
    account_id: str
    _entry: Callable[[Any, Any], Any] | None = field(default=None, repr=False)

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    def load(self) -> None:
        """Import the handler module (Lambda's init phase). Prints during import go to stderr, and so do
        loggers that bind ``sys.stdout`` at creation (Powertools): the stack's stdout stays readable."""
        module_name, _, attr = self.handler.rpartition(".")
        path = self.code_dir / (module_name.replace(".", "/") + ".py")
        if not path.is_file():
            raise FunctionLoadError(f"{self.logical_id}: handler file {path} does not exist (CodeUri + Handler)")
        if str(self.code_dir) not in sys.path:
            sys.path.append(str(self.code_dir))
        spec = importlib.util.spec_from_file_location(f"_lambda_{self.logical_id}", path)
        if spec is None or spec.loader is None:
            raise FunctionLoadError(f"{self.logical_id}: cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        with contextlib.redirect_stdout(sys.stderr):
            spec.loader.exec_module(module)
        entry = getattr(module, attr, None)
        if not callable(entry):
            raise FunctionLoadError(f"{self.logical_id}: {path} has no callable {attr!r}")
        self._entry = entry

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.function_name,
            memory_limit_in_mb=self.memory_mb,
            invoked_function_arn=self.arn,
            aws_request_id=str(uuid.uuid4()),
            deadline_monotonic=time.monotonic() + self.timeout_seconds,
            log_group_name=f"/aws/lambda/{self.function_name}",
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        """Call the handler synchronously (from a worker thread). Exceptions propagate (a function error)."""
        if self._entry is None:
            self.load()
        assert self._entry is not None
        return self._entry(event, self.context())


def functions_from_template(
    template: dict[str, Any],
    resolve: Callable[[Any], Any],
    *,
    base_dir: Path,
    name_prefix: str,
    region: str,
    account_id: str,
) -> dict[str, LocalFunction]:
    """Every ``AWS::Serverless::Function`` of the template with a local ``CodeUri`` (relative to the template's
    directory ``base_dir``), not loaded yet."""
    defaults = template.get("Globals", {}).get("Function", {})
    functions: dict[str, LocalFunction] = {}
    for logical, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = {**defaults, **resource.get("Properties", {})}
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str) or code_uri.startswith("s3://") or props.get("PackageType") == "Image":
            continue
        functions[logical] = LocalFunction(
            logical_id=logical,
            code_dir=(base_dir / code_uri).resolve(),
            handler=str(props.get("Handler", "app.lambda_handler")),
            timeout_seconds=float(resolve(props.get("Timeout", 3))),
            memory_mb=int(resolve(props.get("MemorySize", 128))),
            function_name=f"{name_prefix}-{logical}",
            region=region,
            account_id=account_id,
        )
    return functions


def function_environment(template: dict[str, Any], logical_id: str, resolve: Callable[[Any], Any]) -> dict[str, str]:
    """Globals' variables overlaid with the function's own, intrinsics resolved (values as strings)."""
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    resource = template["Resources"][logical_id]
    own = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
    merged = {**globals_env, **own}
    env = {}
    for name, value in merged.items():
        resolved = resolve(value)
        env[name] = ("true" if resolved else "false") if isinstance(resolved, bool) else str(resolved)
    return env
