"""Black box over HTTP: the local stack started by `emotionctl local up`, tokens minted by `emotionctl token`."""

from __future__ import annotations

import re

import pytest
import yaml
from stack_support import REPO, StackProcess, assert_reference_error, emotionctl

pytestmark = pytest.mark.stack

UNREACHABLE_STREAM = "rtmp://127.0.0.1:9/live/nothing-here"


def test_health_needs_no_token(local_stack: StackProcess) -> None:
    response = local_stack.request("GET", "/health", user=None)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert "gateway" in body["components"]


def test_openapi_document_is_served(local_stack: StackProcess) -> None:
    served = local_stack.request("GET", "/openapi.yaml", user=None)
    assert served.status_code == 200
    assert served.text == (REPO / "docs" / "openapi.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(served.text)
    assert document["openapi"].startswith("3.")
    assert "/v1/sessions" in document["paths"]
    as_json = local_stack.request("GET", "/openapi.json", user=None)
    assert as_json.status_code == 200
    assert as_json.json() == document


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer emo_not-a-real-token"},
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
    ids=["none", "empty", "bearer-nothing", "unknown", "basic", "huge"],
)
def test_requests_without_a_valid_token_are_401(local_stack: StackProcess, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/v1/sessions"), ("POST", "/v1/sessions"), ("DELETE", "/v1/sessions/abc")):
        response = local_stack.request(method, path, user=None, headers=headers)
        assert_reference_error(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_unknown_route_is_404_in_the_reference_body(local_stack: StackProcess) -> None:
    assert_reference_error(local_stack.request("GET", "/v2/sessions"), 404)
    assert_reference_error(local_stack.request("GET", "/nothing-here", user=None), 404)


def test_token_create_prints_only_the_token(local_stack: StackProcess) -> None:
    result = emotionctl("token", "create", "--user", "carol", "--stack-file", str(local_stack.state_file))
    token = result.stdout
    assert re.fullmatch(r"\S{20,}\n", token), repr(token)
    response = local_stack.request("GET", "/v1/sessions", user=None,
                                   headers={"Authorization": f"Bearer {token.strip()}"})
    assert response.status_code == 200


def test_token_create_without_a_stack_says_how_to_start_one(tmp_path: pytest.TempPathFactory) -> None:
    result = emotionctl("token", "create", "--user", "alice", "--stack-file", f"{tmp_path}/stack.json", check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "emotionctl local up" in result.stderr


def test_session_round_trip(local_stack: StackProcess) -> None:
    # create
    created = local_stack.request("POST", "/v1/sessions",
                                  json={"name": "stack test", "streamUri": UNREACHABLE_STREAM})
    assert created.status_code == 201, created.text
    session = created.json()
    sid = session["_id"]
    assert re.fullmatch(r"[0-9a-f]{24}", sid)
    assert (session["name"], session["state"], session["user"]) == ("stack test", "active", "alice")
    for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"):
        assert header in created.headers
    # get and list
    fetched = local_stack.request("GET", f"/v1/sessions/{sid}")
    assert fetched.status_code == 200
    assert fetched.json()["_id"] == sid
    listed = local_stack.request("GET", "/v1/sessions", params={"limit": 100})
    assert sid in [s["_id"] for s in listed.json()["data"]]
    # another user sees nothing of it
    assert_reference_error(local_stack.request("GET", f"/v1/sessions/{sid}", user="bob"), 404)
    assert sid not in [s["_id"] for s in local_stack.request("GET", "/v1/sessions", user="bob").json()["data"]]
    # emotions (none yet)
    emotions = local_stack.request("GET", f"/v1/sessions/{sid}/emotions")
    assert emotions.status_code == 200
    assert emotions.json()["session"] == sid
    assert set(emotions.json()["emotions"]) >= {"happiness", "neutral"}
    timeline = local_stack.request("GET", f"/v1/sessions/{sid}/emotions/timeline", params={"granularity": 5})
    assert timeline.status_code == 200
    assert timeline.json() == {"session": sid, "timeline": []}
    # delete while active is refused
    assert_reference_error(local_stack.request("DELETE", f"/v1/sessions/{sid}"), 400)
    # stop
    stopped = local_stack.request("POST", f"/v1/sessions/{sid}/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "finished"
    assert stopped.json()["meta"]["stopReason"] == "user_request"
    assert_reference_error(local_stack.request("POST", f"/v1/sessions/{sid}/stop"), 400)
    # delete
    deleted = local_stack.request("DELETE", f"/v1/sessions/{sid}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_reference_error(local_stack.request("GET", f"/v1/sessions/{sid}"), 404)


def test_invalid_bodies_are_400_never_5xx(local_stack: StackProcess) -> None:
    for body in (b"", b"{", b"[]", b'{"name": "x"}', b"\xff\xfe", b'{"name": "", "streamUri": "rtmp://h/x"}'):
        response = local_stack.request("POST", "/v1/sessions", data=body,
                                       headers={"Content-Type": "application/json"})
        assert_reference_error(response, 400)
