# ruff: noqa: F811 - pytest fixtures imported from api_support are redefined as parameters
"""Every route through the real Lambda handler, against the moto server; every answer checked against
docs/openapi.yaml (api_support.Api)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from api_support import (  # noqa: F401 - fixtures
    EVENTS,
    Api,
    api,
    api_env,
    invoke,
    load_event,
    make_event,
    openapi_doc,
    rebuild_api_runtime,
    state_machine,
)
from emotion_shared.audio import Segment, SegmentStore
from emotion_shared.emotions import EMOTIONS, Bucket, EmotionStore


def store(moto_server: Any, api_env: dict[str, str]) -> EmotionStore:
    client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
    return EmotionStore(client, api_env["EMOTIONS_TABLE"])


def stopped_session(api: Api, user: str = "alice", name: str = "demo") -> str:
    sid = api.create(name=name, user=user).body["_id"]
    assert api.call("POST", f"/v1/sessions/{sid}/stop", user=user).status == 200
    return sid


# ---------------------------------------------------------------------- create
def test_create_returns_the_reference_session_object(api: Api) -> None:
    resp = api.create(name="Mobile World Congress Pitch", uri="rtmp://127.0.0.1:1935/live/secret-key")
    assert resp.status == 201
    body = resp.body
    assert body["name"] == "Mobile World Congress Pitch"
    assert (body["type"], body["state"], body["version"]) == ("live_analysis", "active", 3)
    assert (body["user"], body["product"]) == ("alice", "standard")
    assert body["config"] == {"removeMedia": True, "analysisFps": 5.0, "audioAnalysis": True}
    assert body["sources"] == []
    assert body["meta"]["workerState"] == "pending"
    assert "streamUri" not in json.dumps(body) and "secret-key" not in json.dumps(body)
    # and it can be read back identically (bar the live duration)
    again = api.call("GET", f"/v1/sessions/{body['_id']}").body
    assert {**again, "duration": 0} == {**body, "duration": 0}


def test_create_with_config_and_product(api: Api) -> None:
    resp = api.call(
        "POST",
        "/v1/sessions",
        product="pro",
        body={"name": "x", "streamUri": "rtsp://127.0.0.1/cam", "type": "live_analysis",
              "config": {"removeMedia": False, "analysisFps": 2, "audioAnalysis": False}},
    )
    assert resp.status == 201
    assert resp.body["config"] == {"removeMedia": False, "analysisFps": 2.0, "audioAnalysis": False}
    assert resp.body["product"] == "pro"


@pytest.mark.parametrize(
    ("raw_body", "fragment"),
    [
        (None, "request body is required"),
        ("", "request body is required"),
        ("{bad json", "request body is not valid JSON"),
        ("[1, 2]", "request body must be a JSON object"),
        ('"a string"', "request body must be a JSON object"),
        ("null", "request body is required"),
        ("[" * 100_000, "request body is not valid JSON (nested too deeply)"),
        ('{"streamUri": "rtmp://h/x"}', "body field 'name' is required"),
        ('{"name": "x"}', "body field 'streamUri' is required"),
        ('{"name": "x", "streamUri": "rtmp://h/x", "extra": 1}', "body field 'extra' is not allowed"),
        ('{"name": 5, "streamUri": "rtmp://h/x"}', "body field 'name' must be a valid string"),
        ('{"name": "", "streamUri": "rtmp://h/x"}', "body field 'name' must not be empty"),
        ('{"name": "   ", "streamUri": "rtmp://h/x"}', "name must not be blank"),
        (json.dumps({"name": "n" * 257, "streamUri": "rtmp://h/x"}), "body field 'name' must have at most 256"),
        ('{"name": "\\ud800", "streamUri": "rtmp://h/x"}', "body field 'name' must be a valid string"),
        ('{"name": "x", "streamUri": "http://h/x"}', "streamUri must use one of the protocols rtmp, rtsp or rtmps"),
        ('{"name": "x", "streamUri": "rtmp:///nohost"}', "streamUri must include a host"),
        ('{"name": "x", "streamUri": "rtmp://h:99999/x"}', "streamUri is not a valid URI"),
        ('{"name": "x", "streamUri": "rtmp://h/a b"}', "streamUri must not contain whitespace"),
        ('{"name": "x", "streamUri": ""}', "body field 'streamUri' must not be empty"),
        ('{"name": "x", "streamUri": "rtmp://h/x", "type": "video"}', "body field 'type' must be 'live_analysis'"),
        ('{"name": "x", "streamUri": "rtmp://h/x", "config": {"analysisFps": 0}}', "config.analysisFps"),
        ('{"name": "x", "streamUri": "rtmp://h/x", "config": {"audioAnalysis": "yes"}}', "config.audioAnalysis"),
        ('{"name": "x", "streamUri": "rtmp://h/x", "config": {"bogus": true}}', "config.bogus' is not allowed"),
        ('{"name": ["x"], "streamUri": {"a": 1}}', "body field 'streamUri' must be a valid string"),
    ],
)
def test_create_rejects_invalid_bodies_with_a_useful_400(api: Api, raw_body: str | None, fragment: str) -> None:
    resp = api.call("POST", "/v1/sessions", raw_body=raw_body)
    assert resp.status == 400, resp.body
    assert resp.body["error"] is True and resp.body["status"] == 400
    assert fragment in resp.body["message"], resp.body["message"]


def test_create_rejects_non_json_content_and_bad_base64(api: Api) -> None:
    form = api.call("POST", "/v1/sessions", raw_body="name=x", headers={"Content-Type": "text/plain"})
    assert form.status == 400 and "Content-Type: application/json" in form.body["message"]
    event = make_event("POST", "/v1/sessions", raw_body="%%%not base64")
    event["isBase64Encoded"] = True
    resp = invoke(event)
    assert resp.status == 400 and "base64" in resp.body["message"]


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "multipart/form-data; boundary=x", "Application/X-WWW-Form-Urlencoded"]
)
def test_create_refuses_form_bodies_with_400(api: Api, content_type: str) -> None:
    # found by schemathesis (tests/stack/test_fuzz.py): multipart without a boundary crashed Powertools' parser
    resp = api.call("POST", "/v1/sessions", raw_body='{"name": "x", "streamUri": "rtmp://127.0.0.1/x"}',
                    headers={"Content-Type": content_type})
    assert resp.status == 400 and "Content-Type: application/json" in resp.body["message"], resp.body


@pytest.mark.parametrize("session_id", ["\n", "a\x0fb", '"quoted"', "#frag", "\u00e9\U0001f600"])
@pytest.mark.parametrize("method, suffix", [("GET", ""), ("DELETE", ""), ("POST", "/stop"), ("GET", "/emotions"),
                                            ("GET", "/emotions/timeline")])
def test_ids_the_path_pattern_refuses_are_404_not_405(api: Api, session_id: str, method: str, suffix: str) -> None:
    # found by schemathesis: ids with characters outside Powertools' path pattern were answered 405 "use GET"
    resp = api.call(method, f"/v1/sessions/{session_id}{suffix}")
    assert resp.status == 404, resp.body
    assert resp.body == {"error": True, "status": 404, "message": resp.body["message"], "code": "session_not_found"}
    assert "not found" in resp.body["message"]


def test_create_accepts_a_base64_body(api: Api) -> None:
    import base64

    body = json.dumps({"name": "b64", "streamUri": "rtmp://127.0.0.1/x"}).encode()
    event = make_event("POST", "/v1/sessions", raw_body=base64.b64encode(body).decode())
    event["isBase64Encoded"] = True
    assert invoke(event).status == 201


def test_create_refuses_private_and_unresolvable_hosts_unless_allowed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOW_PRIVATE_STREAM_HOSTS", "false")
    rebuild_api_runtime()
    for uri, fragment in [
        ("rtmp://127.0.0.1/live/x", "loopback, private, link-local or metadata"),
        ("rtsp://169.254.169.254/latest", "loopback, private, link-local or metadata"),
        ("rtmp://10.1.2.3/live", "loopback, private, link-local or metadata"),
        ("rtmp://nonexistent.invalid/live", "cannot be resolved"),
    ]:
        resp = api.create(uri=uri)
        assert resp.status == 400 and fragment in resp.body["message"], (uri, resp.body)
    assert api.call("GET", "/v1/sessions").body["data"] == []  # nothing was created


# ---------------------------------------------------------------------- get / isolation
def test_get_missing_malformed_and_other_users_sessions_are_404(api: Api) -> None:
    sid = api.create(user="alice").body["_id"]
    assert api.call("GET", f"/v1/sessions/{sid}", user="alice").status == 200
    for path in [
        f"/v1/sessions/{sid}",
        f"/v1/sessions/{sid}/emotions",
        f"/v1/sessions/{sid}/emotions/timeline",
    ]:
        resp = api.call("GET", path, user="mallory")
        assert resp.status == 404 and resp.body["message"] == f"session {sid} not found"
    assert api.call("POST", f"/v1/sessions/{sid}/stop", user="mallory").status == 404
    assert api.call("DELETE", f"/v1/sessions/{sid}", user="mallory").status == 404
    # mallory's attempts changed nothing
    assert api.call("GET", f"/v1/sessions/{sid}", user="alice").body["state"] == "active"
    assert api.call("GET", "/v1/sessions", user="mallory").body["data"] == []
    for bad in ["0" * 24, "not-an-id", "65EA1530BB50AF72B6E3DC1E", "x" * 500, "%00"]:
        assert api.call("GET", f"/v1/sessions/{bad}").status == 404


# ---------------------------------------------------------------------- stop
def test_stop_finishes_an_active_session_once(api: Api) -> None:
    sid = api.create().body["_id"]
    resp = api.call("POST", f"/v1/sessions/{sid}/stop")
    assert resp.status == 200
    assert resp.body["state"] == "finished"
    assert resp.body["meta"]["stopReason"] == "user_request"
    assert resp.body["meta"]["workerState"] == "stopped"  # no worker had started
    again = api.call("POST", f"/v1/sessions/{sid}/stop")
    assert again.status == 400 and "not active" in again.body["message"]
    assert api.call("GET", f"/v1/sessions/{sid}").body["state"] == "finished"


def test_duration_is_fixed_once_ended(api: Api, moto_server: Any, api_env: dict[str, str]) -> None:
    sid = api.create().body["_id"]
    client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
    # Pretend the session started 90 s ago, then stop it: duration is measured to the stop, then frozen.
    item = client.get_item(TableName=api_env["SESSIONS_TABLE"], Key={"id": {"S": sid}})["Item"]
    started = int(item["createdAtMs"]["N"]) - 90_000
    client.update_item(
        TableName=api_env["SESSIONS_TABLE"],
        Key={"id": {"S": sid}},
        UpdateExpression="SET createdAtMs = :c",
        ExpressionAttributeValues={":c": {"N": str(started)}},
    )
    assert api.call("GET", f"/v1/sessions/{sid}").body["duration"] >= 90
    stopped = api.call("POST", f"/v1/sessions/{sid}/stop").body
    assert 90 <= stopped["duration"] < 120
    assert api.call("GET", f"/v1/sessions/{sid}").body["duration"] == stopped["duration"]


def test_duration_of_a_session_ended_by_the_state_machine(
    api: Api, moto_server: Any, api_env: dict[str, str]
) -> None:
    """The state machine writes ``endedAt`` (ISO) without ``endedAtMs``: the duration is fixed all the same."""
    from emotion_shared.clock import iso_ms

    sid = api.create().body["_id"]
    client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
    item = client.get_item(TableName=api_env["SESSIONS_TABLE"], Key={"id": {"S": sid}})["Item"]
    created = int(item["createdAtMs"]["N"])
    client.update_item(
        TableName=api_env["SESSIONS_TABLE"],
        Key={"id": {"S": sid}},
        UpdateExpression="SET #st = :f, endedAt = :e, meta.stopReason = :r REMOVE activeShard",
        ExpressionAttributeNames={"#st": "state"},
        ExpressionAttributeValues={
            ":f": {"S": "finished"},
            ":e": {"S": iso_ms(created + 42_500)},
            ":r": {"S": "stream_ended"},
        },
    )
    body = api.call("GET", f"/v1/sessions/{sid}").body
    assert (body["state"], body["duration"], body["meta"]["stopReason"]) == ("finished", 42, "stream_ended")


# ---------------------------------------------------------------------- delete
def test_delete_removes_the_session_and_all_its_emotion_data(
    api: Api, moto_server: Any, api_env: dict[str, str]
) -> None:
    emotions = store(moto_server, api_env)
    sid = api.create().body["_id"]
    keep = api.create(name="other").body["_id"]
    buckets = [Bucket(sec=s, faces={"a": {"happiness": [1, 0.9]}}, frames=1) for s in range(30)]
    emotions.write(sid, buckets)
    emotions.write(keep, buckets[:3])
    active = api.call("DELETE", f"/v1/sessions/{sid}")
    assert active.status == 400 and "stop it" in active.body["message"]
    assert len(list(emotions.read(sid))) == 30  # nothing deleted while active
    api.call("POST", f"/v1/sessions/{sid}/stop")
    resp = api.call("DELETE", f"/v1/sessions/{sid}")
    assert resp.status == 204 and resp.body is None
    assert api.call("GET", f"/v1/sessions/{sid}").status == 404
    assert api.call("GET", f"/v1/sessions/{sid}/emotions").status == 404
    assert list(emotions.read(sid)) == []
    assert len(list(emotions.read(keep))) == 3  # other sessions untouched
    assert api.call("DELETE", f"/v1/sessions/{sid}").status == 404


def test_audio_routes_serve_segments_apart_from_emotions_and_delete_removes_them(
    api: Api, moto_server: Any, api_env: dict[str, str]
) -> None:
    emotions = store(moto_server, api_env)
    client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
    segments = SegmentStore(client, api_env["EMOTIONS_TABLE"])
    sid = api.create().body["_id"]
    emotions.write(sid, [Bucket(sec=s, faces={"a": {"happiness": [1, 0.9]}}, frames=1) for s in range(20)])
    pos = {"positive": 0.6, "neutral": 0.4, "negative": 0.0, "compound": 0.8}
    neg = {"positive": 0.0, "neutral": 0.5, "negative": 0.5, "compound": -0.7}
    segments.write(sid, [Segment(2.5, 5.0, "what a lovely day", pos), Segment(8.0, 12.0, "this is awful", neg)])
    # the emotion routes do not see the segments (their own key range)
    assert len(list(emotions.read(sid))) == 20
    assert api.call("GET", f"/v1/sessions/{sid}/emotions").body["emotions"]["happiness"] == 20
    transcript = api.call("GET", f"/v1/sessions/{sid}/audio/transcript")
    assert transcript.status == 200
    assert [(s["start"], s["end"], s["text"], s["sentiment"]) for s in transcript.body["segments"]] == [
        (2.5, 5.0, "what a lovely day", "positive"), (8.0, 12.0, "this is awful", "negative")]
    later = api.call("GET", f"/v1/sessions/{sid}/audio/transcript", query={"start": "6"})
    assert [s["text"] for s in later.body["segments"]] == ["this is awful"]
    tl = api.call("GET", f"/v1/sessions/{sid}/audio/transcription-sentiment", query={"granularity": "5"})
    assert tl.status == 200 and tl.body["session"] == sid
    assert [(e["start"], e["end"], e["segments"], e["sentiments"]) for e in tl.body["timeline"]] == [
        (0, 5, 1, {"positive": 1.0, "neutral": 0.0, "negative": 0.0}),
        (5, 10, 1, {"positive": 0.0, "neutral": 0.0, "negative": 1.0}),
        (10, 15, 1, {"positive": 0.0, "neutral": 0.0, "negative": 1.0}),
    ]
    bad = api.call("GET", f"/v1/sessions/{sid}/audio/transcription-sentiment", query={"granularity": "1"})
    assert bad.status == 400
    assert api.call("GET", f"/v1/sessions/{sid}/audio/transcript", query={"start": "9", "end": "3"}).status == 400
    assert api.call("GET", f"/v1/sessions/{sid}/audio/transcript", user="mallory").status == 404
    api.call("POST", f"/v1/sessions/{sid}/stop")
    assert api.call("DELETE", f"/v1/sessions/{sid}").status == 204
    assert list(segments.read(sid)) == [] and list(emotions.read(sid)) == []


# ---------------------------------------------------------------------- a worker that cannot start
def test_a_worker_that_cannot_start_is_503_worker_start_failed_and_the_session_failed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real StartExecution failure: the handler's runtime is rebuilt (``deps.runtime.override``) with a state
    machine ARN that moto does not know, so Step Functions answers StateMachineDoesNotExist."""
    monkeypatch.setenv("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:no-such-machine")
    rebuild_api_runtime()
    for accept in (None, "application/problem+json"):
        resp = api.create(user="unlucky", headers={"Accept": accept} if accept else None)
        _assert_error(resp, 503, "worker_start_failed", accept)
    # both sessions were written, then marked failed, and their capacity released
    listed = api.call("GET", "/v1/sessions", user="unlucky").body["data"]
    assert len(listed) == 2
    for session in listed:
        assert session["state"] == "failed" and session["meta"]["workerState"] == "error", session
        assert "could not start the analysis workflow" in session["meta"]["error"]
    monkeypatch.delenv("STATE_MACHINE_ARN")
    rebuild_api_runtime()
    for i in range(5):  # MAX_ACTIVE_SESSIONS_PER_USER: nothing is held by the failed ones
        assert api.create(name=f"after{i}", user="unlucky").status == 201


