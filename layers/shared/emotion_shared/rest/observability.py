"""Powertools Logger, Metrics and Tracer of the REST API: created once per process (cold start)."""

from __future__ import annotations

import logging
import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "emotion-stream-api"
NAMESPACE = "EmotionStream"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# Patches botocore once; disabled outside Lambda or with POWERTOOLS_TRACE_DISABLED=true.
tracer = Tracer(service=SERVICE)

# The shared package logs through the standard library; give it the same JSON output and correlation id.
logging.getLogger("emotion_shared")
copy_config_to_registered_loggers(source_logger=logger, include={"emotion_shared"})


class MetricsObserver:
    """Session outcomes as CloudWatch metrics (EMF, namespace ``EmotionStream``)."""

    def created(self, session_id: str) -> None:
        metrics.add_metric(name="SessionsCreated", unit=MetricUnit.Count, value=1)

    def rejected(self, reason: str) -> None:
        metrics.add_metric(name="SessionsRejected", unit=MetricUnit.Count, value=1)
        metrics.add_metadata(key="rejectedReason", value=reason)

    def stopped(self, session_id: str) -> None:
        metrics.add_metric(name="SessionsStopped", unit=MetricUnit.Count, value=1)
