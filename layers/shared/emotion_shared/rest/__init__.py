"""REST API of the sessions service (API Gateway REST proxy integration, Powertools resolver).

``handler`` is the Lambda entry point (``functions/api/app.py`` re-exports it); ``app`` is the resolver.
"""

from .api import app, handler, principal_from_event

__all__ = ["app", "handler", "principal_from_event"]
