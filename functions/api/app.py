"""REST API function (API Gateway REST proxy integration). The code lives in the shared layer."""

from emotion_shared.rest import handler

__all__ = ["handler"]
