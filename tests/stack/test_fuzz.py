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
at hosts that cannot be reached; a session the fuzzer creates is stopped at once; capacity is kept at two.

Before the fuzzing, the document's own claims are checked one by one against the same server: its examples are
accepted, an undeclared method on each path answers 405 with the documented ``Allow``, every ``from``/``to``
the document declares valid is accepted and every other value refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator
from schemathesis import GenerationMode
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


FUZZ_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
}


# ---------------------------------------------------------------------- the document's own claims, first
# (before the fuzzing passes below fill the capacity and the session's viewer tokens)
DOC = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _concrete(path: str, session_id: str) -> str:
    return path.replace("{id}", session_id).replace("{tokenId}", "0" * 16)


def test_the_documents_examples_are_accepted(
    fuzz_stack: StackProcess, fuzz_auth: dict[str, str], fuzz_session: str
) -> None:
    """What the document shows a client is what the server takes: the create body (201), the list's from/to
    examples (200), the viewer-token body (201), the id examples (well-formed: 404 for a missing one, not 400)."""
    import requests

    url, paths = fuzz_stack.url, DOC["paths"]
    body = paths["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]["example"]
    created = requests.post(f"{url}/v1/sessions", json=body, headers=fuzz_auth, timeout=30)
    assert created.status_code == 201, created.text
    stopped = requests.post(f"{url}/v1/sessions/{created.json()['_id']}/stop", headers=fuzz_auth, timeout=30)
    assert stopped.status_code in (200, 400), stopped.text  # 400: its worker already failed (nothing serves it)
    query = {p["name"]: p["example"] for p in paths["/v1/sessions"]["get"]["parameters"] if "example" in p}
    assert set(query) == {"from", "to"}
    listed = requests.get(f"{url}/v1/sessions", params=query, headers=fuzz_auth, timeout=30)
    assert listed.status_code == 200, listed.text
    tokens = paths["/v1/sessions/{id}/viewer-tokens"]["post"]["requestBody"]["content"]["application/json"]["example"]
    minted = requests.post(f"{url}/v1/sessions/{fuzz_session}/viewer-tokens", json=tokens, headers=fuzz_auth,
                           timeout=30)
    assert minted.status_code == 201, minted.text
    for token in minted.json()["tokens"]:  # leave the session's viewer-token slots to the fuzzer
        gone = requests.delete(f"{url}/v1/sessions/{fuzz_session}/viewer-tokens/{token['tokenId']}",
                               headers=fuzz_auth, timeout=30)
        assert gone.status_code == 204, gone.text
    session_example = DOC["components"]["parameters"]["SessionId"]["example"]
    missing = requests.get(f"{url}/v1/sessions/{session_example}", headers=fuzz_auth, timeout=30)
    assert (missing.status_code, missing.json()["code"]) == (404, "session_not_found"), missing.text
    token_example = paths["/v1/sessions/{id}/viewer-tokens/{tokenId}"]["parameters"][1]["example"]
    revoked = requests.delete(f"{url}/v1/sessions/{fuzz_session}/viewer-tokens/{token_example}", headers=fuzz_auth,
                              timeout=30)
    assert (revoked.status_code, revoked.json()["code"]) == (404, "viewer_token_not_found"), revoked.text


@pytest.mark.parametrize("path", sorted(DOC["paths"]))
def test_undeclared_methods_answer_405_with_the_documented_allow(
    fuzz_stack: StackProcess, fuzz_auth: dict[str, str], fuzz_session: str, path: str
) -> None:
    import requests

    declared = sorted(method.upper() for method in DOC["paths"][path] if method.upper() in HTTP_METHODS)
    assert declared, path
    for method in sorted(set(HTTP_METHODS) - set(declared)):
        response = requests.request(method, fuzz_stack.url + _concrete(path, fuzz_session), headers=fuzz_auth,
                                    timeout=30)
        assert response.status_code == 405, (method, path, response.text)
        assert response.headers["Allow"] == ", ".join(declared), (method, path)
        assert response.json()["code"] == "method_not_allowed"
    # Without a token the gateway's authorizer answers first, as for every route: 401, nothing leaks.
    anonymous = requests.request("TRACE", fuzz_stack.url + _concrete(path, fuzz_session), timeout=30)
    assert anonymous.status_code == 401, anonymous.text


LIST_SESSIONS = schema["/v1/sessions"]["GET"]


@given(case=LIST_SESSIONS.as_strategy(GenerationMode.POSITIVE))
@seed(SEED + 3)
@settings(max_examples=60, **FUZZ_SETTINGS)
def test_every_documented_from_and_to_is_accepted(
    case: schemathesis.Case, fuzz_stack: StackProcess, fuzz_auth: dict[str, str]
) -> None:
    """Values the document declares valid (RFC 3339 dates and date-times among them) are answered 200; the one
    rule a schema cannot say (``from`` later than ``to``) is the only 400."""
    response = case.call(base_url=fuzz_stack.url, headers=fuzz_auth, timeout=30)
    if response.status_code == 400:
        assert "'from' must not be later than 'to'" in response.json()["message"], (case.query, response.text)
    else:
        assert response.status_code == 200, (case.query, response.text)


_FORMATS = OAS31Validator.FORMAT_CHECKER


@given(value=st.text(max_size=40) | st.from_regex(r"\A\d{4}-\d{2}-\d{2}[Tt ]?[\d:.+Zz-]{0,20}\Z"))
@seed(SEED + 4)
@settings(max_examples=80, **FUZZ_SETTINGS)
def test_every_from_outside_the_documented_formats_is_refused(
    value: str, fuzz_stack: StackProcess, fuzz_auth: dict[str, str]
) -> None:
    import requests

    documented = _FORMATS.conforms(value, "date") or _FORMATS.conforms(value, "date-time")
    response = requests.get(f"{fuzz_stack.url}/v1/sessions", params={"from": value}, headers=fuzz_auth, timeout=30)
    if documented:
        assert response.status_code == 200, (value, response.text)
    else:
        assert response.status_code == 400, (value, response.text)
        assert response.json()["code"] == "validation_failed"


# ---------------------------------------------------------------------- fuzzing
def _call_and_validate(case: schemathesis.Case, url: str, headers: dict[str, str]) -> Any:
    """Send the case and run the checks. A session it created is stopped at once: the create example streams from
    127.0.0.1 (accepted locally), and its worker must not hold one of the two capacity slots the other creates
    need. The one 5xx the document allows is 503 ``capacity_exhausted`` (a slot not yet released by a stopping
    worker); every other 5xx fails."""
    import requests

    response = case.call(base_url=url, headers=headers, timeout=30)
    if case.method.upper() == "POST" and case.path == "/v1/sessions" and response.status_code == 201:
        requests.post(f"{url}/v1/sessions/{response.json()['_id']}/stop", headers=headers, timeout=30)
    if response.status_code == 503 and '"code":"capacity_exhausted"' in response.text.replace(" ", ""):
        case.validate_response(response, checks=[c for c in CHECKS if c is not not_a_server_error])
    else:
        case.validate_response(response, checks=CHECKS)
    return response


@schema.parametrize()
@seed(SEED)
@settings(max_examples=EXAMPLES_PER_OPERATION, **FUZZ_SETTINGS)
def test_api_conforms_to_its_openapi_document(
    case: schemathesis.Case, fuzz_stack: StackProcess, fuzz_auth: dict[str, str], fuzz_session: str
) -> None:
    _on_real_session(case, fuzz_session)
    _call_and_validate(case, fuzz_stack.url, fuzz_auth)


@schema.parametrize()
@seed(SEED + 1)
@settings(max_examples=EXAMPLES_PER_OPERATION_VARIANT, **FUZZ_SETTINGS)
def test_problem_json_errors_conform_to_the_document(
    case: schemathesis.Case, fuzz_stack: StackProcess, fuzz_auth: dict[str, str], fuzz_session: str
) -> None:
    _on_real_session(case, fuzz_session)
    headers = {**fuzz_auth, "Accept": "application/problem+json"}
    response = _call_and_validate(case, fuzz_stack.url, headers)
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
    response = _call_and_validate(case, fuzz_stack.url, viewer_auth)
    # A viewer token never changes anything. (401: schemathesis sometimes sends an Authorization header of its
    # own making, e.g. an empty bearer token, instead of ours.)
    if case.method.upper() != "GET" and response.status_code < 500:
        assert response.status_code in (400, 401, 403, 404, 405, 429), (case.method, case.path, response.text)
