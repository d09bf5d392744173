"""template.yaml's WebSocket part keeps its promises: scoped push rights, resilient stream mappings, the
connections table's protection, outputs the tools read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emotionctl.local.template import load_template


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return dict(load_template()["Resources"])


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in function["Properties"]["Policies"] for s in p["Statement"]]


@pytest.mark.parametrize(
    ("function", "method"),
    [("WebSocketFunction", "*"), ("WebSocketSweeperFunction", "DELETE"), ("PublisherFunction", "POST")],
)
def test_manage_connections_is_scoped_to_this_apis_stage(resources: dict[str, Any], function: str,
                                                         method: str) -> None:
    (statement,) = [s for s in _statements(resources[function]) if s["Action"] == "execute-api:ManageConnections"]
    resource = statement["Resource"]["Fn::Sub"]
    assert resource.endswith(f":${{WebSocketApi}}/${{WebSocketStage}}/{method}/@connections/*"), resource
    # no other statement of these functions reaches API Gateway
    assert all("execute-api" not in json.dumps(s) for s in _statements(resources[function]) if s is not statement)


def test_no_function_of_the_websocket_part_has_a_wildcard(resources: dict[str, Any]) -> None:
    for name in ("WebSocketFunction", "WebSocketSweeperFunction", "PublisherFunction"):
        for statement in _statements(resources[name]):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(a.endswith("*") for a in actions), (name, actions)
            assert statement["Resource"] != "*", (name, statement)


@pytest.mark.parametrize(("mapping", "table", "events"), [
    ("PublisherEmotionsMapping", "EmotionsTable", ["INSERT", "MODIFY"]),
    ("PublisherSessionsMapping", "SessionsTable", ["MODIFY"]),
])
def test_stream_mappings_are_resilient(resources: dict[str, Any], mapping: str, table: str,
                                       events: list[str]) -> None:
    props = resources[mapping]["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": [table, "StreamArn"]}
    assert props["FunctionName"] == {"Ref": "PublisherFunction"}
    assert props["BisectBatchOnFunctionError"] is True
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["MaximumRetryAttempts"] >= 1
    assert props["MaximumBatchingWindowInSeconds"] == 0  # latency: publish as soon as read
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["PublisherFailureQueue", "Arn"]}
    (pattern,) = props["FilterCriteria"]["Filters"]
    assert json.loads(pattern["Pattern"]) == {"eventName": events}


def test_the_streams_carry_what_the_publisher_reads(resources: dict[str, Any]) -> None:
    assert resources["SessionsTable"]["Properties"]["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert resources["EmotionsTable"]["Properties"]["StreamSpecification"]["StreamViewType"] in (
        "NEW_IMAGE", "NEW_AND_OLD_IMAGES")


def test_connections_table(resources: dict[str, Any]) -> None:
    props = resources["ConnectionsTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert [k["AttributeName"] for k in props["KeySchema"]] == ["pk", "sk"]
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "byIdle" and index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_routes_api_and_outputs(resources: dict[str, Any]) -> None:
    api = resources["WebSocketApi"]["Properties"]
    assert api["ProtocolType"] == "WEBSOCKET"
    routes = {r["Properties"]["RouteKey"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Route"}
    assert routes == {"$connect", "$disconnect", "$default"}
    permission = resources["WebSocketInvokePermission"]["Properties"]
    assert permission["SourceArn"]["Fn::Sub"].endswith(":${WebSocketApi}/*")
    outputs = load_template()["Outputs"]
    assert outputs["WebSocketUrl"]["Value"]["Fn::Sub"].startswith("wss://${WebSocketApi}.execute-api.")
    assert {"WebSocketManagementEndpoint", "ConnectionsTableName"} <= set(outputs)
    env = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert env["CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}
    assert "${WebSocketApi}" in env["WEBSOCKET_MANAGEMENT_ENDPOINT"]["Fn::Sub"]