# ---------------------------------------------------------------------- a backend that fails
def _assert_error(resp: Any, status: int, code: str, accept: str | None) -> None:
    assert resp.status == status and resp.body["code"] == code, resp.body
    if accept:
        assert resp.header("Content-Type") == "application/problem+json"
        assert resp.body["type"] == f"urn:emotion-stream:error:{code}" and resp.body["status"] == status
        assert resp.body["detail"] and resp.body["instance"].startswith("urn:uuid:")
    else:
        assert resp.header("Content-Type") == "application/json"
        assert resp.body["error"] is True and resp.body["status"] == status and resp.body["message"]


@pytest.mark.parametrize("accept", [None, "application/problem+json"])
def test_an_unreadable_table_is_503_service_unavailable(
    api: Api, monkeypatch: pytest.MonkeyPatch, accept: str | None
) -> None:
    """A real DynamoDB failure (ResourceNotFoundException from moto): the handler's runtime is rebuilt
    (``deps.runtime.override``) with a sessions table that does not exist. An AWS-side failure: retry."""
    monkeypatch.setenv("SESSIONS_TABLE", "no-such-table")
    rebuild_api_runtime()
    resp = invoke(make_event("GET", "/v1/sessions/" + "0" * 24, headers={"Accept": accept} if accept else None))
    _assert_error(resp, 503, "service_unavailable", accept)


