# ruff: noqa: F811 - pytest fixtures imported from api_support are redefined as parameters
"""Viewer tokens through the real handlers against moto: minting (secrets once, at most 10 live), listing
without secrets, revoking, dying with the session; the authorizer's context for them; what they may do on
REST (one place: emotion_shared.access) and on the WebSocket (subscribe to their session only); error codes
on the WebSocket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_support import Api, api, api_env  # noqa: F401 - fixtures
from emotion_shared import auth
from emotion_shared.audio import Segment, SegmentStore
from emotion_shared.auth import Principal, Scope
from emotion_shared.viewers import viewers_key
from test_ws_handlers import CONNECTION, RecordingManagement, event, function, ws_runtimes


def stopped(api: Api, user: str = "alice") -> str:
    sid = api.create(user=user).body["_id"]
    assert api.call("POST", f"/v1/sessions/{sid}/stop", user=user).status == 200
    return sid


def mint(api: Api, sid: str, count: int = 1, expires_in: int = 600, user: str = "alice") -> list[dict[str, Any]]:
    resp = api.call("POST", f"/v1/sessions/{sid}/viewer-tokens", body={"count": count, "expiresIn": expires_in},
                    user=user)
    assert resp.status == 201, resp.body
    return list(resp.body["tokens"])


def viewer_context(token: str) -> dict[str, str]:
    context = auth.authorize({"Authorization": f"Bearer {token}"})
    assert context is not None
    return context


def test_minted_tokens_read_their_session_and_nothing_else(api: Api, dynamodb: Any, api_env: dict[str, str]) -> None:
    sid, other = stopped(api), stopped(api)
    spoken = {"positive": 0.6, "neutral": 0.4, "negative": 0.0, "compound": 0.8}
    SegmentStore(dynamodb, api_env["EMOTIONS_TABLE"]).write(sid, [Segment(1.0, 3.0, "hello viewers", spoken)])
    stranger = stopped(api, user="bob")
    (minted,) = mint(api, sid)
    assert minted["session"] == sid and minted["token"].startswith("emo_") and minted["lastUsedAt"] is None
    context = viewer_context(minted["token"])
    assert context == {"user": "alice", "product": "standard", "scope": "viewer", "tokenId": minted["tokenId"],
                       "sessionId": sid}
    as_viewer = {"authorizer": context}
    reads = ("", "/emotions", "/emotions/timeline", "/audio/transcription-sentiment", "/audio/transcript")
    for read in reads:
        resp = api.call("GET", f"/v1/sessions/{sid}{read}", **as_viewer)
        assert resp.status == 200, (read, resp.body)
    transcript = api.call("GET", f"/v1/sessions/{sid}/audio/transcript", **as_viewer).body["segments"]
    assert [segment["text"] for segment in transcript] == ["hello viewers"]
    for path in (*(f"/v1/sessions/{other}{read}" for read in reads), f"/v1/sessions/{stranger}",
                 f"/v1/sessions/{stranger}/audio/transcript", f"/v1/sessions/{other}/viewer-tokens",
                 f"/v1/sessions/{sid}/viewer-tokens"):
        resp = api.call("GET", path, **as_viewer)
        assert (resp.status, resp.body["code"]) == (404, "session_not_found"), path
    resp = api.call("GET", "/v1/sessions", **as_viewer)
    assert (resp.status, resp.body["code"]) == (404, "route_not_found")
    writes = [("POST", f"/v1/sessions/{sid}/stop"), ("DELETE", f"/v1/sessions/{sid}"),
              ("POST", f"/v1/sessions/{sid}/viewer-tokens"),
              ("DELETE", f"/v1/sessions/{sid}/viewer-tokens/{minted['tokenId']}")]
    for method, path in writes:
        resp = api.call(method, path, **as_viewer)
        assert (resp.status, resp.body["code"]) == (403, "forbidden"), path
    assert api.create(**as_viewer).body["code"] == "forbidden"
    # writes on other sessions look like a stranger's
    resp = api.call("POST", f"/v1/sessions/{other}/stop", **as_viewer)
    assert (resp.status, resp.body["code"]) == (404, "session_not_found")


def test_listing_never_shows_secrets_and_revoke_refuses_the_token(api: Api, dynamodb: Any,
                                                                  api_env: dict[str, str]) -> None:
    sid = stopped(api)
    minted = mint(api, sid, count=3)
    listed = api.call("GET", f"/v1/sessions/{sid}/viewer-tokens")
    assert {t["tokenId"] for t in listed.body["data"]} == {t["tokenId"] for t in minted}
    assert all("token" not in t for t in listed.body["data"])
    assert all(m["token"] not in json.dumps(listed.body) for m in minted)
    stored = json.dumps(dynamodb.scan(TableName=api_env["CONTROL_TABLE"])["Items"])
    assert all(m["token"] not in stored for m in minted)  # only hashes are stored
    victim = minted[0]
    assert auth.TokenStore(dynamodb, api_env["CONTROL_TABLE"]).lookup(victim["token"]) is not None
    assert api.call("DELETE", f"/v1/sessions/{sid}/viewer-tokens/{victim['tokenId']}").status == 204
    assert auth.TokenStore(dynamodb, api_env["CONTROL_TABLE"]).lookup(victim["token"]) is None
    resp = api.call("DELETE", f"/v1/sessions/{sid}/viewer-tokens/{victim['tokenId']}")
    assert (resp.status, resp.body["code"]) == (404, "viewer_token_not_found")
    left = api.call("GET", f"/v1/sessions/{sid}/viewer-tokens").body["data"]
    assert {t["tokenId"] for t in left} == {t["tokenId"] for t in minted[1:]}
    # another user's session: as for a stranger
    resp = api.call("GET", f"/v1/sessions/{sid}/viewer-tokens", user="bob")
    assert (resp.status, resp.body["code"]) == (404, "session_not_found")


def test_at_most_ten_live_per_session(api: Api, dynamodb: Any, api_env: dict[str, str]) -> None:
    sid = stopped(api)
    first = mint(api, sid, count=4)
    mint(api, sid, count=6)
    resp = api.call("POST", f"/v1/sessions/{sid}/viewer-tokens", body={"count": 1})
    assert (resp.status, resp.body["code"]) == (409, "viewer_token_limit"), resp.body
    assert len(api.call("GET", f"/v1/sessions/{sid}/viewer-tokens").body["data"]) == 10
    # revoking one frees a slot; a request for more than the free slots mints nothing
    api.call("DELETE", f"/v1/sessions/{sid}/viewer-tokens/{first[0]['tokenId']}")
    assert api.call("POST", f"/v1/sessions/{sid}/viewer-tokens", body={"count": 2}).status == 409
    assert len(mint(api, sid, count=1)) == 1
    assert api.call("POST", f"/v1/sessions/{sid}/viewer-tokens", body={"count": 11}).status == 400


def test_expired_tokens_free_their_slot_and_are_refused(api: Api, dynamodb: Any, api_env: dict[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    sid = stopped(api)
    expiring = mint(api, sid, count=10, expires_in=60)
    now = auth.now_ms()
    later = now + 61_000
    monkeypatch.setattr(auth, "now_ms", lambda: later)
    assert auth.TokenStore(dynamodb, api_env["CONTROL_TABLE"]).lookup(expiring[0]["token"]) is None
    # the service's clock: move it past the expiry too
    from emotion_shared.rest import deps

    monkeypatch.setattr(deps.get().service, "_clock", lambda: later)
    assert api.call("GET", f"/v1/sessions/{sid}/viewer-tokens").body["data"] == []
    assert len(mint(api, sid, count=10)) == 10


def test_viewer_tokens_die_with_their_session(api: Api, dynamodb: Any, api_env: dict[str, str]) -> None:
    sid = stopped(api)
    minted = mint(api, sid, count=2)
    assert api.call("DELETE", f"/v1/sessions/{sid}").status == 204
    store = auth.TokenStore(dynamodb, api_env["CONTROL_TABLE"])
    assert all(store.lookup(m["token"]) is None for m in minted)
    assert "Item" not in dynamodb.get_item(TableName=api_env["CONTROL_TABLE"], Key={"pk": {"S": viewers_key(sid)}})
    resp = api.call("POST", f"/v1/sessions/{sid}/viewer-tokens", body={})
    assert (resp.status, resp.body["code"]) == (404, "session_not_found")


def test_principal_context_round_trip() -> None:
    viewer = Principal("alice", "pro", Scope.VIEWER, "6b0132c8b44a3d8f7cee4301", "0123456789abcdef")
    assert Principal.from_context(viewer.context()) == viewer
    assert Principal.from_context({"user": "alice"}) == Principal("alice", "standard")
    assert Principal.from_context({"user": "alice", "scope": "viewer"}) is None  # a viewer without a session
    assert Principal.from_context({"user": "alice", "scope": "admin"}) is None


# ---------------------------------------------------------------------- WebSocket
@pytest.fixture
def ws_env(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("WEBSOCKET_MANAGEMENT_ENDPOINT", "http://127.0.0.1:9/unused")
    monkeypatch.setenv("TOKEN_CACHE_SECONDS", "0")
    management = RecordingManagement()
    with ws_runtimes(management):
        yield management


def message(body: dict[str, Any]) -> dict[str, Any]:
    raw = event("ws/message_auth.json")
    raw["body"] = json.dumps(body)
    return raw


def test_a_viewer_token_subscribes_to_its_session_only(api: Api, ws_env: RecordingManagement) -> None:
    ws = function("WebSocketFunction", "ws")
    sid, other = stopped(api), stopped(api)
    (minted,) = mint(api, sid)
    ws.invoke(event("ws/connect.json"))
    ws.invoke(event("ws/message_auth.json", TOKEN=minted["token"]))
    ws.invoke(event("ws/message_subscribe.json", SESSION_ID=sid))
    ws.invoke(message({"id": 3, "path": "channels:subscribe",
                       "body": {"channel": "session_worker_state", "key": other}}))
    ws.invoke(message({"id": 4, "path": "channels:subscribe",
                       "body": {"channel": "session_emotions_counts", "key": f"{sid}:5s"}}))
    ws.invoke(message({"id": 5, "path": "nope"}))
    ws.invoke(message({"id": 6, "path": "channels:subscribe", "body": {"channel": "nope", "key": sid}}))
    posts = ws_env.posts[CONNECTION]
    assert posts[0]["status"] == 200
    assert posts[1]["status"] == 200 and posts[2][2] == "sws"  # its own session: subscribed, current state
    assert posts[3]["status"] == 404 and posts[3]["body"]["code"] == "session_not_found"
    assert posts[4]["status"] == 200
    assert posts[5]["body"]["code"] == "unknown_path" and posts[6]["body"]["code"] == "unknown_channel"
    # revoked: the next message is refused and the connection closed
    assert api.call("DELETE", f"/v1/sessions/{sid}/viewer-tokens/{minted['tokenId']}").status == 204
    ws.invoke(message({"id": 7, "path": "ping"}))
    assert posts[-1]["status"] == 401 and posts[-1]["body"]["code"] == "unauthorized"
    assert ws_env.deleted == [CONNECTION]


def test_websocket_errors_carry_codes(api: Api, ws_env: RecordingManagement) -> None:
    ws = function("WebSocketFunction", "ws")
    ws.invoke(event("ws/connect.json"))
    ws.invoke(message({"id": 1, "path": "ping"}))  # not authenticated
    assert ws_env.posts[CONNECTION][-1]["body"]["code"] == "unauthorized"
    ws.invoke(event("ws/disconnect.json"))  # what API Gateway sends after the close
    ws.invoke(event("ws/connect.json"))
    ws.invoke({**event("ws/message_auth.json"), "body": "not json"})
    assert ws_env.posts[CONNECTION][-1]["body"]["code"] == "protocol_error"
    ws.invoke(event("ws/disconnect.json"))
    ws.invoke(event("ws/connect.json"))
    ws.invoke(event("ws/message_auth.json", TOKEN="emo_unknown"))
    assert ws_env.posts[CONNECTION][-1]["body"]["code"] == "unauthorized"


def test_viewer_requests_count_against_the_viewer_tokens_own_bucket(api: Api, dynamodb: Any,
                                                                    api_env: dict[str, str]) -> None:
    sid = stopped(api, user="owner")
    (minted,) = mint(api, sid, user="owner")
    assert api.call("GET", f"/v1/sessions/{sid}", authorizer=viewer_context(minted["token"])).status == 200

    def bucket(key: str) -> bool:
        item = dynamodb.get_item(TableName=api_env["CONTROL_TABLE"], Key={"pk": {"S": f"ratelimit#{key}"}})
        return "Item" in item

    assert bucket(f"viewer#{minted['tokenId']}") and bucket("owner")


def test_a_failing_dependency_is_internal_error_on_the_websocket(
    api: Api, ws_env: RecordingManagement, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real DynamoDB failure behind a subscribe: the WebSocket function's runtime is rebuilt with a sessions
    table that moto does not have (ResourceNotFoundException). The reply says so; the connection stays open."""
    sid = stopped(api)
    (minted,) = mint(api, sid)
    monkeypatch.setenv("SESSIONS_TABLE", "no-such-table")
    management = RecordingManagement()
    with ws_runtimes(management):
        ws = function("WebSocketFunction", "ws")
        ws.invoke(event("ws/connect.json"))
        ws.invoke(event("ws/message_auth.json", TOKEN=minted["token"]))
        ws.invoke(event("ws/message_subscribe.json", SESSION_ID=sid))
        ws.invoke(message({"id": 3, "path": "ping"}))
    auth_reply, failed, pong = management.posts[CONNECTION]
    assert auth_reply["status"] == 200, auth_reply
    assert (failed["path"], failed["status"]) == ("channels:subscribe", 500), failed
    assert failed["body"]["code"] == "internal_error" and failed["body"]["error"] is True
    assert failed["body"]["status"] == 500 and failed["body"]["message"]
    assert pong["status"] == 200 and management.deleted == []
