"""WebSocket idle sweeper function (EventBridge schedule): closes connections idle for longer than
WS_IDLE_SECONDS. The logic lives in the shared layer
(:meth:`emotion_shared.ws.websocket_service.WebSocketService.sweep`)."""

from typing import Any

from aws_lambda_powertools import Logger
from emotion_shared.ws import runtime

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``passes`` (in the rule's input) sweeps are spread over the minute between two invocations."""
    passes = int((event or {}).get("passes", 1))
    return {"closed": runtime.service.get().sweep(passes=max(1, min(passes, 12)))}
