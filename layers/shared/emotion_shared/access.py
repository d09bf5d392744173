"""What a token may do: the one place where a principal's scope meets an operation.

The REST API (its gateway step, from the route table) and the WebSocket API (``channels:subscribe``) call
:func:`check` before anything else. A user token may do everything with its own sessions (ownership is the
service's check: someone else's session is 404). A viewer token acts for the user who minted it, on one
session, read-only:

============================================  ==============================  ============================
operation                                     on its own session              elsewhere / no session
============================================  ==============================  ============================
read (GET session, emotions, timeline, WS)    allowed                         404 ``session_not_found``
write (stop, delete, viewer-token POST/DELETE) 403 ``forbidden``              404 ``session_not_found``
create a session                              —                               403 ``forbidden``
list sessions                                 —                               404 ``route_not_found``
manage-read (GET viewer-tokens)               404 ``session_not_found``       404 ``session_not_found``
============================================  ==============================  ============================

Everything a viewer may not see answers as it would for a stranger (404: existence is not leaked);
everything it may see but not change answers 403.
"""

from __future__ import annotations

from enum import StrEnum

from .auth import Principal
from .errors import ErrorCode, Forbidden, NotFound


class Operation(StrEnum):
    LIST = "list"
    CREATE = "create"
    READ = "read"
    WRITE = "write"
    MANAGE_READ = "manage_read"


VIEWER_NOT_ALLOWED = "this token is a viewer token: it can only read session {session}"


def check(principal: Principal, operation: Operation, session_id: str | None = None) -> None:
    """Raise :class:`NotFound` or :class:`Forbidden` when ``principal`` may not perform ``operation`` (on
    ``session_id``). Ownership of a session by a user token is not checked here."""
    if not principal.is_viewer:
        return
    own = principal.session_id
    if session_id is not None and session_id != own:
        raise NotFound(f"session {session_id[:64]!r} not found", code=ErrorCode.SESSION_NOT_FOUND)
    if operation is Operation.READ and session_id == own:
        return
    if operation is Operation.LIST:
        raise NotFound(VIEWER_NOT_ALLOWED.format(session=own), code=ErrorCode.ROUTE_NOT_FOUND)
    if operation is Operation.MANAGE_READ or (operation is Operation.READ and session_id is None):
        raise NotFound(f"session {own} not found", code=ErrorCode.SESSION_NOT_FOUND)
    raise Forbidden(VIEWER_NOT_ALLOWED.format(session=own) + "; it cannot change anything")