@pytest.mark.parametrize("accept", [None, "application/problem+json"])
def test_a_fault_of_ours_is_500_internal_error(
    api: Api, dynamodb: Any, api_env: dict[str, str], accept: str | None
) -> None:
    """A session item that lacks fields every writer sets (written straight into the table) makes the
    handler fail: a fault on our side, not the client's, and not retryable."""
    sid = "c0ffee" + "0" * 18
    dynamodb.put_item(TableName=api_env["SESSIONS_TABLE"], Item={"id": {"S": sid}, "user": {"S": "alice"}})
    resp = invoke(make_event("GET", f"/v1/sessions/{sid}", headers={"Accept": accept} if accept else None))
    _assert_error(resp, 500, "internal_error", accept)


# ---------------------------------------------------------------------- list
def test_list_pagination_has_more_is_exact(api: Api) -> None:
    ids = [api.create(name=f"s{i}").body["_id"] for i in range(5)]
    for sid in ids:  # end them so the per-user cap (5) does not matter
        api.call("POST", f"/v1/sessions/{sid}/stop")
    newest_first = list(reversed(ids))

    def page(limit: int, offset: int) -> dict[str, Any]:
        resp = api.call("GET", "/v1/sessions", query={"limit": str(limit), "offset": str(offset)})
        assert resp.status == 200
        return resp.body

    first = page(2, 0)
    assert [s["_id"] for s in first["data"]] == newest_first[:2]
    assert (first["hasMore"], first["offset"], first["limit"]) == (True, 0, 2)
    assert page(2, 2)["hasMore"] is True
    last = page(2, 4)
    assert [s["_id"] for s in last["data"]] == newest_first[4:] and last["hasMore"] is False
    exact = page(5, 0)
    assert len(exact["data"]) == 5 and exact["hasMore"] is False  # exactly at the boundary
    assert page(4, 0)["hasMore"] is True  # one short of it
    assert page(4, 1)["hasMore"] is False
    beyond = page(10, 7)
    assert beyond["data"] == [] and beyond["hasMore"] is False
    default = api.call("GET", "/v1/sessions").body
    assert (default["limit"], default["offset"], len(default["data"])) == (10, 0, 5)


