"""Stale-worker sweeper, run every minute by an EventBridge schedule. The logic lives in the shared layer."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from emotion_shared.sweeper import Sweeper, sweeper_from_env

logger = Logger()


@cache
def _sweeper() -> Sweeper:
    return sweeper_from_env()


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = _sweeper().sweep()
    logger.info("sweep done", extra=report.as_dict())
    return report.as_dict()
