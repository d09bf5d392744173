"""Stale-worker sweeper, run every minute by an EventBridge schedule. The logic lives in the shared layer."""

from typing import Any

from aws_lambda_powertools import Logger
from emotion_shared import sweeper

logger = Logger()


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = sweeper.runtime.get().sweep()
    logger.info("sweep done", extra=report.as_dict())
    return report.as_dict()
