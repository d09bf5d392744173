# ruff: noqa: F811 - pytest fixtures imported from api_support are redefined as parameters
"""Logs (JSON, correlation id, no stream credentials), metrics (EMF) and the last-resort error path."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from api_support import Api, api, api_env, check_against_openapi, invoke, make_event  # noqa: F401 - fixtures


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The Powertools handler (shared by the API's logger and emotion_shared's loggers), redirected."""
    from emotion_shared.rest.observability import SERVICE

    stream = io.StringIO()
    for handler in logging.getLogger(SERVICE).handlers:
        if isinstance(handler, logging.StreamHandler):
            monkeypatch.setattr(handler, "stream", stream)
    return stream


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def emf(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def metric_names(blobs: list[dict[str, Any]]) -> list[str]:
    return [m["Name"] for blob in blobs for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]


def test_logs_are_json_with_the_request_id_and_never_the_stream_credentials(
    api: Api, log_stream: io.StringIO
) -> None:
    event = make_event(
        "POST", "/v1/sessions", body={"name": "x", "streamUri": "rtmp://bob:hunter2@127.0.0.1:1935/live/streamkey123"}
    )
    resp = invoke(event)
    assert resp.status == 201
    logged = records(log_stream)
    created = [r for r in logged if r["message"] == "session created"]
    assert len(created) == 1
    assert created[0]["stream"] == "rtmp://127.0.0.1:1935/…"
    assert created[0]["sessionId"] == resp.body["_id"]
    assert created[0]["correlation_id"] == event["requestContext"]["requestId"]
    assert created[0]["service"] == "emotion-stream-api"
    text = log_stream.getvalue()
    assert "hunter2" not in text and "streamkey123" not in text


def test_session_metrics_are_emitted_as_emf(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    sid = api.create().body["_id"]
    created = emf(capsys.readouterr().out)
    assert metric_names(created) == ["SessionsCreated"]
    namespaces = {d["Namespace"] for blob in created for d in blob["_aws"]["CloudWatchMetrics"]}
    assert namespaces == {"EmotionStream"}
    api.call("GET", f"/v1/sessions/{sid}")
    assert emf(capsys.readouterr().out) == []  # a read records nothing
    api.call("POST", f"/v1/sessions/{sid}/stop")
    assert metric_names(emf(capsys.readouterr().out)) == ["SessionsStopped"]
    for i in range(5):
        api.create(name=f"s{i}")
    capsys.readouterr()
    assert api.create().status == 503
    rejected = emf(capsys.readouterr().out)
    assert metric_names(rejected) == ["SessionsRejected"]
    assert rejected[0]["rejectedReason"] == "capacity"


def test_a_bug_is_a_logged_500_with_the_reference_body(
    api: Api, log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emotion_shared.session_service import SessionService

    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("internal detail")

    monkeypatch.setattr(SessionService, "list", broken)
    resp = invoke(make_event("GET", "/v1/sessions"))
    assert resp.status == 500
    assert resp.body == {"error": True, "status": 500, "message": "internal error; the request was not completed",
                         "code": "internal_error"}
    assert resp.header("RateLimit-Limit") is not None
    (logged,) = [r for r in records(log_stream) if r["message"] == "unhandled error"]
    assert logged["level"] == "ERROR" and "KeyError" in logged["exception"]


def test_401_matches_the_document(api: Api) -> None:
    resp = invoke(make_event("POST", "/v1/sessions", user=None, body={"name": "x"}))
    assert resp.status == 401
    check_against_openapi("POST", "/v1/sessions", resp)
