"""Property-based fuzzing of the REST API against its own OpenAPI document (schemathesis).

Schemathesis generates valid and invalid requests for every operation of docs/openapi.yaml (bodies, query
strings, path ids, headers, content types) and checks each answer: never a 5xx, a status code the document
lists for that operation, a documented Content-Type and a body that matches the documented schema.

Bounded: a fixed seed and a few examples per operation, so the run is reproducible and short. The stack is
its own (``start_stack``, the helper behind the session fixture) because the fuzzer sends hundreds of requests
and creates sessions: the default rate limit (60 a minute) would turn most answers into 429s, and sessions it
creates must not take capacity from other tests. Generated stream URIs either fail validation (400) or point
at hosts that cannot be reached, whose workers fail fast; capacity is kept at two sessions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from stack_support import StackProcess, start_stack

pytestmark = pytest.mark.stack

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SEED = 20261121
EXAMPLES_PER_OPERATION = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_path(SPEC)


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    stack = start_stack(
        tmp_path_factory.mktemp("fuzz-stack"),
        "RateLimitCapacity=100000", "MaxActiveSessions=2", "MaxActiveSessionsPerUser=2",
    )
    try:
        yield stack
    finally:
        code = stack.stop()
        assert code == 0, f"the local stack exited with {code}:\n{stack.log()}"


@pytest.fixture(scope="module")
def fuzz_auth(fuzz_stack: StackProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {fuzz_stack.token('fuzzer')}"}


@schema.parametrize()
@seed(SEED)
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_api_conforms_to_its_openapi_document(
    case: schemathesis.Case, fuzz_stack: StackProcess, fuzz_auth: dict[str, str]
) -> None:
    case.call_and_validate(base_url=fuzz_stack.url, headers=fuzz_auth, checks=CHECKS, timeout=30)