def test_list_filters_state_type_and_time(api: Api, moto_server: Any, api_env: dict[str, str]) -> None:
    client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
    active = api.create(name="active").body
    done = stopped_session(api, name="done")

    def ids(**query: str) -> list[str]:
        resp = api.call("GET", "/v1/sessions", query=query)
        assert resp.status == 200, resp.body
        return [s["_id"] for s in resp.body["data"]]

    assert ids(state="active") == [active["_id"]]
    assert ids(state="finished") == [done]
    assert ids(state="failed") == []
    assert set(ids(type="live_analysis")) == {active["_id"], done}
    # time filters: on the creation timestamp, inclusive, millisecond exact
    created = active["timestamp"]
    assert active["_id"] in ids(**{"from": created})
    assert active["_id"] in ids(to=created)
    item = client.get_item(TableName=api_env["SESSIONS_TABLE"], Key={"id": {"S": active["_id"]}})["Item"]
    ms = int(item["createdAtMs"]["N"])
    from emotion_shared.clock import iso_ms

    assert active["_id"] not in ids(**{"from": iso_ms(ms + 1)})
    assert active["_id"] not in ids(to=iso_ms(ms - 1))
    day = created[:10]
    assert set(ids(**{"from": day, "to": day})) == {active["_id"], done}  # a bare `to` date is the whole day
    assert ids(to="2001-01-01") == [] and ids(**{"from": "2999-01-01T00:00:00Z"}) == []
    assert set(ids(**{"from": "2001-01-01T00:00:00+02:00"})) == {active["_id"], done}
    # the ends of time (an offset past year 9999) and a leap second are valid RFC 3339: accepted
    assert set(ids(to="9999-12-31T23:59:59-01:00")) == {active["_id"], done}
    assert ids(**{"from": "9999-12-31"}) == [] and ids(to="2016-12-31T23:59:60Z") == []


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"limit": "0"}, "query parameter 'limit' must be greater than or equal to 1"),
        ({"limit": "101"}, "query parameter 'limit' must be less than or equal to 100"),
        ({"limit": "ten"}, "query parameter 'limit' must be an integer"),
        ({"limit": ""}, "query parameter 'limit'"),
        ({"offset": "-1"}, "query parameter 'offset' must be greater than or equal to 0"),
        ({"offset": "1.5"}, "query parameter 'offset' must be an integer"),
        ({"state": "running"}, "query parameter 'state' must be 'active', 'finished' or 'failed'"),
        ({"type": "video"}, "query parameter 'type' must be 'live_analysis'"),
        ({"from": "yesterday"}, "query parameter 'from' must be an ISO-8601 date"),
        ({"to": "2024-13-45"}, "query parameter 'to' must be an ISO-8601 date"),
        # what docs/openapi.yaml declares (RFC 3339), no more: no seconds, no offset, a space, a basic format
        ({"from": "2024-04-01T10:30"}, "query parameter 'from' must be an ISO-8601 date or date-time as RFC 3339"),
        ({"from": "2024-04-01 10:30:00Z"}, "query parameter 'from' must be an ISO-8601 date"),
        ({"to": "20240401"}, "query parameter 'to' must be an ISO-8601 date"),
        ({"from": "2024-05-01", "to": "2024-04-01"}, "'from' must not be later than 'to'"),
        ({"limt": "5"}, "unknown query parameter(s) limt"),
    ],
)
def test_list_rejects_invalid_queries(api: Api, query: dict[str, str], fragment: str) -> None:
    resp = api.call("GET", "/v1/sessions", query=query)
    assert resp.status == 400 and fragment in resp.body["message"], resp.body


