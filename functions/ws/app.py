"""WebSocket API function: ``$connect``, ``$disconnect`` and every client message (``$default``), plus the
scheduled idle sweeper. The logic lives in the shared layer (:mod:`emotion_shared.ws`)."""

from typing import Any

from aws_lambda_powertools import Logger
from emotion_shared.ws import runtime

logger = Logger()


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.service().handle(event)


@logger.inject_lambda_context(clear_state=True)
def sweep_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge schedule: close connections idle for longer than WS_IDLE_SECONDS. ``passes`` (in the rule's
    input) sweeps are spread over the minute between two invocations."""
    passes = int((event or {}).get("passes", 1))
    return {"closed": runtime.service().sweep(passes=max(1, min(passes, 12)))}
