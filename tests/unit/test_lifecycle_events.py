"""The lifecycle event contract: one shape per detail-type (``emotion_shared.lifecycle_events``), the one publisher
that enforces it, the state machine's events and the README's examples held to the same shapes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from emotion_shared.lifecycle_events import (
    DETAIL_MODELS,
    EVENT_SOURCE,
    EventPublisher,
    EventPublishError,
    InvalidEvent,
    SessionEventType,
    detail_schema,
    validate_event,
)

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachine" / "session.asl.json").read_text())

STARTED = {"sessionId": "s1", "user": "alice", "state": "active", "stopReason": None}
LOAD = {"analysesPerSecond": 2.5, "targetAnalysesPerSecond": 5.0, "lagSeconds": 1.5, "lagP95Seconds": 2.0}


class RecordingEvents:
    def __init__(self, failed: int = 0) -> None:
        self.entries: list[dict[str, Any]] = []
        self.failed = failed

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Entries)
        return {"FailedEntryCount": self.failed, "Entries": [{"EventId": "1"}]}


@pytest.mark.parametrize(
    ("event_type", "detail"),
    [
        (SessionEventType.STARTED, STARTED),
        (SessionEventType.FINISHED, STARTED | {"state": "finished", "stopReason": "user_request"}),
        (SessionEventType.FAILED, STARTED | {"state": "failed", "stopReason": "worker_lost"}),
        (SessionEventType.DEGRADED, STARTED | LOAD),
        (SessionEventType.RECOVERED, STARTED | LOAD | {"targetAnalysesPerSecond": None}),
    ],
)
def test_the_publisher_sends_one_whole_event_of_its_detail_type(event_type: SessionEventType, detail: dict) -> None:
    client = RecordingEvents()
    EventPublisher(client, "bus").publish(event_type, detail, resources=["arn:task"])
    assert client.entries == [
        {
            "EventBusName": "bus",
            "Source": "emotion-stream",
            "DetailType": event_type.value,
            "Detail": json.dumps(detail, separators=(",", ":")),
            "Resources": ["arn:task"],
        }
    ]


@pytest.mark.parametrize(
    ("event_type", "detail", "problem"),
    [
        (SessionEventType.STARTED, STARTED | {"state": "finished"}, "state"),
        (SessionEventType.STARTED, {"sessionId": "s1", "user": "alice", "state": "active"}, "stopReason"),
        (SessionEventType.STARTED, STARTED | {"extra": 1}, "extra"),
        (SessionEventType.FINISHED, STARTED | {"state": "finished", "stopReason": "worker_lost"}, "stopReason"),
        (SessionEventType.FAILED, STARTED | {"state": "failed", "stopReason": None}, "stopReason"),
        (SessionEventType.DEGRADED, STARTED, "analysesPerSecond"),
        (SessionEventType.DEGRADED, STARTED | LOAD | {"lagSeconds": -1}, "lagSeconds"),
        (SessionEventType.STARTED, STARTED | {"sessionId": ""}, "sessionId"),
    ],
)
def test_a_detail_off_its_shape_is_refused_and_nothing_is_sent(
    event_type: SessionEventType, detail: dict, problem: str
) -> None:
    client = RecordingEvents()
    with pytest.raises(InvalidEvent, match=problem):
        EventPublisher(client, "bus").publish(event_type, detail)
    assert client.entries == []


def test_a_rejected_entry_raises() -> None:
    with pytest.raises(EventPublishError):
        EventPublisher(RecordingEvents(failed=1), "bus").publish(SessionEventType.STARTED, STARTED)


def test_publish_end_announces_the_items_real_end() -> None:
    client = RecordingEvents()
    item = {"id": "s1", "user": "alice", "state": "failed", "meta": {"stopReason": "stream_unreachable"}}
    EventPublisher(client, "bus").publish_end(item)
    assert [(e["DetailType"], json.loads(e["Detail"])) for e in client.entries] == [
        ("SessionFailed", {"sessionId": "s1", "user": "alice", "state": "failed", "stopReason": "stream_unreachable"})
    ]
    with pytest.raises(ValueError, match="has not ended"):
        EventPublisher(client, "bus").publish_end(item | {"state": "active"})


def test_validate_event_checks_the_envelope_too() -> None:
    event = {"source": EVENT_SOURCE, "detail-type": "SessionStarted", "detail": STARTED}
    assert validate_event(event) == STARTED
    with pytest.raises(InvalidEvent, match="source"):
        validate_event(event | {"source": "other"})
    with pytest.raises(InvalidEvent, match="detail-type"):
        validate_event(event | {"detail-type": "SessionPaused"})
    with pytest.raises(InvalidEvent, match="no detail"):
        validate_event({"source": EVENT_SOURCE, "detail-type": "SessionStarted"})


def test_every_detail_type_has_a_json_schema_that_closes_the_detail() -> None:
    for event_type in SessionEventType:
        schema = detail_schema(event_type)
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["required"]) == set(schema["properties"]) >= {"sessionId", "user", "state", "stopReason"}


# ------------------------------------------------------------------------------------ the state machine
def _asl_states(resource: str) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in ASL["States"].items() if state.get("Resource") == resource}


def test_the_state_machine_publishes_the_same_source_detail_types_and_detail_fields() -> None:
    publishes = _asl_states("arn:aws:states:::events:putEvents")
    entries = [entry for state in publishes.values() for entry in state["Parameters"]["Entries"]]
    assert {e["Source"] for e in entries} == {EVENT_SOURCE}
    assert sorted(e["DetailType"] for e in entries) == ["SessionFailed", "SessionFinished"]
    assert {e["Detail.$"] for e in entries} == {"$.event"}
    # the detail is built by the Pass states that write $.event: exactly the ended-session model's fields
    builders = [s for s in ASL["States"].values() if s["Type"] == "Pass" and s.get("ResultPath") == "$.event"]
    assert len(builders) == 2
    for model in (DETAIL_MODELS[SessionEventType.FINISHED], DETAIL_MODELS[SessionEventType.FAILED]):
        for builder in builders:
            assert {key.removesuffix(".$") for key in builder["Parameters"]} == set(model.model_fields)


# ------------------------------------------------------------------------------------ the README
def _readme_examples() -> list[dict[str, Any]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Events for integrators", 1)[1].split("\n## ", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


def test_the_readme_shows_one_valid_example_of_every_detail_type() -> None:
    examples = _readme_examples()
    assert sorted(e["detail-type"] for e in examples) == sorted(t.value for t in SessionEventType)
    for example in examples:
        assert validate_event(example) == example["detail"]
