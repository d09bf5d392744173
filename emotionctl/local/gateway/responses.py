"""API Gateway's own error responses ("gateway responses"), configured by the Api's ``GatewayResponses``.

Lookup as in API Gateway: the response type's own entry, else ``DEFAULT_4XX`` / ``DEFAULT_5XX`` by the type's
default status, else API Gateway's built-in ``{"message": ...}``. Among an entry's templates (keyed by content
type) the request's ``Accept`` header picks one (``application/json`` when it expresses no preference); the
answer's Content-Type is that key. The mapping template is non-VTL: only ``$context`` variable substitution.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mimeparse

# Response type → (API Gateway's default status, default message).
DEFAULTS: dict[str, tuple[int, str]] = {
    "ACCESS_DENIED": (403, "User is not authorized to access this resource"),
    "API_CONFIGURATION_ERROR": (500, "Internal server error"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "Internal server error"),
    "AUTHORIZER_FAILURE": (500, "Internal server error"),
    "BAD_REQUEST_BODY": (400, "Invalid request body"),
    "BAD_REQUEST_PARAMETERS": (400, "Invalid request parameters"),
    "INTEGRATION_FAILURE": (504, "Internal server error"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out"),
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "RESOURCE_NOT_FOUND": (404, "Not Found"),
    "THROTTLED": (429, "Too Many Requests"),
    "UNAUTHORIZED": (401, "Unauthorized"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type"),
    # A function error or a malformed proxy result: no type of its own.
    "DEFAULT_5XX": (502, "Internal server error"),
    "DEFAULT_4XX": (400, "Bad Request"),
}


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class _Configured:
    status: int | None
    headers: dict[str, str]
    templates: dict[str, str]

    def template(self, accept: str | None) -> tuple[str, str] | None:
        """``(content type, template)`` for the request's ``Accept`` header, or None without templates."""
        if not self.templates:
            return None
        offered = sorted(self.templates, key=lambda t: t == "application/json")  # JSON wins ties
        chosen = ""
        if accept and accept.strip():
            try:
                chosen = mimeparse.best_match(offered, accept)
            except (ValueError, mimeparse.MimeTypeParseException):
                chosen = ""
        if not chosen:
            chosen = "application/json" if "application/json" in self.templates else offered[-1]
        return chosen, self.templates[chosen]


class GatewayResponses:
    def __init__(self, configured: Mapping[str, _Configured]) -> None:
        self._configured = dict(configured)

    @classmethod
    def from_api(cls, api_properties: Mapping[str, Any], resolve: Callable[[Any], Any]) -> GatewayResponses:
        configured = {}
        for kind, spec in (api_properties.get("GatewayResponses") or {}).items():
            status = spec.get("StatusCode")
            headers = {
                name: str(resolve(value))
                for name, value in ((spec.get("ResponseParameters") or {}).get("Headers") or {}).items()
            }
            templates = spec.get("ResponseTemplates") or {}
            configured[kind] = _Configured(
                status=int(resolve(status)) if status is not None else None,
                headers=headers,
                templates={str(k): str(resolve(v)) for k, v in templates.items()},
            )
        return cls(configured)

    def render(
        self,
        kind: str,
        *,
        message: str | None = None,
        request_id: str = "",
        request_headers: Mapping[str, str] | None = None,
    ) -> GatewayResponse:
        default_status, default_message = DEFAULTS.get(kind, DEFAULTS["DEFAULT_5XX"])
        message = message or default_message
        entry = self._configured.get(kind)
        if entry is None:
            entry = self._configured.get("DEFAULT_4XX" if default_status < 500 else "DEFAULT_5XX")
        status = default_status
        headers: dict[str, str] = {}
        body = json.dumps({"message": message})
        if entry is not None:
            status = entry.status or default_status
            for name, value in entry.headers.items():
                headers[name] = _header_value(value, request_headers or {})
            accept = next((v for k, v in (request_headers or {}).items() if k.lower() == "accept"), None)
            selected = entry.template(accept)
            if selected is not None:
                content_type, template = selected
                headers["Content-Type"] = content_type
                body = (
                    template.replace("$context.error.messageString", json.dumps(message))
                    .replace("$context.error.message", message)
                    .replace("$context.error.responseType", kind)
                    .replace("$context.requestId", request_id)
                )
        headers.setdefault("Content-Type", "application/json")
        headers["x-amzn-ErrorType"] = _error_type(kind)
        return GatewayResponse(status=status, headers=headers, body=body.encode("utf-8"))


def _header_value(value: str, request_headers: Mapping[str, str]) -> str:
    """``'static'`` → static; ``method.request.header.X`` → the request's header X (absent → empty)."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    prefix = "method.request.header."
    if value.startswith(prefix):
        wanted = value[len(prefix):].lower()
        return next((v for k, v in request_headers.items() if k.lower() == wanted), "")
    return value


def _error_type(kind: str) -> str:
    return {
        "UNAUTHORIZED": "UnauthorizedException",
        "ACCESS_DENIED": "AccessDeniedException",
        "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationTokenException",
        "THROTTLED": "TooManyRequestsException",
        "INTEGRATION_TIMEOUT": "InternalServerErrorException",
        "AUTHORIZER_FAILURE": "AuthorizerFailureException",
        "AUTHORIZER_CONFIGURATION_ERROR": "AuthorizerConfigurationException",
        "REQUEST_TOO_LARGE": "RequestTooLargeException",
    }.get(kind, "InternalServerErrorException" if DEFAULTS.get(kind, (500, ""))[0] >= 500 else "BadRequestException")
