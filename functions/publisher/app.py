"""Publisher function: DynamoDB stream records of the emotions and sessions tables → WebSocket channel events.
The logic lives in the shared layer (:mod:`emotion_shared.ws.publisher`)."""

from typing import Any

from aws_lambda_powertools import Logger
from emotion_shared.ws import runtime

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Returns the records to retry (``ReportBatchItemFailures``); push failures never fail the batch."""
    return runtime.publisher.get().process(event.get("Records") or []).response()
