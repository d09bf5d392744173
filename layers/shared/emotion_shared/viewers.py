"""Viewer tokens: read-only tokens for one session, at most :data:`MAX_LIVE_PER_SESSION` live at a time.

Layout in the control table:

- ``token#<sha256>`` — the token itself (:mod:`emotion_shared.auth`), ``scope = viewer``, ``sessionId``,
  ``user`` (the session's owner), ``expiresAt``/``expiresAtMs``, ``ttl``.
- ``viewers#<sessionId>`` → ``tokens`` (M: tokenId → {``h``: the token's hash, ``exp``: expiry epoch ms}),
  ``version`` (N), ``ttl``: the session's live viewer tokens, read consistently for the list and the limit,
  and for deleting them all with the session.

Minting is one transaction: a condition check that the session exists and is the caller's, the puts of the
new token items, and the update of ``viewers#<sessionId>`` conditioned on the ``version`` read just before
(optimistic locking; expired and revoked entries are pruned in the same write) — so the limit holds under
concurrency and no token is minted for a session being deleted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from .auth import TOKEN_KEY_PREFIX, TOKEN_PREFIX, Scope, TokenInfo, TokenStore, hash_token, token_id_of_hash
from .dynamo import batch_write, deserialize, error_code
from .errors import Conflict, ErrorCode, NotFound, ServiceUnavailable

MAX_LIVE_PER_SESSION = 10
VIEWERS_KEY_PREFIX = "viewers#"
_ATTEMPTS = 5


def viewers_key(session_id: str) -> str:
    return VIEWERS_KEY_PREFIX + session_id


@dataclass(frozen=True)
class _Entry:
    token_id: str
    token_hash: str
    expires_ms: int


class ViewerTokens:
    def __init__(self, client: Any, control_table: str, sessions_table: str, tokens: TokenStore | None = None) -> None:
        self._db = client
        self._table = control_table
        self._sessions = sessions_table
        self._tokens = tokens or TokenStore(client, control_table)

    # ------------------------------------------------------------------ reads
    def _read(self, session_id: str) -> tuple[list[_Entry], int | None]:
        response = self._db.get_item(TableName=self._table, Key={"pk": {"S": viewers_key(session_id)}},
                                     ConsistentRead=True)
        raw = response.get("Item")
        if not raw:
            return [], None
        item = deserialize(raw)
        entries = [
            _Entry(str(tid), str(data["h"]), int(data["exp"])) for tid, data in (item.get("tokens") or {}).items()
        ]
        return entries, int(item.get("version", 0))

    def _infos(self, entries: list[_Entry]) -> dict[str, TokenInfo]:
        if not entries:
            return {}
        response = self._db.batch_get_item(RequestItems={self._table: {
            "Keys": [{"pk": {"S": TOKEN_KEY_PREFIX + e.token_hash}} for e in entries], "ConsistentRead": True,
        }})
        items = response.get("Responses", {}).get(self._table, [])
        unprocessed = response.get("UnprocessedKeys") or {}
        if unprocessed:  # at most 10 small items: only under throttling
            raise ServiceUnavailable("the token store is busy; retry in a moment")
        infos = [TokenInfo.from_item(deserialize(item)) for item in items]
        return {info.token_id: info for info in infos}

    def live(self, session_id: str, now: int) -> list[dict[str, Any]]:
        """The session's live viewer tokens (never their secrets), oldest first."""
        entries, _ = self._read(session_id)
        infos = self._infos([e for e in entries if e.expires_ms > now])
        live = sorted((i for i in infos.values() if i.live(now)), key=lambda i: (i.created_at, i.token_id))
        return [view(info) for info in live]

    # ------------------------------------------------------------------ writes
    def mint(self, session_id: str, user: str, product: str, count: int, expires_in_seconds: int,
             now: int) -> list[dict[str, Any]]:
        """``count`` new viewer tokens for the caller's session; :class:`Conflict` (``viewer_token_limit``) when
        that would make more than 10 live, :class:`NotFound` when the session is gone or not the caller's."""
        expires_ms = now + expires_in_seconds * 1000
        for _ in range(_ATTEMPTS):
            entries, version = self._read(session_id)
            live = [e for e in entries if e.expires_ms > now]
            if live:  # revoked tokens leave the map when revoked; expired ones are pruned here
                revoked = {tid for tid, info in self._infos(live).items() if not info.live(now)}
                live = [e for e in live if e.token_id not in revoked]
            if len(live) + count > MAX_LIVE_PER_SESSION:
                raise Conflict(
                    f"session {session_id} has {len(live)} live viewer tokens; at most {MAX_LIVE_PER_SESSION} may be"
                    f" live at a time, so {count} more cannot be created (revoke some with DELETE …/viewer-tokens/"
                    "{tokenId} or wait for them to expire)",
                    code=ErrorCode.VIEWER_TOKEN_LIMIT,
                )
            secrets_ = [TOKEN_PREFIX + secrets.token_urlsafe(32) for _ in range(count)]
            hashes = [hash_token(s) for s in secrets_]
            puts = [
                self._tokens.item(h, user=user, product=product, now=now, expires_ms=expires_ms,
                                  scope=Scope.VIEWER, session_id=session_id)
                for h in hashes
            ]
            new_map = {e.token_id: e for e in live} | {
                token_id_of_hash(h): _Entry(token_id_of_hash(h), h, expires_ms) for h in hashes
            }
            latest = max(e.expires_ms for e in new_map.values())
            transact: list[dict[str, Any]] = [
                {"ConditionCheck": {
                    "TableName": self._sessions, "Key": {"id": {"S": session_id}},
                    "ConditionExpression": "#u = :u", "ExpressionAttributeNames": {"#u": "user"},
                    "ExpressionAttributeValues": {":u": {"S": user}},
                }},
                {"Put": {
                    "TableName": self._table,
                    "Item": {
                        "pk": {"S": viewers_key(session_id)},
                        "tokens": {"M": {tid: {"M": {"h": {"S": e.token_hash}, "exp": {"N": str(e.expires_ms)}}}
                                         for tid, e in new_map.items()}},
                        "version": {"N": str((version or 0) + 1)},
                        "ttl": {"N": str(latest // 1000 + 86_400)},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)" if version is None else "version = :v",
                    **({} if version is None else {"ExpressionAttributeValues": {":v": {"N": str(version)}}}),
                }},
                *({"Put": {"TableName": self._table, "Item": put, "ConditionExpression": "attribute_not_exists(pk)"}}
                  for put in puts),
            ]
            try:
                self._db.transact_write_items(TransactItems=transact)
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    raise NotFound(f"session {session_id} not found") from None
                continue  # the map changed under us (another mint or a revoke): read again
            return [
                {**view(TokenInfo.from_item(deserialize(put))), "token": secret}
                for put, secret in zip(puts, secrets_, strict=True)
            ]
        raise ServiceUnavailable("viewer tokens of this session changed concurrently too often; retry")

    def revoke(self, session_id: str, token_id: str, now: int) -> None:
        """Revoke one live viewer token of the session; :class:`NotFound` (``viewer_token_not_found``)."""
        entries, _ = self._read(session_id)
        entry = next((e for e in entries if e.token_id == token_id), None)
        missing = NotFound(f"viewer token {token_id[:32]!r} not found on session {session_id}",
                           code=ErrorCode.VIEWER_TOKEN_NOT_FOUND)
        if entry is None:
            raise missing
        revoked = self._tokens.revoke_hash(entry.token_hash, now)
        self._forget(session_id, token_id)
        if not revoked or entry.expires_ms <= now:
            raise missing

    def _forget(self, session_id: str, token_id: str) -> None:
        try:
            self._db.update_item(
                TableName=self._table, Key={"pk": {"S": viewers_key(session_id)}},
                UpdateExpression="REMOVE tokens.#t ADD version :one", ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#t": token_id}, ExpressionAttributeValues={":one": {"N": "1"}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def delete_all(self, session_id: str) -> int:
        """Delete every viewer token of a session (it is being deleted). Returns how many there were."""
        entries, version = self._read(session_id)
        requests = [{"DeleteRequest": {"Key": {"pk": {"S": TOKEN_KEY_PREFIX + e.token_hash}}}} for e in entries]
        if version is not None:
            requests.append({"DeleteRequest": {"Key": {"pk": {"S": viewers_key(session_id)}}}})
        if requests:
            batch_write(self._db, self._table, requests)
        return len(entries)


def view(info: TokenInfo) -> dict[str, Any]:
    """A viewer token as the API shows it (never the secret)."""
    return {
        "tokenId": info.token_id,
        "session": info.session_id,
        "createdAt": info.created_at,
        "expiresAt": info.expires_at,
        "lastUsedAt": info.last_used_at,
    }


__all__ = ["MAX_LIVE_PER_SESSION", "ViewerTokens", "view", "viewers_key"]
