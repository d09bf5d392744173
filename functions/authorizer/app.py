"""REQUEST-type Lambda authorizer of the REST API: ``Authorization: Bearer <token>`` → IAM policy + context."""

import os
from typing import Any

from aws_lambda_powertools import Logger
from emotion_shared import auth

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "emotion-stream-authorizer")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Never logs the token; an unknown or missing one raises ``Exception("Unauthorized")`` (→ 401)."""
    return auth.handler(event, context)