def test_repeated_query_parameters_are_rejected(api: Api) -> None:
    resp = api.call("GET", "/v1/sessions", multi_query={"limit": ["1", "2"]})
    assert resp.status == 400 and "limit" in resp.body["message"]


# ---------------------------------------------------------------------- emotions and timeline
# The same hand-computed session as tests/unit/test_emotions.py, written through EmotionStore.
HAND = [
    Bucket(0, {"a": {"happiness": [2, 1.6]}, "b": {"neutral": [1, 0.5]}}, 5),
    Bucket(3, {"a": {"happiness": [1, 0.9], "sadness": [1, 0.6]}}, 5),
    Bucket(7, {"b": {"happiness": [1, 0.7]}}, 5),
    Bucket(12, {}, 5),
    Bucket(14, {"c": {"anger": [3, 2.4]}}, 5),
]


def zeros() -> dict[str, dict[str, float]]:
    return {e: {"people": 0, "quantity": 0, "intensity": 0} for e in EMOTIONS}


def test_emotion_totals(api: Api, moto_server: Any, api_env: dict[str, str]) -> None:
    sid = api.create().body["_id"]
    empty = api.call("GET", f"/v1/sessions/{sid}/emotions").body
    assert empty == {"session": sid, "emotions": dict.fromkeys(EMOTIONS, 0)}
    store(moto_server, api_env).write(sid, HAND)
    resp = api.call("GET", f"/v1/sessions/{sid}/emotions")
    assert resp.status == 200
    # happiness 2 + 1 + 1 = 4, neutral 1, sadness 1, anger 3
    assert resp.body == {
        "session": sid,
        "emotions": {"anger": 3, "disgust": 0, "fear": 0, "happiness": 4, "sadness": 1, "surprise": 0, "neutral": 1},
    }


