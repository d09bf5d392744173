"""Opaque bearer tokens and the REST API's Lambda authorizer.

A token is ``emo_<43 url-safe random characters>`` (256 bits). Only its SHA-256 is stored, in the control
table under ``token#<sha256 hex>`` → ``{user, product, createdAt}``: a leaked table does not leak tokens.

The deployed API checks tokens in a REQUEST-type Lambda authorizer (:func:`handler`) whose policy allows the
whole API, so API Gateway may cache the decision per token. The local gateway calls :func:`authorize` with
the request headers and puts the returned context into ``requestContext.authorizer``.
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
from typing import Any

from botocore.exceptions import ClientError

from .clock import iso_ms, now_ms
from .config import DEFAULT_PRODUCT
from .dynamo import error_code

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "emo_"  # noqa: S105 - a prefix, not a secret
TOKEN_KEY_PREFIX = "token#"  # noqa: S105 - a key prefix, not a secret
MAX_TOKEN_LENGTH = 256
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the token's user and product (analysis tier)."""

    user: str
    product: str

    def context(self) -> dict[str, str]:
        """The authorizer context API Gateway passes to the handler (``requestContext.authorizer``)."""
        return {"user": self.user, "product": self.product}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_key(token: str) -> str:
    return TOKEN_KEY_PREFIX + hash_token(token)


def validate_name(kind: str, value: str) -> str:
    """User and product ids: 1–128 characters, letters, digits and ``._@+-`` (they end up in table keys)."""
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{kind} must be 1-128 characters of letters, digits and . _ @ + -, starting with a letter or digit"
        )
    return value


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


class TokenStore:
    """Tokens in the control table. ``cache_seconds`` keeps positive lookups in memory (revocation then takes
    effect within that delay, plus API Gateway's own authorizer cache TTL)."""

    def __init__(self, client: Any, control_table: str, *, cache_seconds: float = 0.0) -> None:
        self._db = client
        self._table = control_table
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def create(self, user: str, product: str = DEFAULT_PRODUCT) -> str:
        validate_name("user", user)
        validate_name("product", product)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._db.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": token_key(token)},
                "user": {"S": user},
                "product": {"S": product},
                "createdAt": {"S": iso_ms(now_ms())},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
        return token

    def lookup(self, token: str) -> Principal | None:
        """The principal of a token, or None when it is unknown (or malformed)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        key = token_key(token)
        if self._cache_seconds > 0:
            with self._lock:
                cached = self._cache.get(key)
            if cached and cached[0] > time.monotonic():
                return cached[1]
        response = self._db.get_item(
            TableName=self._table, Key={"pk": {"S": key}}, ProjectionExpression="#u, product",
            ExpressionAttributeNames={"#u": "user"},
        )
        item = response.get("Item")
        if not item or "user" not in item:
            return None
        principal = Principal(user=item["user"]["S"], product=item.get("product", {}).get("S", DEFAULT_PRODUCT))
        if self._cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (time.monotonic() + self._cache_seconds, principal)
        return principal

    def revoke(self, token: str) -> bool:
        """Delete a token. True if it existed."""
        key = token_key(token)
        with self._lock:
            self._cache.pop(key, None)
        try:
            self._db.delete_item(
                TableName=self._table, Key={"pk": {"S": key}}, ConditionExpression="attribute_exists(pk)"
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def authorize(self, headers: Mapping[str, Any] | None) -> dict[str, str] | None:
        """The authorizer context for a request's headers, or None (→ 401)."""
        token = bearer_token(headers)
        if token is None:
            return None
        principal = self.lookup(token)
        return principal.context() if principal else None


# ------------------------------------------------------------------ process-wide defaults
# Positive lookups are cached this long in the process (the authorizer Lambda and the local gateway).
CACHE_SECONDS = 30.0
_default: TokenStore | None = None
_default_lock = threading.Lock()


def default_store() -> TokenStore:
    """The token store of this process (settings and client from the environment, built once)."""
    global _default
    with _default_lock:
        if _default is None:
            from . import aws
            from .config import get_settings

            table = get_settings().require("control_table")
            _default = TokenStore(aws.client("dynamodb"), table, cache_seconds=CACHE_SECONDS)
        return _default


def reset_default_store() -> None:
    """Forget the process-wide store (tests that change tables)."""
    global _default
    with _default_lock:
        _default = None


def create_token(client: Any, control_table: str, user: str, product: str = DEFAULT_PRODUCT) -> str:
    """Mint a token for ``user`` (operator function; ``emotionctl token create`` calls it). Returns the token,
    which is shown once and never stored."""
    return TokenStore(client, control_table).create(user, product)


def revoke_token(client: Any, control_table: str, token: str) -> bool:
    return TokenStore(client, control_table).revoke(token)


def lookup(token: str) -> Principal | None:
    return default_store().lookup(token)


def authorize(headers: Mapping[str, Any] | None) -> dict[str, str] | None:
    """``{"user", "product"}`` for a request bearing a valid token, else None. What the local gateway calls."""
    return default_store().authorize(headers)


def api_wide_resource(method_arn: str) -> str:
    """``arn:aws:execute-api:region:account:api/stage/GET/v1/sessions`` → ``…:api/stage/*``: one cached
    authorizer decision then covers every route of the stage."""
    parts = method_arn.split("/")
    if len(parts) < 3 or not parts[0].startswith("arn:"):
        return method_arn
    return f"{parts[0]}/{parts[1]}/*"


def policy(context: Mapping[str, str], method_arn: str) -> dict[str, Any]:
    return {
        "principalId": context["user"],
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": api_wide_resource(method_arn)}
            ],
        },
        "context": dict(context),
    }


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """REQUEST-type Lambda authorizer. Unknown or missing token → ``Exception("Unauthorized")`` (API Gateway
    answers 401)."""
    principal = authorize(event.get("headers"))
    if principal is None:
        logger.info("rejected request without a valid bearer token")
        raise Exception("Unauthorized")  # the exact message API Gateway maps to 401
    return policy(principal, str(event.get("methodArn", "")))
