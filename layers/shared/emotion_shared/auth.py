"""Opaque bearer tokens, their lifecycle, and the REST API's Lambda authorizer.

A token is ``emo_<43 url-safe random characters>`` (256 bits). Only its SHA-256 is stored, in the control
table under ``token#<sha256 hex>`` → ``{tokenId, user, product, scope, sessionId?, name?, createdAt,
expiresAt?, expiresAtMs?, lastUsedAt?, lastUsedMs?, revoked?, revokedAt?, ttl?}``: a leaked table does not
leak tokens. ``tokenId`` is the first 16 hex digits of the hash: it names a token (list, revoke) without
being able to authenticate. The sparse GSI ``tokensByUser`` (``user`` + ``createdAt``) lists a user's tokens.

Two scopes: ``user`` tokens act for their user on every route; ``viewer`` tokens (minted per session, see
:mod:`emotion_shared.viewers`) carry ``sessionId`` and may only read that session — what they may do is
decided in one place, :mod:`emotion_shared.access`.

A token is refused once it is revoked or past ``expiresAt``. Decisions are cached: by API Gateway for the
authorizer cache TTL (template parameter ``AuthorizerCacheSeconds``; the authorizer function itself keeps no
cache), and by the WebSocket function in process for ``TOKEN_CACHE_SECONDS`` (set to that same TTL, never past
the token's expiry). The deployed API
checks tokens in a REQUEST-type Lambda authorizer (:func:`handler`) whose policy allows the whole API, with
the principal (user, product, scope, session) as its context.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    parse_api_gateway_arn,
)
from botocore.exceptions import ClientError

from .clock import iso_ms, now_ms, parse_iso
from .composition import CompositionRoot
from .config import DEFAULT_PRODUCT, Settings
from .dynamo import deserialize, error_code, query_all

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "emo_"  # noqa: S105 - a prefix, not a secret
TOKEN_KEY_PREFIX = "token#"  # noqa: S105 - a key prefix, not a secret
TOKENS_BY_USER_INDEX = "tokensByUser"
MAX_TOKEN_LENGTH = 256
TOKEN_ID_LENGTH = 16
MIN_TOKEN_ID_PREFIX = 6
MAX_NAME_LENGTH = 128
# ``lastUsedAt`` is written at most once a minute per token (a conditional write: cheap and race-free).
LAST_USED_RESOLUTION_MS = 60_000
# Expired and revoked token items stay listable this long, then DynamoDB's TTL removes them.
KEEP_ENDED_TOKENS_SECONDS = 7 * 86_400
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
_TOKEN_ID_RE = re.compile(r"^[0-9a-f]{6,16}$")
_DURATION_RE = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


class Scope(StrEnum):
    USER = "user"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the token's user and product (analysis tier), and what the token may do.
    A viewer token acts for the user who minted it, on ``session_id`` only."""

    user: str
    product: str
    scope: Scope = Scope.USER
    session_id: str | None = None
    token_id: str | None = None

    @property
    def is_viewer(self) -> bool:
        return self.scope is Scope.VIEWER

    @property
    def limit_subject(self) -> str:
        """Whom rate and subscription limits count against: the user, or for a viewer token the token itself
        (``viewer#<tokenId>``; ``#`` never occurs in user names), so viewers do not use up their owner's
        allowance."""
        return f"viewer#{self.token_id}" if self.is_viewer else self.user

    def context(self) -> dict[str, str]:
        """The authorizer context API Gateway passes to the handler (``requestContext.authorizer``)."""
        out = {"user": self.user, "product": self.product, "scope": self.scope.value}
        if self.token_id:
            out["tokenId"] = self.token_id
        if self.session_id:
            out["sessionId"] = self.session_id
        return out

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Principal | None:
        """The principal an authorizer context describes, or None when it is malformed. A context without
        ``scope`` is a user token's (older authorizer results); a viewer context without a session is refused."""
        user = context.get("user")
        product = context.get("product") or DEFAULT_PRODUCT
        if not isinstance(user, str) or not user or not isinstance(product, str):
            return None
        try:
            scope = Scope(str(context.get("scope") or Scope.USER.value))
        except ValueError:
            return None
        session_id = context.get("sessionId") or None
        if scope is Scope.VIEWER and not isinstance(session_id, str):
            return None
        token_id = context.get("tokenId")
        return cls(user=user, product=product, scope=scope,
                   session_id=session_id if scope is Scope.VIEWER else None,
                   token_id=token_id if isinstance(token_id, str) and token_id else None)


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a stored token (never the secret)."""

    token_id: str
    user: str
    product: str
    scope: Scope
    session_id: str | None
    name: str | None
    created_at: str
    expires_at: str | None
    expires_at_ms: int | None
    last_used_at: str | None
    revoked: bool

    def status(self, now: int) -> str:
        if self.revoked:
            return "revoked"
        if self.expires_at_ms is not None and self.expires_at_ms <= now:
            return "expired"
        return "active"

    def live(self, now: int) -> bool:
        return self.status(now) == "active"

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> TokenInfo:
        expires_ms = item.get("expiresAtMs")
        return cls(
            token_id=str(item.get("tokenId") or str(item["pk"])[len(TOKEN_KEY_PREFIX):][:TOKEN_ID_LENGTH]),
            user=str(item["user"]),
            product=str(item.get("product") or DEFAULT_PRODUCT),
            scope=Scope(str(item.get("scope") or Scope.USER.value)),
            session_id=item.get("sessionId"),
            name=item.get("name"),
            created_at=str(item.get("createdAt", "")),
            expires_at=item.get("expiresAt"),
            expires_at_ms=int(expires_ms) if expires_ms is not None else None,
            last_used_at=item.get("lastUsedAt"),
            revoked=bool(item.get("revoked")),
        )


@dataclass(frozen=True)
class MintedToken:
    """A token just created: the secret (shown once) and its public record."""

    token: str
    info: TokenInfo


class TokenNotFound(LookupError):
    pass


class AmbiguousTokenId(LookupError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_key(token: str) -> str:
    return TOKEN_KEY_PREFIX + hash_token(token)


def token_id_of_hash(token_hash: str) -> str:
    return token_hash[:TOKEN_ID_LENGTH]


def validate_name(kind: str, value: str) -> str:
    """User and product ids: 1–128 characters, letters, digits and ``._@+-`` (they end up in table keys)."""
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{kind} must be 1-128 characters of letters, digits and . _ @ + -, starting with a letter or digit"
        )
    return value


def validate_label(value: str) -> str:
    """A token's free-text name: 1–128 printable characters."""
    if not value.strip() or len(value) > MAX_NAME_LENGTH or not value.isprintable():
        raise ValueError(f"token name must be 1-{MAX_NAME_LENGTH} printable characters")
    return value


