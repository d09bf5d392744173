"""Issue 11's acceptance, black box: sentences spoken by espeak-ng (three clearly positive, then three clearly
negative) muxed with the real face clip into a live RTMP stream (Debian's ffmpeg), analysed by the real worker
in `emotionctl local up`: the session's `…/audio/transcription-sentiment` shows positive then negative speech at
the times the sentences were spoken, `…/audio/transcript` has their text (word error rate printed), and every
segment arrived over the WebSocket channel `session_audio_sentiment` as well.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import testsupport
from emotion_shared.auth import create_token
from stack_support import StackProcess, start_stack
from websocket_support import Client, connected, ws_url

from emotionctl.media import RtmpSource
from emotionctl.media.speech import Utterance, make_speech_clip, word_error_rate

pytestmark = [pytest.mark.stack, pytest.mark.media]

USER = "speaker"
SESSION_END = 150.0  # the clip lasts ~35 s; the session ends when its stream does (generous on a busy machine)
TIME_TOLERANCE = 0.8  # seconds: a segment's start/end vs. the sentence's, after the stream's start offset


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    testsupport.needs("ffmpeg", "espeak-ng")
    stack = start_stack(tmp_path_factory.mktemp("audio-stack"), "RateLimitCapacity=100000", "LogLevel=INFO",
                        extra_args=("--task-env", "RECONNECT_WINDOW_SECONDS=1"))
    try:
        yield stack
    finally:
        code = stack.stop()
        assert code == 0, f"the local stack exited with {code}:\n{stack.log()}"


def _api(stack: StackProcess, token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, stack.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                            **kwargs)


def _token(stack: StackProcess) -> str:
    import boto3

    aws = stack.state["aws"]
    client = boto3.session.Session().client("dynamodb", endpoint_url=aws["endpoint"], region_name=aws["region"],
                                            aws_access_key_id="local", aws_secret_access_key="local")
    return create_token(client, str(stack.state["tables"]["ControlTable"]), USER)


def _best(utterance: Utterance, segments: list[dict[str, Any]], offset: float) -> dict[str, Any] | None:
    """The segment that overlaps the utterance (shifted by the stream's start offset) the most."""
    lo, hi = utterance.start + offset, utterance.end + offset
    scored = [(min(hi, s["end"]) - max(lo, s["start"]), s) for s in segments]
    scored = [x for x in scored if x[0] > 0]
    return max(scored, key=lambda x: x[0])[1] if scored else None


def test_spoken_positive_then_negative_sentences_over_a_live_stream(stack: StackProcess) -> None:
    clip, script = make_speech_clip()
    token = _token(stack)
    with RtmpSource(clip, loop=False, max_lifetime=SESSION_END + 30) as source:
        created = _api(stack, token, "POST", "/v1/sessions", json={"name": "speech", "streamUri": source.url})
        assert created.status_code == 201, created.text
        session_id = created.json()["_id"]
        assert created.json()["config"]["audioAnalysis"] is True

        async def follow() -> list[list[Any]]:
            """``sas`` events until the session has ended (pinging meanwhile: the connection must stay alive)."""
            events: list[list[Any]] = []
            async with connected(ws_url(stack)) as client:
                assert (await client.auth(token))["status"] == 200
                reply = await client.subscribe("session_audio_sentiment", session_id)
                assert reply["status"] == 200, reply
                deadline = time.monotonic() + SESSION_END
                while time.monotonic() < deadline:
                    try:
                        events.append(await Client.event(client, timeout=3.0))
                        continue
                    except TimeoutError:
                        await client.send("ping")
                    state = _api(stack, token, "GET", f"/v1/sessions/{session_id}").json()["state"]
                    if state != "active":
                        # whatever the publisher still has in flight
                        try:
                            while True:
                                events.append(await Client.event(client, timeout=3.0))
                        except TimeoutError:
                            return events
            raise AssertionError(f"session {session_id} did not end within {SESSION_END} s")

        events = asyncio.run(follow())

    session = _api(stack, token, "GET", f"/v1/sessions/{session_id}").json()
    assert session["meta"].get("stopReason") == "stream_ended", session
    audio_sources = [s for s in session["sources"] if s["type"] == "audio"]
    assert audio_sources and audio_sources[0]["codec"] == "aac", session["sources"]
    assert audio_sources[0]["sampleRate"] == 44100 and audio_sources[0]["channels"] == 2, audio_sources
    stats = session["meta"].get("stats", {})
    # the last heartbeat's figures (the worker's end writes no stats)
    assert stats.get("audioSeconds", 0) > 0 and stats.get("audioSegments", 0) >= 1 and "audioError" not in stats, stats

    transcript = _api(stack, token, "GET", f"/v1/sessions/{session_id}/audio/transcript")
    assert transcript.status_code == 200, transcript.text
    segments = transcript.json()["segments"]
    assert segments, "no speech segment"
    # the stream starts when the worker connects: one offset maps clip time to session time
    offset = segments[0]["start"] - script[0].start
    assert 0 <= offset < 60, (offset, segments[0])
    matched = [_best(u, segments, offset) for u in script]
    report = [(u.sentiment, u.text, m and (m["start"], m["end"], m["sentiment"], m["text"])) for u, m in
              zip(script, matched, strict=True)]
    wer = word_error_rate([u.text for u in script], [s["text"] for s in segments])
    print(f"\nstream offset {offset:.2f} s; word error rate {wer:.3f} over {len(script)} sentences")
    for line in report:
        print("  ", line)
    for utterance, segment in zip(script, matched, strict=True):
        assert segment is not None, (utterance, segments)
        assert segment["sentiment"] == utterance.sentiment, (utterance, segment)
        assert abs(segment["start"] - (utterance.start + offset)) <= TIME_TOLERANCE, (utterance, segment, offset)
        assert abs(segment["end"] - (utterance.end + offset)) <= TIME_TOLERANCE, (utterance, segment, offset)
    assert wer <= 0.25

    # the reference's timeline: positive speech first, negative speech later, at those times
    timeline = _api(stack, token, "GET", f"/v1/sessions/{session_id}/audio/transcription-sentiment",
                    params={"granularity": 5}).json()["timeline"]
    assert timeline, "empty transcription-sentiment timeline"
    positive_end = max(u.end for u in script if u.sentiment == "positive") + offset
    negative_start = min(u.start for u in script if u.sentiment == "negative") + offset
    for entry in timeline:
        shares = entry["sentiments"]
        assert abs(sum(shares.values()) - 1) < 1e-3, entry
        if entry["end"] <= negative_start:
            assert shares["positive"] > 0.5, (entry, negative_start)
        if entry["start"] >= positive_end:
            assert shares["negative"] > 0.5, (entry, positive_end)
    labels = [e["sentiments"]["positive"] > e["sentiments"]["negative"] for e in timeline]
    assert labels[0] and not labels[-1] and labels == sorted(labels, reverse=True), timeline

    # every stored segment was pushed over the WebSocket, as the transcript has it
    pushed = [e[3][0] for e in events if e[2] == "sas"]
    assert sorted((p["start"], p["text"]) for p in pushed) == [(s["start"], s["text"]) for s in segments], pushed

    # DELETE removes the speech with the rest
    assert _api(stack, token, "DELETE", f"/v1/sessions/{session_id}").status_code == 204
    assert _api(stack, token, "GET", f"/v1/sessions/{session_id}/audio/transcript").status_code == 404
