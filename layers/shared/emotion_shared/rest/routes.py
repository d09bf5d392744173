"""The routes of ``/v1/sessions``: parse (Powertools validation), call one service operation, answer.

Each route is declared once, with :func:`_route`: its method, its path as ``docs/openapi.yaml`` and
``template.yaml`` write it (``/v1/sessions/{id}``) and what it does (:class:`~emotion_shared.access.Operation`).
That one declaration registers the function with Powertools and fills :data:`ROUTES`, the route table the
gateway step checks the caller's token scope against before any route runs (:func:`route_operation`) and that
answers 405 with ``Allow`` for a known path with another method (:func:`allowed_methods`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from ..access import Operation
from ..auth import Principal
from ..errors import InvalidRequest
from ..session_models import (
    CreateSessionRequest,
    CreateViewerTokensRequest,
    ListSessionsQuery,
    TimelineQuery,
    TranscriptQuery,
)
from . import deps
from .idempotency import HEADER as IDEMPOTENCY_HEADER

router = APIGatewayRouter()
# Route functions have no return annotation on purpose: Powertools would build a response model from it and
# re-validate every body. Responses are built from the service's output, which the tests check against
# docs/openapi.yaml.

# Path pattern → method → what it does; filled by the @_route declarations below (nothing else writes it).
ROUTES: dict[str, dict[str, Operation]] = {}
# The document's path parameters and the route functions' argument names.
_ARGUMENTS = {"id": "session_id", "tokenId": "token_id"}
_PARAMETER = re.compile(r"\{([A-Za-z]+)\}")


def _route(method: str, path: str, operation: Operation) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a route function with Powertools for ``method path`` and record its operation in ROUTES."""
    if method in ROUTES.get(path, {}):
        raise ValueError(f"route {method} {path} is declared twice")
    ROUTES.setdefault(path, {})[method] = operation
    rule = _PARAMETER.sub(lambda found: f"<{_ARGUMENTS[found.group(1)]}>", path)
    return router.route(rule, method)


def _compiled(routes: dict[str, dict[str, Operation]]) -> list[tuple[re.Pattern[str], dict[str, Operation]]]:
    """One pattern per path: its literal parts escaped, each ``{parameter}`` one segment (a trailing ``/`` too)."""
    compiled = []
    for path, methods in routes.items():
        parts = _PARAMETER.split(path)  # literal, parameter name, literal, …
        pattern = "".join("([^/]+)" if index % 2 else re.escape(part) for index, part in enumerate(parts))
        compiled.append((re.compile(pattern + "/*"), methods))
    return compiled


def _match(path: str) -> tuple[dict[str, Operation], str | None] | None:
    for pattern, methods in _route_patterns:
        found = pattern.fullmatch(path)  # not match + "$": "$" also matches before a trailing newline
        if found:
            return methods, (found.group(1) if pattern.groups else None)
    return None


def allowed_methods(path: str) -> tuple[str, ...]:
    found = _match(path)
    return tuple(sorted(found[0])) if found else ()


def route_operation(method: str, path: str) -> tuple[Operation, str | None] | None:
    """What ``method path`` does and the session id it names (None for an unknown route or method)."""
    found = _match(path)
    if found is None or method not in found[0]:
        return None
    return found[0][method], found[1]


def _json(body: Any, status: int = 200) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _principal() -> Principal:
    principal = router.context.get("principal")
    if not isinstance(principal, Principal):  # the gateway step always sets it; never trust a missing one
        raise RuntimeError("request reached a route without an authenticated principal")
    return principal


def _only_query(allowed: Iterable[str]) -> None:
    """400 for query parameters the route does not know (typos must not be silently ignored)."""
    event = router.current_event
    multi = event.multi_value_query_string_parameters or {}
    names = set(event.query_string_parameters or {}) | set(multi)
    unknown = sorted(names - set(allowed))
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise InvalidRequest(f"unknown query parameter(s) {', '.join(unknown)}; accepted: {accepted}")
    repeated = sorted(name for name, values in multi.items() if isinstance(values, list) and len(values) > 1)
    if repeated:
        raise InvalidRequest(f"query parameter(s) {', '.join(repeated)} given more than once; give each once")


@_route("POST", "/v1/sessions", Operation.CREATE)
def create_session(body: Annotated[CreateSessionRequest, Body()]):
    _only_query(())
    principal = _principal()
    key = router.current_event.headers.get(IDEMPOTENCY_HEADER.lower())
    d = deps.get()
    if key is None:
        session = d.service.create(principal, body).session
    else:
        session = d.idempotent_create.create(principal, body, key, router.lambda_context)
    return _json(session, 201)


@_route("GET", "/v1/sessions", Operation.LIST)
def list_sessions(query: Annotated[ListSessionsQuery, Query()]):
    _only_query(("state", "type", "from", "to", "limit", "offset"))
    return _json(deps.get().service.list(_principal(), query))


@_route("GET", "/v1/sessions/{id}", Operation.READ)
def get_session(session_id: str):
    _only_query(())
    return _json(deps.get().service.get(_principal(), session_id))


@_route("POST", "/v1/sessions/{id}/stop", Operation.WRITE)
def stop_session(session_id: str):
    _only_query(())
    return _json(deps.get().service.stop(_principal(), session_id))


@_route("DELETE", "/v1/sessions/{id}", Operation.WRITE)
def delete_session(session_id: str):
    _only_query(())
    deps.get().service.delete(_principal(), session_id)
    return Response(status_code=204, content_type=None, body=None)


@_route("GET", "/v1/sessions/{id}/emotions", Operation.READ)
def get_emotions(session_id: str):
    _only_query(())
    return _json(deps.get().service.emotions(_principal(), session_id))


@_route("GET", "/v1/sessions/{id}/emotions/timeline", Operation.READ)
def get_timeline(session_id: str, query: Annotated[TimelineQuery, Query()]):
    _only_query(("granularity", "start", "end"))
    return _json(deps.get().service.timeline(_principal(), session_id, query))


@_route("POST", "/v1/sessions/{id}/viewer-tokens", Operation.WRITE)
def create_viewer_tokens(session_id: str, body: Annotated[CreateViewerTokensRequest, Body()]):
    _only_query(())
    return _json(deps.get().service.create_viewer_tokens(_principal(), session_id, body), 201)


@_route("GET", "/v1/sessions/{id}/viewer-tokens", Operation.MANAGE_READ)
def list_viewer_tokens(session_id: str):
    _only_query(())
    return _json(deps.get().service.list_viewer_tokens(_principal(), session_id))


@_route("DELETE", "/v1/sessions/{id}/viewer-tokens/{tokenId}", Operation.WRITE)
def revoke_viewer_token(session_id: str, token_id: str):
    _only_query(())
    deps.get().service.revoke_viewer_token(_principal(), session_id, token_id)
    return Response(status_code=204, content_type=None, body=None)


@_route("GET", "/v1/sessions/{id}/audio/transcription-sentiment", Operation.READ)
def get_audio_timeline(session_id: str, query: Annotated[TimelineQuery, Query()]):
    _only_query(("granularity", "start", "end"))
    return _json(deps.get().service.audio_timeline(_principal(), session_id, query))


@_route("GET", "/v1/sessions/{id}/audio/transcript", Operation.READ)
def get_transcript(session_id: str, query: Annotated[TranscriptQuery, Query()]):
    _only_query(("start", "end"))
    return _json(deps.get().service.transcript(_principal(), session_id, query))


# Compiled once every route above is declared.
_route_patterns = _compiled(ROUTES)
