"""The routes of ``/v1/sessions``: parse (Powertools validation), call one service operation, answer.

:data:`ROUTES` is the route table: every path pattern, its methods and what each one does
(:class:`~emotion_shared.access.Operation`). The gateway step checks the caller's token scope against it once,
before any route runs (:func:`route_operation`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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

# Path patterns, their methods and what each does — the scope check's input, and the 405 answer (with
# ``Allow``) instead of 404 for a known path.
ROUTES: dict[str, dict[str, Operation]] = {
    "/v1/sessions": {"GET": Operation.LIST, "POST": Operation.CREATE},
    "/v1/sessions/{id}": {"DELETE": Operation.WRITE, "GET": Operation.READ},
    "/v1/sessions/{id}/stop": {"POST": Operation.WRITE},
    "/v1/sessions/{id}/emotions": {"GET": Operation.READ},
    "/v1/sessions/{id}/emotions/timeline": {"GET": Operation.READ},
    "/v1/sessions/{id}/viewer-tokens": {"GET": Operation.MANAGE_READ, "POST": Operation.WRITE},
    "/v1/sessions/{id}/viewer-tokens/{tokenId}": {"DELETE": Operation.WRITE},
    "/v1/sessions/{id}/audio/transcription-sentiment": {"GET": Operation.READ},
    "/v1/sessions/{id}/audio/transcript": {"GET": Operation.READ},
}
_ROUTE_RES = [
    (re.compile(re.sub(r"\\\{[A-Za-z]+\\\}", "([^/]+)", re.escape(path)) + "/*"), methods)
    for path, methods in ROUTES.items()
]


def _match(path: str) -> tuple[dict[str, Operation], str | None] | None:
    for pattern, methods in _ROUTE_RES:
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


@router.post("/v1/sessions")
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


@router.get("/v1/sessions")
def list_sessions(query: Annotated[ListSessionsQuery, Query()]):
    _only_query(("state", "type", "from", "to", "limit", "offset"))
    return _json(deps.get().service.list(_principal(), query))


@router.get("/v1/sessions/<session_id>")
def get_session(session_id: str):
    _only_query(())
    return _json(deps.get().service.get(_principal(), session_id))


@router.post("/v1/sessions/<session_id>/stop")
def stop_session(session_id: str):
    _only_query(())
    return _json(deps.get().service.stop(_principal(), session_id))


@router.delete("/v1/sessions/<session_id>")
def delete_session(session_id: str):
    _only_query(())
    deps.get().service.delete(_principal(), session_id)
    return Response(status_code=204, content_type=None, body=None)


@router.get("/v1/sessions/<session_id>/emotions")
def get_emotions(session_id: str):
    _only_query(())
    return _json(deps.get().service.emotions(_principal(), session_id))


@router.get("/v1/sessions/<session_id>/emotions/timeline")
def get_timeline(session_id: str, query: Annotated[TimelineQuery, Query()]):
    _only_query(("granularity", "start", "end"))
    return _json(deps.get().service.timeline(_principal(), session_id, query))


@router.post("/v1/sessions/<session_id>/viewer-tokens")
def create_viewer_tokens(session_id: str, body: Annotated[CreateViewerTokensRequest, Body()]):
    _only_query(())
    return _json(deps.get().service.create_viewer_tokens(_principal(), session_id, body), 201)


@router.get("/v1/sessions/<session_id>/viewer-tokens")
def list_viewer_tokens(session_id: str):
    _only_query(())
    return _json(deps.get().service.list_viewer_tokens(_principal(), session_id))


@router.delete("/v1/sessions/<session_id>/viewer-tokens/<token_id>")
def revoke_viewer_token(session_id: str, token_id: str):
    _only_query(())
    deps.get().service.revoke_viewer_token(_principal(), session_id, token_id)
    return Response(status_code=204, content_type=None, body=None)


@router.get("/v1/sessions/<session_id>/audio/transcription-sentiment")
def get_audio_timeline(session_id: str, query: Annotated[TimelineQuery, Query()]):
    _only_query(("granularity", "start", "end"))
    return _json(deps.get().service.audio_timeline(_principal(), session_id, query))


@router.get("/v1/sessions/<session_id>/audio/transcript")
def get_transcript(session_id: str, query: Annotated[TranscriptQuery, Query()]):
    _only_query(("start", "end"))
    return _json(deps.get().service.transcript(_principal(), session_id, query))
