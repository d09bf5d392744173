"""Property-based fuzzing of the REST API against its own OpenAPI document (schemathesis).

Schemathesis generates valid and invalid requests for every operation of docs/openapi.yaml (bodies, query
strings, path ids, headers, content types) and checks each answer: never a 5xx, a status code the document
lists for that operation, a documented Content-Type and a body that matches the documented schema.

Three passes: as a user token with the default error body; as a user token asking for
``application/problem+json`` (every error answer must then be the documented RFC 9457 ``Problem`` object with
its ``code``); and as a viewer token (its reads, 403 writes and 404 elsewhere must all be documented). The
viewer-token routes are pointed at a real session of the fuzzing user, so minting (201 up to the 10-live
limit, then 409), listing and revoking are reached, not only the 404 of a random id.

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
from websocket_support import put_session

pytestmark = pytest.mark.stack

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SEED = 20261121
EXAMPLES_PER_OPERATION = 15
EXAMPLES_PER_OPERATION_VARIANT = 6
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


@pytest.fixture(scope="module")
def fuzz_session(fuzz_stack: StackProcess) -> str:
    """A session of the fuzzing user (written as the API writes it, without a worker)."""
    return put_session(fuzz_stack, "fuzzer", worker_state="stopped")


@pytest.fixture(scope="module")
def viewer_session(fuzz_stack: StackProcess) -> str:
    """The viewer token's session (its own: the fuzzing passes may fill fuzz_session's 10 viewer tokens)."""
    return put_session(fuzz_stack, "fuzzer", worker_state="stopped")


@pytest.fixture(scope="module")
def viewer_auth(fuzz_stack: StackProcess, fuzz_auth: dict[str, str], viewer_session: str) -> dict[str, str]:
    import requests

    minted = requests.post(f"{fuzz_stack.url}/v1/sessions/{viewer_session}/viewer-tokens", headers=fuzz_auth,
                           json={"count": 1, "expiresIn": 3600}, timeout=30)
    assert minted.status_code == 201, minted.text
    headers = {"Authorization": f"Bearer {minted.json()['tokens'][0]['token']}"}
    # The token works as a viewer token before the fuzzer starts (reads its session, cannot write).
    assert requests.get(f"{fuzz_stack.url}/v1/sessions/{viewer_session}", headers=headers, timeout=30).ok
    stop = requests.post(f"{fuzz_stack.url}/v1/sessions/{viewer_session}/stop", headers=headers, timeout=30)
    assert stop.status_code == 403, stop.text
    return headers


def _on_real_session(case: schemathesis.Case, session_id: str) -> None:
    """The viewer-token routes on a real session, so their success and limit answers are reached too."""
    if "viewer-tokens" in case.path and case.path_parameters is not None:
        case.path_parameters["id"] = session_id


FUZZ_SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
}


@schema.parametrize()
@seed(SEED)
@settings(max_examples=EXAMPLES_PER_OPERATION, **FUZZ_SETTINGS)
def test_api_conforms_to_its_openapi_document(
    case: schemathesis.Case, fuzz_stack: StackProcess, fuzz_auth: dict[str, str], fuzz_session: str
) -> None:
    _on_real_session(case, fuzz_session)
    case.call_and_validate(base_url=fuzz_stack.url, headers=fuzz_auth, checks=CHECKS, timeout=30)


@schema.parametrize()
@seed(SEED + 1)
@settings(max_examples=EXAMPLES_PER_OPERATION_VARIANT, **FUZZ_SETTINGS)
def test_problem_json_errors_conform_to_the_document(
    case: schemathesis.Case, fuzz_stack: StackProcess, fuzz_auth: dict[str, str], fuzz_session: str
) -> None:
    _on_real_session(case, fuzz_session)
    headers = {**fuzz_auth, "Accept": "application/problem+json"}
    response = case.call_and_validate(base_url=fuzz_stack.url, headers=headers, checks=CHECKS, timeout=30)
    if response.status_code >= 400:
        content_type = response.headers.get("content-type") or [""]
        assert content_type[0].startswith("application/problem+json"), response.text
        assert response.json()["code"]


@schema.parametrize()
@seed(SEED + 2)
@settings(max_examples=EXAMPLES_PER_OPERATION_VARIANT, **FUZZ_SETTINGS)
def test_viewer_token_answers_conform_to_the_document(
    case: schemathesis.Case, fuzz_stack: StackProcess, viewer_auth: dict[str, str], viewer_session: str
) -> None:
    _on_real_session(case, viewer_session)
    response = case.call_and_validate(base_url=fuzz_stack.url, headers=viewer_auth, checks=CHECKS, timeout=30)
    # A viewer token never changes anything. (401: schemathesis sometimes sends an Authorization header of its
    # own making, e.g. an empty bearer token, instead of ours.)
    if case.method.upper() != "GET" and response.status_code < 500:
        assert response.status_code in (400, 401, 403, 404, 429), (case.method, case.path, response.text)