def parse_expiry(text: str, now: int) -> int | None:
    """``--expires``: a duration (``90s``, ``30m``, ``12h``, ``30d``, ``2w``), a date or date-time
    (``2027-01-01`` = that day's start, UTC), or ``never``. Returns epoch ms (None for never); a moment that is
    not in the future is refused (``ValueError``)."""
    value = text.strip().lower()
    if value == "never":
        return None
    match = _DURATION_RE.match(value)
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        if seconds <= 0:
            raise ValueError("--expires must be a positive duration")
        return now + seconds * 1000
    try:
        moment = parse_iso(text)
    except ValueError:
        raise ValueError(
            f"--expires must be a duration (30d, 12h, 90m), a date (2027-01-01), a date-time or 'never'; got {text!r}"
        ) from None
    at = int(moment.timestamp() * 1000)
    if at <= now:
        raise ValueError(f"--expires {text} is not in the future")
    return at


def describe_expiry(expires_ms: int | None, now: int) -> str:
    """``2026-12-02T16:00:00.000Z (in 24 h)`` or ``never``."""
    if expires_ms is None:
        return "never"
    left = timedelta(milliseconds=max(0, expires_ms - now))
    hours = left.total_seconds() / 3600
    human = f"in {hours:.0f} h" if hours < 72 else f"in {left.days} days"
    return f"{iso_ms(expires_ms)} ({human})"


