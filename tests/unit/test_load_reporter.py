"""analyzer.load.LoadReporter: meta.stats/degraded per heartbeat, and SessionDegraded/SessionRecovered rate-limited
(a change inside the interval is published when it ends, if it still holds; a flap that came back is not)."""

from __future__ import annotations

from typing import Any

from analyzer.load import LoadReporter
from analyzer.pipeline import Load, PipelineStats
from emotion_shared.lifecycle_events import SessionEventType


class ScriptedPipeline:
    def __init__(self) -> None:
        self.stats = PipelineStats(frames=10, received=30, skipped=5, analysed=8)
        self.degraded = False

    def load(self) -> Load:
        return Load(2.0 if self.degraded else 5.0, 5.0, 0.1, 0.2, 5 if self.degraded else 0, self.degraded)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_stats_and_rate_limited_events() -> None:
    pipeline, clock = ScriptedPipeline(), Clock()
    published: list[tuple[SessionEventType, dict[str, Any]]] = []
    reporter = LoadReporter(pipeline, lambda event, **detail: published.append((event, detail)),
                            session_id="s1", event_interval=60.0, clock=clock)
    # not working (connecting): counts only, nothing judged
    report = reporter.report(working=False)
    assert report.stats == {"analysedFrames": 8, "receivedFrames": 30, "skippedFrames": 5} and not report.degraded
    # keeping up: no event
    report = reporter.report(working=True)
    assert report.stats["analysesPerSecond"] == 5.0 and not report.degraded and published == []
    # degraded: published at once, with the figures
    pipeline.degraded = True
    clock.now = 10.0
    assert reporter.report(working=True).degraded
    assert [e for e, _ in published] == [SessionEventType.DEGRADED]
    assert published[0][1]["analysesPerSecond"] == 2.0
    # a flap within the interval: recovered then degraded again — nothing more is published
    pipeline.degraded = False
    clock.now = 20.0
    assert not reporter.report(working=True).degraded
    pipeline.degraded = True
    clock.now = 30.0
    reporter.report(working=True)
    assert len(published) == 1
    # recovered for good: published once the interval since the last event is over
    pipeline.degraded = False
    clock.now = 50.0
    reporter.report(working=True)
    assert len(published) == 1  # still inside the 60 s since the first event
    clock.now = 71.0
    reporter.report(working=True)
    assert [e for e, _ in published] == [SessionEventType.DEGRADED, SessionEventType.RECOVERED]
