"""The local WebSocket gateway and stream poller read template.yaml the way AWS would (pure parts)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from emotionctl.local.streams import MappingSpec, UnsupportedFilter, compile_filters, lambda_record
from emotionctl.local.template import load_template
from emotionctl.local.websocket import EventFacts, WebSocketApiSpec, new_connection_id, websocket_event


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_the_websocket_api_of_the_template(template: dict[str, Any]) -> None:
    spec = WebSocketApiSpec.from_template(template)
    assert (spec.api, spec.stage, spec.stage_name) == ("WebSocketApi", "WebSocketStage", "v1")
    assert spec.routes == {"$connect": "WebSocketFunction", "$disconnect": "WebSocketFunction",
                           "$default": "WebSocketFunction"}
    # every message goes to $default: no route is keyed by a path value
    assert spec.select('{"path": "ping"}') == "$default"
    assert spec.select("not json") == "$default"
    assert spec.select(None) == "$default"


def test_route_selection_honours_keyed_routes(template: dict[str, Any]) -> None:
    spec = WebSocketApiSpec.from_template(template)
    keyed = WebSocketApiSpec(spec.api, spec.stage, spec.stage_name, spec.route_selection,
                             {**spec.routes, "ping": "PingFunction"})
    assert keyed.select('{"path": "ping"}') == "ping"
    assert keyed.select('{"path": "$connect"}') == "$default"


def test_connection_ids_look_like_api_gateways() -> None:
    ids = {new_connection_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{15}=", i) for i in ids)


def test_websocket_events() -> None:
    facts = EventFacts("localws", "v1", "127.0.0.1:3000")
    connect = websocket_event(facts, "$connect", "CONNECT", "abc=", "10.1.2.3", "ua", 5, headers={"Host": "h"})
    assert connect["requestContext"]["routeKey"] == "$connect"
    assert connect["requestContext"]["identity"] == {"sourceIp": "10.1.2.3", "userAgent": "ua"}
    assert connect["headers"] == {"Host": "h"} and "body" not in connect
    message = websocket_event(facts, "$default", "MESSAGE", "abc=", "10.1.2.3", None, 5, body='{"path":"ping"}')
    context = message["requestContext"]
    assert (context["eventType"], context["connectionId"], context["stage"], context["domainName"]) == (
        "MESSAGE", "abc=", "v1", "127.0.0.1:3000")
    assert message["body"] == '{"path":"ping"}' and message["isBase64Encoded"] is False
    assert context["messageId"] and context["requestId"] and context["connectedAt"] == 5
    gone = websocket_event(facts, "$disconnect", "DISCONNECT", "abc=", "10.1.2.3", None, 5, disconnect=(1006, "x"))
    assert (gone["requestContext"]["disconnectStatusCode"], gone["requestContext"]["disconnectReason"]) == (1006, "x")


def test_the_stream_mappings_of_the_template(template: dict[str, Any]) -> None:
    specs = {s.logical_id: s for s in MappingSpec.from_template(template, lambda v: v)}
    emotions_map, sessions_map = specs["PublisherEmotionsMapping"], specs["PublisherSessionsMapping"]
    assert (emotions_map.function, emotions_map.table, emotions_map.batch_size) == (
        "PublisherFunction", "EmotionsTable", 100)
    assert (sessions_map.table, sessions_map.starting_position, sessions_map.max_retries) == (
        "SessionsTable", "LATEST", 3)
    accepts_emotions = compile_filters(emotions_map.filters)
    accepts_sessions = compile_filters(sessions_map.filters)
    assert [accepts_emotions({"eventName": n}) for n in ("INSERT", "MODIFY", "REMOVE")] == [True, True, False]
    assert [accepts_sessions({"eventName": n}) for n in ("INSERT", "MODIFY", "REMOVE")] == [False, True, False]


def test_filters() -> None:
    assert compile_filters(None)({"eventName": "REMOVE"})
    nested = compile_filters({"Filters": [{"Pattern": json.dumps({"dynamodb": {"Keys": {"id": {"S": ["a"]}}}})}]})
    assert nested({"dynamodb": {"Keys": {"id": {"S": "a"}}}})
    assert not nested({"dynamodb": {"Keys": {"id": {"S": "b"}}}})
    assert not nested({"eventName": "INSERT"})
    with pytest.raises(UnsupportedFilter):
        compile_filters({"Filters": [{"Pattern": json.dumps({"eventName": [{"prefix": "IN"}]})}]})


def test_lambda_records_from_get_records() -> None:
    raw = {"eventID": "e1", "eventName": "INSERT", "awsRegion": "us-east-1",
           "dynamodb": {"ApproximateCreationDateTime": datetime(2025, 1, 1, 10, 0, 5, tzinfo=UTC),
                        "Keys": {"id": {"S": "x"}}, "SequenceNumber": "42"}}
    record = lambda_record(raw, "arn:aws:dynamodb:us-east-1:1:table/T/stream/s", "us-east-1")
    assert record["eventSource"] == "aws:dynamodb" and record["eventVersion"] == "1.1"
    assert record["eventSourceARN"] == "arn:aws:dynamodb:us-east-1:1:table/T/stream/s"
    assert record["dynamodb"]["ApproximateCreationDateTime"] == 1735725605
    assert record["dynamodb"]["SequenceNumber"] == "42"
