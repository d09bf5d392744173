"""The WebSocket wire protocol: message framing, channel keys, replies and events (pure functions)."""

from __future__ import annotations

import json

import pytest
from emotion_shared.errors import ErrorCode, InvalidRequest, NotFound
from emotion_shared.ws import protocol
from emotion_shared.ws.protocol import Channel, ProtocolViolation, parse_request, parse_target

SID = "65f1a2b3c4d5e6f708090a0b"


# ------------------------------------------------------------------ framing
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"id": 1, "path": "auth:token", "body": {"token": "t"}}', (1, "auth:token", {"token": "t"})),
        ('{"path": "ping"}', (None, "ping", None)),  # the reference's own example has no id
        ('{"id": "abc", "path": "ping", "body": null}', ("abc", "ping", None)),
        ('{"id": 7, "path": "no:such:path"}', (7, "no:such:path", None)),  # unknown path: a 404 later, not a close
    ],
)
def test_valid_messages_parse(raw: str, expected: tuple) -> None:
    request = parse_request(raw)
    assert (request.id, request.path, request.body) == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (None, "empty"),
        ("hello", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"ping"', "JSON object"),
        ("{}", "path"),
        ('{"id": 1, "path": ""}', "path"),
        ('{"id": 1, "path": 5}', "path"),
        ('{"id": true, "path": "ping"}', "id must be"),
        ('{"id": 1.5, "path": "ping"}', "id must be"),
        ('{"id": {"a": 1}, "path": "ping"}', "id must be"),
        ('{"id": 1, "path": "ping", "body": [1]}', "body must be"),
        ('{"id": 1, "path": "ping", "body": "x"}', "body must be"),
        ('{"id": 1, "path": "ping", "extra": 1}', "unknown key"),
        (b"\xff\xfe", "not valid JSON"),
        ('{"path": "ping", "body": {"x": "' + "a" * 40_000 + '"}}', "too large"),
    ],
)
def test_malformed_messages_are_protocol_violations(raw: str | bytes | None, fragment: str) -> None:
    with pytest.raises(ProtocolViolation) as caught:
        parse_request(raw)
    assert fragment in caught.value.message


def test_a_violation_keeps_the_id_and_path_it_could_read() -> None:
    with pytest.raises(ProtocolViolation) as caught:
        parse_request('{"id": 9, "path": "channels:subscribe", "body": 3}')
    assert (caught.value.request_id, caught.value.path) == (9, "channels:subscribe")


# ------------------------------------------------------------------ replies and events
def test_reply_shapes() -> None:
    assert json.loads(protocol.reply(1, "auth:token", 200)) == {"id": 1, "path": "auth:token", "status": 200}
    assert json.loads(protocol.reply(2, "ping", 200, {"ts": 5})) == {"id": 2, "path": "ping", "status": 200,
                                                                    "body": {"ts": 5}}
    error = json.loads(protocol.error_reply(3, "ping", 429, "slow down", ErrorCode.RATE_LIMITED, retryAfter=2))
    assert error == {"id": 3, "path": "ping", "status": 429,
                     "body": {"error": True, "status": 429, "message": "slow down", "code": "rate_limited",
                              "retryAfter": 2}}


def test_event_is_an_array_with_the_data_wrapped_in_a_list() -> None:
    assert json.loads(protocol.event("0123456789abcdef", 1000, "sws", "working")) == [
        "0123456789abcdef", 1000, "sws", ["working"]
    ]


# ------------------------------------------------------------------ channel keys
@pytest.mark.parametrize(("freq", "seconds"), list(protocol.FREQUENCIES.items()))
def test_every_reference_frequency_is_accepted(freq: str, seconds: int) -> None:
    for channel in (Channel.EMOTION_COUNTS, Channel.EMOTION_INTENSITIES):
        target = parse_target({"channel": channel.value, "key": f"{SID}:{freq}"})
        assert (target.channel, target.session_id, target.freq_seconds) == (channel, SID, seconds)


def test_frequencies_are_the_reference_list() -> None:
    assert list(protocol.FREQUENCIES) == ["1s", "3s", "5s", "10s", "30s", "1m", "5m", "10m"]
    assert list(protocol.FREQUENCIES.values()) == [1, 3, 5, 10, 30, 60, 300, 600]


def test_worker_state_channel_takes_a_bare_session_id() -> None:
    target = parse_target({"channel": "session_worker_state", "key": SID})
    assert (target.channel.event_type, target.session_id, target.freq_seconds) == ("sws", SID, None)


def test_event_types() -> None:
    assert [c.event_type for c in Channel] == ["sec", "sei", "sws"]


@pytest.mark.parametrize(
    "body",
    [None, {}, {"channel": "session_worker_state"}, {"key": SID}, {"channel": 1, "key": SID},
     {"channel": "session_worker_state", "key": ""}, {"channel": "session_worker_state", "key": SID, "x": 1}],
)
def test_a_bad_subscribe_body_is_400(body: dict | None) -> None:
    with pytest.raises(InvalidRequest):
        parse_target(body)


@pytest.mark.parametrize(
    ("channel", "key", "fragment"),
    [
        ("session_emotions", f"{SID}:5s", "unknown channel"),
        ("session_worker_state", "not-a-session", "takes a session id"),
        ("session_worker_state", f"{SID}:5s", "takes a session id"),
        ("session_emotions_counts", SID, "sessionId:freq"),
        ("session_emotions_counts", f"{SID}:2s", "unknown frequency"),
        ("session_emotions_counts", f"{SID}:60s", "unknown frequency"),
        ("session_emotions_intensities", "XYZ:5s", "sessionId:freq"),
    ],
)
def test_an_unknown_channel_or_key_is_404(channel: str, key: str, fragment: str) -> None:
    with pytest.raises(NotFound) as caught:
        parse_target({"channel": channel, "key": key})
    assert fragment in caught.value.message


def test_unsubscribe_body() -> None:
    assert protocol.parse_subscription_id({"subscriptionId": "0123456789abcdef"}) == "0123456789abcdef"
    for body in (None, {}, {"subscriptionId": 5}, {"subscriptionId": "nope"}, {"subscriptionId": "0" * 16, "x": 1}):
        with pytest.raises(InvalidRequest):
            protocol.parse_subscription_id(body)
