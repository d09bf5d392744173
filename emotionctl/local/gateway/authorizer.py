"""Lambda REQUEST authorizers as API Gateway runs them: identity sources, result cache, policy evaluation.

- The identity sources (headers / query strings named in the template's ``Identity``) must all be present,
  else 401 without calling the function.
- The decision (principal, policy, context) is cached per authorizer and identity-source values for
  ``ReauthorizeEvery`` seconds; the cached *policy* is evaluated against each request's method ARN, so an
  authorizer that only allows the first route it saw breaks here exactly as it would in AWS.
- The function raising ``Exception("Unauthorized")`` → 401; any other error → 500 (AUTHORIZER_FAILURE); a
  malformed result → 500 (AUTHORIZER_CONFIGURATION_ERROR); an explicit or implicit deny → ACCESS_DENIED.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AuthorizerSpec:
    name: str
    function: str  # logical id of the authorizer function
    headers: tuple[str, ...]
    query_strings: tuple[str, ...]
    ttl_seconds: int

    @classmethod
    def from_api(
        cls, api_properties: Mapping[str, Any], resolve: Callable[[Any], Any]
    ) -> dict[str, AuthorizerSpec]:
        specs = {}
        for name, spec in ((api_properties.get("Auth") or {}).get("Authorizers") or {}).items():
            if spec.get("FunctionPayloadType", "TOKEN") != "REQUEST":
                raise ValueError(f"authorizer {name}: the local gateway runs REQUEST authorizers only")
            arn = spec.get("FunctionArn")
            if not (isinstance(arn, dict) and "Fn::GetAtt" in arn):
                raise ValueError(f"authorizer {name}: FunctionArn must be !GetAtt <Function>.Arn")
            target = arn["Fn::GetAtt"]
            function = target[0] if isinstance(target, list) else str(target).split(".", 1)[0]
            identity = spec.get("Identity") or {}
            specs[name] = cls(
                name=name,
                function=str(function),
                headers=tuple(identity.get("Headers") or ()),
                query_strings=tuple(identity.get("QueryStrings") or ()),
                ttl_seconds=int(resolve(identity.get("ReauthorizeEvery", 300))),
            )
        return specs

    def identity(self, headers: Mapping[str, str], query: Mapping[str, str]) -> tuple[str, ...] | None:
        """The identity-source values (the cache key), or None when one is missing/empty (→ 401)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        values = [lowered.get(h.lower(), "") for h in self.headers] + [query.get(q, "") for q in self.query_strings]
        if not values or any(not v for v in values):
            return None
        return tuple(values)


class AuthorizerRejected(Exception):
    """The request is not authorized. ``kind`` is the gateway response type to answer with."""

    def __init__(self, kind: str, message: str | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Decision:
    principal_id: str
    policy: Mapping[str, Any]
    context: dict[str, Any]

    def authorizer_context(self, latency_ms: int) -> dict[str, Any]:
        """``requestContext.authorizer`` as a REST proxy integration sees it: context values as strings."""
        out: dict[str, Any] = {k: _stringify(v) for k, v in self.context.items()}
        out["principalId"] = self.principal_id
        out["integrationLatency"] = latency_ms
        return out


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_result(result: Any) -> Decision:
    """Validate an authorizer function's result as API Gateway does."""
    if not isinstance(result, Mapping):
        raise AuthorizerRejected("AUTHORIZER_CONFIGURATION_ERROR", "authorizer result is not an object")
    principal = result.get("principalId")
    policy = result.get("policyDocument")
    if not isinstance(principal, str) or not principal:
        raise AuthorizerRejected("AUTHORIZER_CONFIGURATION_ERROR", "authorizer result has no principalId")
    if not isinstance(policy, Mapping) or not policy.get("Statement"):
        raise AuthorizerRejected("AUTHORIZER_CONFIGURATION_ERROR", "authorizer result has no policyDocument")
    context = result.get("context") or {}
    if not isinstance(context, Mapping) or any(
        not isinstance(v, str | int | float | bool) or v is None for v in context.values()
    ):
        raise AuthorizerRejected(
            "AUTHORIZER_CONFIGURATION_ERROR", "authorizer context values must be strings, numbers or booleans"
        )
    return Decision(principal_id=principal, policy=policy, context=dict(context))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def policy_allows(policy: Mapping[str, Any], method_arn: str) -> bool:
    """IAM-style evaluation of an ``execute-api:Invoke`` policy for one method ARN (explicit deny wins)."""
    allowed = False
    for statement in _as_list(policy.get("Statement")):
        if not isinstance(statement, Mapping):
            continue
        actions = [str(a).lower() for a in _as_list(statement.get("Action"))]
        if not any(_matches(a, "execute-api:invoke") for a in actions):
            continue
        if not any(_matches(str(r), method_arn) for r in _as_list(statement.get("Resource"))):
            continue
        effect = str(statement.get("Effect", "")).lower()
        if effect == "deny":
            return False
        if effect == "allow":
            allowed = True
    return allowed


@dataclass
class AuthorizerCache:
    """Decisions per (authorizer, identity values), like API Gateway's authorizer result cache."""

    clock: Callable[[], float] = time.monotonic
    _entries: dict[tuple[str, tuple[str, ...]], tuple[float, Decision]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str, identity: tuple[str, ...]) -> Decision | None:
        with self._lock:
            entry = self._entries.get((name, identity))
            if entry is None:
                return None
            if entry[0] <= self.clock():
                del self._entries[(name, identity)]
                return None
            return entry[1]

    def put(self, name: str, identity: tuple[str, ...], decision: Decision, ttl_seconds: int) -> None:
        if ttl_seconds <= 0:
            return
        with self._lock:
            if len(self._entries) > 10_000:
                now = self.clock()
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            self._entries[(name, identity)] = (self.clock() + ttl_seconds, decision)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