def test_timeline_semantics(api: Api, moto_server: Any, api_env: dict[str, str]) -> None:
    sid = api.create().body["_id"]
    store(moto_server, api_env).write(sid, HAND)

    def timeline(**query: str) -> list[dict[str, Any]]:
        resp = api.call("GET", f"/v1/sessions/{sid}/emotions/timeline", query=query)
        assert resp.status == 200, resp.body
        assert resp.body["session"] == sid
        return resp.body["timeline"]

    # Default granularity 60 from 0: one interval [0, 60) with faces a, b, c.
    # happiness: a (1.6 + 0.9) / 3 = 0.833333, b 0.7 → people 2, intensity 0.766667, quantity 1.533333
    (whole,) = timeline()
    expected = zeros()
    expected["happiness"] = {"people": 2, "intensity": 0.7667, "quantity": 1.5333}
    expected["neutral"] = {"people": 1, "intensity": 0.5, "quantity": 0.5}
    expected["sadness"] = {"people": 1, "intensity": 0.6, "quantity": 0.6}
    expected["anger"] = {"people": 1, "intensity": 0.8, "quantity": 0.8}
    frames = {"received": sum(b.frames for b in HAND), "analysed": sum(b.frames for b in HAND)}
    assert whole == {"start": 0, "end": 60, "detectedFaces": 3, "emotions": expected, "frames": frames}

    # g 5: [0,5) a+b, [5,10) b, [10,15) c (sec 12 had no face but sec 14 did)
    fives = timeline(granularity="5")
    assert [(e["start"], e["end"], e["detectedFaces"]) for e in fives] == [(0, 5, 2), (5, 10, 1), (10, 15, 1)]
    assert fives[0]["emotions"]["happiness"] == {"people": 1, "intensity": 0.8333, "quantity": 0.8333}
    assert fives[1]["emotions"]["happiness"] == {"people": 1, "intensity": 0.7, "quantity": 0.7}
    assert fives[2]["emotions"]["anger"] == {"people": 1, "intensity": 0.8, "quantity": 0.8}

    # aligned on start, clipped to end: [3, 8) holds a (0.9) and b (0.7); [8, 13) only the faceless sec 12
    (aligned,) = timeline(granularity="5", start="3", end="13")
    assert (aligned["start"], aligned["end"], aligned["detectedFaces"]) == (3, 8, 2)
    assert aligned["emotions"]["happiness"] == {"people": 2, "intensity": 0.8, "quantity": 1.6}
    clipped = timeline(granularity="10", end="15")
    assert [(e["start"], e["end"]) for e in clipped] == [(0, 10), (10, 15)]
    assert timeline(start="15") == [] and timeline(start="4", end="4") == []


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"granularity": "4"}, "query parameter 'granularity' must be greater than or equal to 5"),
        ({"granularity": "3601"}, "query parameter 'granularity' must be less than or equal to 3600"),
        ({"granularity": "1m"}, "query parameter 'granularity' must be an integer"),
        ({"start": "-1"}, "query parameter 'start' must be greater than or equal to 0"),
        ({"end": "99999999999999999999999"}, "query parameter 'end' must be less than or equal to"),
        ({"start": "10", "end": "5"}, "start must not be greater than end"),
        ({"from": "0"}, "unknown query parameter(s) from"),
    ],
)
def test_timeline_rejects_invalid_queries(api: Api, query: dict[str, str], fragment: str) -> None:
    sid = api.create().body["_id"]
    resp = api.call("GET", f"/v1/sessions/{sid}/emotions/timeline", query=query)
    assert resp.status == 400 and fragment in resp.body["message"], resp.body


