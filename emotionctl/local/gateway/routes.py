"""The REST route table, derived from the functions' ``Type: Api`` events in template.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

ANY = "ANY"


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or "ANY"
    resource: str  # the path template, e.g. /v1/sessions/{id}/stop
    function: str  # logical id of the function
    authorizer: str | None  # authorizer name, None for an open route
    event: str  # the event's name in the template

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.resource.split("/") if s)

    def specificity(self) -> tuple[int, ...]:
        """API Gateway prefers literal segments over {param} over {greedy+}, left to right."""
        ranks = []
        for segment in self.segments:
            if segment.endswith("+}"):
                ranks.append(0)
            elif segment.startswith("{"):
                ranks.append(1)
            else:
                ranks.append(2)
        return (*ranks, 3 if self.method != ANY else 0)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """Path parameters if ``segments`` (raw, still percent-encoded) match this route, else None."""
        params: dict[str, str] = {}
        pattern = self.segments
        for index, part in enumerate(pattern):
            if part.startswith("{") and part.endswith("+}"):
                rest = segments[index:]
                if not rest:
                    return None
                params[part[1:-2]] = unquote("/".join(rest))
                return params
            if index >= len(segments):
                return None
            if part.startswith("{") and part.endswith("}"):
                if not segments[index]:
                    return None
                params[part[1:-1]] = unquote(segments[index])
            elif unquote(segments[index]) != part:
                return None
        return params if len(segments) == len(pattern) else None


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


class RouteTable:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: r.specificity(), reverse=True)

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        segments = [s for s in raw_path.split("?", 1)[0].split("/") if s]
        method = method.upper()
        for route in self.routes:
            if route.method not in (method, ANY):
                continue
            params = route.match(segments)
            if params is not None:
                return RouteMatch(route, params)
        return None

    def resources(self) -> set[str]:
        return {r.resource for r in self.routes}

    @classmethod
    def from_template(cls, template: dict[str, Any], api_logical_id: str | None = None) -> RouteTable:
        """Every ``Type: Api`` event of every function (of the given ``RestApiId``, when set)."""
        apis = {k: v for k, v in template.get("Resources", {}).items() if v.get("Type") == "AWS::Serverless::Api"}
        routes: list[Route] = []
        for logical, resource in template.get("Resources", {}).items():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            for event_name, event in (resource.get("Properties", {}).get("Events") or {}).items():
                if event.get("Type") != "Api":
                    continue
                props = event.get("Properties", {})
                api_ref = props.get("RestApiId", {})
                api_id = api_ref.get("Ref") if isinstance(api_ref, dict) else None
                if api_logical_id is not None and api_id != api_logical_id:
                    continue
                default_auth = None
                if api_id in apis:
                    default_auth = apis[api_id].get("Properties", {}).get("Auth", {}).get("DefaultAuthorizer")
                authorizer = props.get("Auth", {}).get("Authorizer", default_auth)
                routes.append(
                    Route(
                        method=str(props["Method"]).upper(),
                        resource=str(props["Path"]),
                        function=logical,
                        authorizer=None if authorizer in (None, "NONE", "AWS_IAM") else str(authorizer),
                        event=event_name,
                    )
                )
        return cls(routes)
