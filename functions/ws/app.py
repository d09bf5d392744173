"""WebSocket API function: ``$connect``, ``$disconnect`` and every client message (``$default``). The logic
lives in the shared layer (:mod:`emotion_shared.ws`)."""

from typing import Any

from aws_lambda_powertools import Logger
from emotion_shared.ws import runtime

logger = Logger()


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.service.get().handle(event)