# ---------------------------------------------------------------------- routing, auth
def test_unknown_routes_and_methods(api: Api) -> None:
    sid = api.create().body["_id"]
    for method, path in [("GET", "/v2/sessions"), ("GET", "/"), ("POST", "/v1/sessions/x/y/z")]:
        resp = api.call(method, path)
        assert resp.status == 404 and resp.body["status"] == 404 and resp.body["code"] == "route_not_found"
    for method, path, allow in [
        ("PUT", "/v1/sessions", "GET, POST"),
        ("TRACE", "/v1/sessions", "GET, POST"),
        ("OPTIONS", f"/v1/sessions/{sid}/viewer-tokens/abc", "DELETE"),
        ("PATCH", f"/v1/sessions/{sid}", "DELETE, GET"),
        ("GET", f"/v1/sessions/{sid}/stop", "POST"),
        ("DELETE", f"/v1/sessions/{sid}/emotions", "GET"),
    ]:
        resp = api.call(method, path)
        assert resp.status == 405 and resp.header("Allow") == allow, resp
        assert resp.body == {"error": True, "status": 405, "message": resp.body["message"],
                             "code": "method_not_allowed"}
    assert api.call("GET", "/v1/sessions/").status == 200  # a trailing slash is the same route


def test_no_identity_is_401_without_rate_limit_headers(api: Api) -> None:
    resp = invoke(make_event("GET", "/v1/sessions", user=None))
    assert resp.status == 401
    assert resp.body == {"error": True, "status": 401, "message": resp.body["message"], "code": "unauthorized"}
    assert resp.header("RateLimit-Limit") is None


def test_every_answer_of_an_authenticated_request_has_rate_limit_headers(api: Api) -> None:
    sid = stopped_session(api)
    answers = [
        api.create(),
        api.call("POST", "/v1/sessions", raw_body="{"),
        api.call("GET", "/v1/sessions"),
        api.call("GET", f"/v1/sessions/{sid}"),
        api.call("GET", "/v1/sessions/" + "0" * 24),
        api.call("PUT", "/v1/sessions"),
        api.call("GET", "/nowhere"),
        api.call("DELETE", f"/v1/sessions/{sid}"),
    ]
    for resp in answers:
        for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"):
            assert resp.header(name) is not None, (resp.status, name)
        assert resp.header("RateLimit-Policy") == "1000;w=60"
    remaining = [int(r.header("RateLimit-Remaining") or 0) for r in answers]
    assert remaining == sorted(remaining, reverse=True) and remaining[0] > remaining[-1]


# ---------------------------------------------------------------------- the events folder
def test_the_events_folder_runs_through_the_handler(api: Api, state_machine: str) -> None:
    """events/api/*.json are real API Gateway events: run each (with a real session id) and check the answer."""
    create = load_event("create_session")
    # The event's public host does not resolve in a sandbox: point it at the loopback (allowed in tests).
    create["body"] = create["body"].replace("stream.example.com", "127.0.0.1")
    created = invoke(create)
    assert created.status == 201, created.body
    sid = created.body["_id"]
    replay = invoke(create)  # carries an Idempotency-Key: same session
    assert (replay.status, replay.body["_id"]) == (201, sid)

    def run(name: str) -> Any:
        raw = (EVENTS / "api" / f"{name}.json").read_text().replace("65ea1530bb50af72b6e3dc1e", sid)
        return invoke(json.loads(raw))

    expected = [
        ("list_sessions", 200),
        ("get_session", 200),
        ("get_emotions", 200),
        ("get_timeline", 200),
        ("create_viewer_tokens", 201),
        ("list_viewer_tokens", 200),
        ("stop_session_as_viewer", 403),  # a viewer token's context: writes are forbidden (problem+json)
        ("delete_session", 400),  # still active
        ("stop_session", 200),
        ("stop_session", 400),
        ("delete_session", 204),
        ("get_session", 404),
    ]
    for name, status in expected:
        resp = run(name)
        assert resp.status == status, (name, resp.body)
    listed = run("list_sessions")
    assert listed.status == 200
    forbidden = run("stop_session_as_viewer")
    assert forbidden.header("Content-Type") == "application/problem+json" and forbidden.body["code"] in (
        "forbidden", "session_not_found")


