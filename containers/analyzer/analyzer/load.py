"""Saying so when the analysis cannot keep up: ``meta.stats``, ``meta.degraded``, a log line, a CloudWatch metric
and ``SessionDegraded`` / ``SessionRecovered`` events.

The worker's control thread calls :meth:`LoadReporter.report` with every heartbeat (once a second). It reads the
pipeline's :class:`~analyzer.pipeline.Load` (achieved analyses/s, lag, frames skipped over the last few seconds;
``degraded`` with hysteresis) and:

- returns the session's ``meta.stats`` and ``meta.degraded`` for the heartbeat to write;
- logs one line when the session becomes degraded and one when it recovers (with the figures);
- emits the metrics ``AnalysesPerSecond``, ``AnalysisLagP95``, ``SkippedFrames`` and ``Degraded`` (0/1) in
  namespace ``EmotionStream`` (dimension ``service``; the session id as metadata) as CloudWatch embedded metric
  format (Powertools Metrics) on stdout — the task's log group turns them into metrics — every
  :data:`METRIC_INTERVAL_SECONDS` and on every change;
- publishes ``SessionDegraded`` / ``SessionRecovered`` through the worker's event publisher, at most one per
  :data:`EVENT_INTERVAL_SECONDS`: a change within that time is published when it ends, if the state is still
  different from the last one published (a flap that came back is not announced).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import Metrics, MetricUnit
from emotion_shared.lifecycle_events import SessionEventType

from .pipeline import Load, Pipeline

log = logging.getLogger("analyzer.worker")

METRIC_NAMESPACE = "EmotionStream"
METRIC_INTERVAL_SECONDS = 10.0
EVENT_INTERVAL_SECONDS = 60.0

Publish = Callable[..., None]


@dataclass(frozen=True, slots=True)
class Report:
    stats: dict[str, Any]  # meta.stats
    degraded: bool  # meta.degraded


class LoadReporter:
    def __init__(
        self,
        pipeline: Pipeline,
        publish: Publish,
        *,
        session_id: str,
        event_interval: float = EVENT_INTERVAL_SECONDS,
        metric_interval: float = METRIC_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pipeline = pipeline
        self._publish = publish
        self._session_id = session_id
        self._event_interval = event_interval
        self._metric_interval = metric_interval
        self._clock = clock
        self._metrics = Metrics(
            namespace=METRIC_NAMESPACE, service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "analyzer"
        )
        self.degraded = False
        self._published = False  # the state the last event announced (False: none yet, i.e. not degraded)
        self._last_event: float | None = None
        self._last_metric: float | None = None

    def report(self, *, working: bool) -> Report:
        """The heartbeat's stats; logs, metrics and events on the way. Not ``working`` (connecting,
        reconnecting): the counts only, the load is not judged."""
        stats = self._pipeline.stats
        out: dict[str, Any] = {
            "analysedFrames": stats.analysed,
            "receivedFrames": stats.received,
            "skippedFrames": stats.skipped,
        }
        if not working:
            return Report(out, self.degraded)
        load = self._pipeline.load()
        out |= load.as_stats()
        now = self._clock()
        changed = load.degraded != self.degraded
        self.degraded = load.degraded
        if changed:
            figures = {**load.as_stats(), "skippedInWindow": load.skipped}
            if load.degraded:
                log.warning("degraded: the analysis cannot keep up with the stream", extra=figures)
            else:
                log.info("recovered: the analysis keeps up with the stream again", extra=figures)
        due = self._last_metric is None or now - self._last_metric >= self._metric_interval
        if changed or (load.settled and due):  # no "0 analyses/s" metric for the first second of a stream
            self._emit_metrics(load)
            self._last_metric = now
        self._maybe_publish(load, now)
        return Report(out, self.degraded)

    def _emit_metrics(self, load: Load) -> None:
        metrics = self._metrics
        metrics.add_metric(name="AnalysesPerSecond", unit=MetricUnit.CountPerSecond, value=load.analyses_per_second)
        metrics.add_metric(name="AnalysisLagP95", unit=MetricUnit.Seconds, value=load.lag_p95)
        metrics.add_metric(name="SkippedFrames", unit=MetricUnit.Count, value=load.skipped)
        metrics.add_metric(name="Degraded", unit=MetricUnit.Count, value=1 if load.degraded else 0)
        metrics.add_metadata(key="session_id", value=self._session_id)  # like every log line; not a dimension
        metrics.flush_metrics()
        metrics.clear_metrics()  # flush keeps them when POWERTOOLS_METRICS_DISABLED is set

    def _maybe_publish(self, load: Load, now: float) -> None:
        if self.degraded == self._published:
            return
        if self._last_event is not None and now - self._last_event < self._event_interval:
            return  # rate-limited: published when the interval is over, if still different
        event = SessionEventType.DEGRADED if self.degraded else SessionEventType.RECOVERED
        self._publish(event, **load.as_stats())
        self._published = self.degraded
        self._last_event = now