def bearer_token(headers: Mapping[str, Any] | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (header name and scheme case-insensitive)."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == "authorization"), None)
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


def _ttl_after(moment_ms: int) -> int:
    return moment_ms // 1000 + KEEP_ENDED_TOKENS_SECONDS


class TokenStore:
    """Tokens in the control table. ``cache_seconds`` keeps positive lookups in memory (never past a token's
    expiry); a revoke then takes effect within that delay (plus API Gateway's authorizer cache TTL where one
    is in front — which is why the authorizer function runs with no in-process cache)."""

    def __init__(self, client: Any, control_table: str, *, cache_seconds: float = 0.0) -> None:
        self._db = client
        self._table = control_table
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal, int | None]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ minting
    def item(
        self,
        token_hash: str,
        *,
        user: str,
        product: str,
        now: int,
        expires_ms: int | None,
        name: str | None = None,
        scope: Scope = Scope.USER,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """The control-table item of a new token (DynamoDB JSON). Viewer tokens are written by
        :mod:`emotion_shared.viewers` in its own transaction."""
        item: dict[str, Any] = {
            "pk": {"S": TOKEN_KEY_PREFIX + token_hash},
            "tokenId": {"S": token_id_of_hash(token_hash)},
            "user": {"S": user},
            "product": {"S": product},
            "scope": {"S": scope.value},
            "createdAt": {"S": iso_ms(now)},
        }
        if name:
            item["name"] = {"S": name}
        if session_id:
            item["sessionId"] = {"S": session_id}
        if expires_ms is not None:
            item["expiresAt"] = {"S": iso_ms(expires_ms)}
            item["expiresAtMs"] = {"N": str(expires_ms)}
            item["ttl"] = {"N": str(_ttl_after(expires_ms))}
        return item

    def mint(
        self,
        user: str,
        product: str = DEFAULT_PRODUCT,
        *,
        expires_ms: int | None = None,
        name: str | None = None,
        now: int | None = None,
    ) -> MintedToken:
        validate_name("user", user)
        validate_name("product", product)
        if name is not None:
            validate_label(name)
        at = now_ms() if now is None else now
        if expires_ms is not None and expires_ms <= at:
            raise ValueError("a token's expiry must be in the future")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        item = self.item(hash_token(token), user=user, product=product, now=at, expires_ms=expires_ms, name=name)
        self._db.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        return MintedToken(token, TokenInfo.from_item(deserialize(item)))

    def create(self, user: str, product: str = DEFAULT_PRODUCT, *, expires_ms: int | None = None,
               name: str | None = None) -> str:
        return self.mint(user, product, expires_ms=expires_ms, name=name).token

    # ------------------------------------------------------------------ checking
    def lookup(self, token: str) -> Principal | None:
        """The principal of a live token, or None when it is unknown, malformed, revoked or expired."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        return self.lookup_hash(hash_token(token))

    def lookup_hash(self, token_hash: str) -> Principal | None:
        """As :meth:`lookup`, by the token's hash (what a WebSocket connection remembers)."""
        key = TOKEN_KEY_PREFIX + token_hash
        now = now_ms()
        if self._cache_seconds > 0:
            with self._lock:
                cached = self._cache.get(key)
            if cached and cached[0] > time.monotonic() and (cached[2] is None or cached[2] > now):
                return cached[1]
        response = self._db.get_item(
            TableName=self._table, Key={"pk": {"S": key}}, ConsistentRead=True,
            ProjectionExpression="#u, product, #s, sessionId, tokenId, expiresAtMs, revoked, lastUsedMs",
            ExpressionAttributeNames={"#u": "user", "#s": "scope"},
        )
        raw = response.get("Item")
        if not raw or "user" not in raw:
            return None
        item = deserialize(raw)
        expires = int(item["expiresAtMs"]) if item.get("expiresAtMs") is not None else None
        if item.get("revoked") or (expires is not None and expires <= now):
            return None
        try:
            scope = Scope(str(item.get("scope") or Scope.USER.value))
        except ValueError:
            return None
        if scope is Scope.VIEWER and not item.get("sessionId"):
            return None
        principal = Principal(
            user=str(item["user"]), product=str(item.get("product") or DEFAULT_PRODUCT), scope=scope,
            session_id=str(item["sessionId"]) if scope is Scope.VIEWER else None,
            token_id=str(item.get("tokenId") or token_id_of_hash(token_hash)),
        )
        self._touch(key, item.get("lastUsedMs"), now)
        if self._cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (time.monotonic() + self._cache_seconds, principal, expires)
        return principal

    def _touch(self, key: str, last_used_ms: Any, now: int) -> None:
        """``lastUsedAt``, at most once a minute per token: a conditional write that loses races silently."""
        if last_used_ms is not None and int(last_used_ms) > now - LAST_USED_RESOLUTION_MS:
            return
        try:
            self._db.update_item(
                TableName=self._table, Key={"pk": {"S": key}},
                UpdateExpression="SET lastUsedAt = :at, lastUsedMs = :now",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(lastUsedMs) OR lastUsedMs < :cut)",
                ExpressionAttributeValues={":at": {"S": iso_ms(now)}, ":now": {"N": str(now)},
                                           ":cut": {"N": str(now - LAST_USED_RESOLUTION_MS)}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                # Bookkeeping only: a failed write must not refuse a valid token.
                logger.warning("could not record the last use of a token: %s", error_code(exc))

    def authorize(self, headers: Mapping[str, Any] | None) -> dict[str, str] | None:
        """The authorizer context for a request's headers, or None (→ 401)."""
        token = bearer_token(headers)
        if token is None:
            return None
        principal = self.lookup(token)
        return principal.context() if principal else None

    # ------------------------------------------------------------------ listing and revoking
    def list_for_user(self, user: str) -> list[TokenInfo]:
        """Every stored token of ``user`` (user and viewer tokens, live or not), oldest first."""
        items = query_all(
            self._db, TableName=self._table, IndexName=TOKENS_BY_USER_INDEX,
            KeyConditionExpression="#u = :u", ExpressionAttributeNames={"#u": "user"},
            ExpressionAttributeValues={":u": {"S": user}},
        )
        return [TokenInfo.from_item(item) for item in items if str(item.get("pk", "")).startswith(TOKEN_KEY_PREFIX)]

    def get_info(self, token_hash: str) -> TokenInfo | None:
        response = self._db.get_item(TableName=self._table, Key={"pk": {"S": TOKEN_KEY_PREFIX + token_hash}},
                                     ConsistentRead=True)
        raw = response.get("Item")
        return TokenInfo.from_item(deserialize(raw)) if raw else None

    def resolve(self, reference: str, user: str | None = None) -> str:
        """The full hash of a token named by its secret (``emo_…``), its id or a unique id prefix (at least
        6 hex digits). Raises :class:`TokenNotFound` / :class:`AmbiguousTokenId`."""
        ref = reference.strip()
        if ref.startswith(TOKEN_PREFIX):
            token_hash = hash_token(ref)
            if self.get_info(token_hash) is None:
                raise TokenNotFound("no such token")
            return token_hash
        if not _TOKEN_ID_RE.match(ref):
            raise TokenNotFound(
                f"{ref!r} is neither a token (emo_…) nor a token id (6-16 lowercase hex digits, see token list)"
            )
        if user is not None:
            keys = [str(item["pk"]) for item in query_all(
                self._db, TableName=self._table, IndexName=TOKENS_BY_USER_INDEX,
                KeyConditionExpression="#u = :u", FilterExpression="begins_with(pk, :p)",
                ExpressionAttributeNames={"#u": "user"},
                ExpressionAttributeValues={":u": {"S": user}, ":p": {"S": TOKEN_KEY_PREFIX + ref}},
            )]
        else:  # an operator command: one filtered scan of the control table
            keys = []
            kwargs: dict[str, Any] = {
                "TableName": self._table, "FilterExpression": "begins_with(pk, :p)",
                "ExpressionAttributeValues": {":p": {"S": TOKEN_KEY_PREFIX + ref}}, "ProjectionExpression": "pk",
            }
            while True:
                page = self._db.scan(**kwargs)
                keys += [item["pk"]["S"] for item in page.get("Items", [])]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if not keys:
            raise TokenNotFound(f"no token with id {ref}")
        if len(keys) > 1:
            raise AmbiguousTokenId(f"{len(keys)} tokens have ids starting with {ref}; give more digits")
        return keys[0][len(TOKEN_KEY_PREFIX):]

    def revoke_hash(self, token_hash: str, now: int | None = None) -> bool:
        """Mark a token revoked (kept, listable, until its TTL). True if it was live until now."""
        key = TOKEN_KEY_PREFIX + token_hash
        at = now_ms() if now is None else now
        with self._lock:
            self._cache.pop(key, None)
        try:
            self._db.update_item(
                TableName=self._table, Key={"pk": {"S": key}},
                UpdateExpression="SET revoked = :t, revokedAt = :at, #ttl = :ttl",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(revoked) OR revoked = :f)",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}, ":at": {"S": iso_ms(at)},
                                           ":ttl": {"N": str(_ttl_after(at))}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def revoke(self, token: str) -> bool:
        """Revoke a token given its secret. True if it was live until now."""
        return self.revoke_hash(hash_token(token))


# ------------------------------------------------------------------ the authorizer function's composition root
def build_authorizer_store(settings: Settings) -> TokenStore:
    """The authorizer's token store. It keeps **no** in-process cache: API Gateway caches its decisions for
    the authorizer cache TTL, and a second cache here would add to that delay (a revoked or expired token must
    be refused within the TTL)."""
    from . import aws

    return TokenStore(aws.client("dynamodb"), settings.require("control_table"))


authorizer_runtime: CompositionRoot[TokenStore] = CompositionRoot(
    "authorizer", lambda: build_authorizer_store(Settings.from_env())
)


def create_token(
    client: Any, control_table: str, user: str, product: str = DEFAULT_PRODUCT, *,
    expires_ms: int | None = None, name: str | None = None,
) -> str:
    """Mint a token for ``user`` (operator function; ``emotionctl token create`` calls it). Returns the token,
    which is shown once and never stored."""
    return TokenStore(client, control_table).create(user, product, expires_ms=expires_ms, name=name)


def lookup(token: str) -> Principal | None:
    return authorizer_runtime.get().lookup(token)


def authorize(headers: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The authorizer context for a request bearing a valid token, else None."""
    return authorizer_runtime.get().authorize(headers)


def policy(context: Mapping[str, str], method_arn: str) -> dict[str, Any]:
    """The authorizer's answer (Powertools' ``APIGatewayAuthorizerResponse``): allow every route of the request's
    API stage (``…:api/stage/*/*``), so one cached decision covers them all — what a token may do there is the REST
    handler's decision, from the context's scope. A malformed ``method_arn`` raises ``ValueError``."""
    try:
        arn = parse_api_gateway_arn(method_arn)
    except (IndexError, ValueError):
        raise ValueError(f"not an API Gateway method ARN: {method_arn!r}") from None
    response = APIGatewayAuthorizerResponse(
        principal_id=context["user"],
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context=dict(context),
    )
    response.allow_all_routes()
    return response.asdict()


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """REQUEST-type Lambda authorizer. Unknown, revoked, expired or missing token →
    ``Exception("Unauthorized")`` (API Gateway answers 401)."""
    principal = authorize(event.get("headers"))
    if principal is None:
        logger.info("rejected request without a valid bearer token")
        raise Exception("Unauthorized")  # the exact message API Gateway maps to 401
    return policy(principal, str(event.get("methodArn", "")))