def test_every_documented_status_is_produced_and_matches_the_document(
    api: Api, moto_server: Any, api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A walk over routes × documented statuses (401 and 429 and 409 and 503 are covered in their own
    modules too); Api.call checks each answer against docs/openapi.yaml."""
    sid = api.create().body["_id"]
    done = stopped_session(api)
    ghost = "0" * 24
    # viewer tokens, and what a viewer token may not do (403 writes, 404 the list)
    minted = api.call("POST", f"/v1/sessions/{done}/viewer-tokens", body={"count": 1, "expiresIn": 600})
    assert minted.status == 201
    tid = minted.body["tokens"][0]["tokenId"]
    viewer = {"user": "alice", "product": "standard", "scope": "viewer", "sessionId": done, "tokenId": tid}
    assert api.call("POST", f"/v1/sessions/{done}/viewer-tokens", body={"count": 0}).status == 400
    assert api.call("POST", f"/v1/sessions/{ghost}/viewer-tokens", body={}).status == 404
    assert api.call("POST", f"/v1/sessions/{done}/viewer-tokens", body={}, authorizer=viewer).status == 403
    assert api.call("GET", f"/v1/sessions/{done}/viewer-tokens").status == 200
    assert api.call("GET", f"/v1/sessions/{done}/viewer-tokens", query={"x": "1"}).status == 400
    assert api.call("GET", f"/v1/sessions/{ghost}/viewer-tokens").status == 404
    assert api.call("DELETE", f"/v1/sessions/{done}/viewer-tokens/{tid}", authorizer=viewer).status == 403
    assert api.call("DELETE", f"/v1/sessions/{done}/viewer-tokens/{tid}", query={"x": "1"}).status == 400
    assert api.call("GET", f"/v1/sessions/{done}", authorizer=viewer).status == 200
    assert api.call("DELETE", f"/v1/sessions/{done}/viewer-tokens/{tid}").status == 204
    assert api.call("DELETE", f"/v1/sessions/{done}/viewer-tokens/{tid}").status == 404
    assert api.call("GET", "/v1/sessions", authorizer=viewer).status == 404
    assert api.create(authorizer=viewer).status == 403
    assert api.call("POST", f"/v1/sessions/{done}/stop", authorizer=viewer).status == 403
    assert api.call("DELETE", f"/v1/sessions/{done}", authorizer=viewer).status == 403
    api.call("GET", "/v1/sessions")
    api.call("GET", "/v1/sessions", query={"limit": "0"})
    for path in (f"/v1/sessions/{sid}", f"/v1/sessions/{sid}/emotions", f"/v1/sessions/{sid}/emotions/timeline",
                 f"/v1/sessions/{sid}/audio/transcription-sentiment", f"/v1/sessions/{sid}/audio/transcript"):
        api.call("GET", path)
        api.call("GET", path.replace(sid, ghost))
        api.call("GET", path, query={"bogus": "1"})
    api.call("POST", "/v1/sessions", raw_body="{}")
    api.call("POST", f"/v1/sessions/{done}/stop")
    api.call("POST", f"/v1/sessions/{ghost}/stop")
    api.call("POST", f"/v1/sessions/{sid}/stop", query={"x": "1"})
    api.call("DELETE", f"/v1/sessions/{ghost}")
    api.call("DELETE", f"/v1/sessions/{sid}", query={"x": "1"})
    api.call("POST", f"/v1/sessions/{sid}/stop")
    api.call("DELETE", f"/v1/sessions/{sid}")
    # capacity: five active sessions fill the per-user cap → the sixth is a 503
    for i in range(5):
        assert api.create(name=f"cap{i}").status == 201
    assert api.create(name="one too many").status == 503
    doc_statuses = {
        (path, method, int(code))
        for path, ops in openapi_doc()["paths"].items()
        for method, op in ops.items()
        if isinstance(op, dict) and "responses" in op
        for code in op["responses"]
        if int(code) not in (401, 409, 429)
    }
    # 503 from the backend is documented everywhere but only producible on create without fault injection
    doc_statuses = {s for s in doc_statuses if s[2] != 503 or s[0:2] == ("/v1/sessions", "post")}
    missing = doc_statuses - api.seen
    assert not missing, f"documented but never produced here: {sorted(missing)}"
