"""Every example in docs/openapi.yaml is valid against its own schema (formats checked), and the document is a
valid OpenAPI 3.1 document. tests/stack/test_fuzz.py sends the same examples to the real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_document
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
BASE = "urn:emotion-stream:openapi"
REGISTRY: Registry = Registry().with_resource(BASE, Resource.from_contents(DOC, default_specification=DRAFT202012))


def _pointer(parts: list[str]) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def examples(node: Any = DOC, where: list[str] | None = None) -> Iterator[tuple[str, Any, str]]:
    """``(location, example, JSON pointer of its schema)`` for every ``example``/``examples`` in the document:
    a media type's, parameter's or header's example belongs to its sibling ``schema``; a schema's to itself."""
    where = where or []
    if isinstance(node, dict):
        is_schema = "schema" not in node and any(k in node for k in ("type", "properties", "anyOf", "$ref", "enum"))
        schema_at = [*where, "schema"] if "schema" in node else where
        if "example" in node and ("schema" in node or is_schema):
            yield _pointer(where), node["example"], _pointer(schema_at)
        for name, value in (node.get("examples") or {}).items() if isinstance(node.get("examples"), dict) else ():
            yield f"{_pointer(where)}/examples/{name}", value["value"], _pointer(schema_at)
        for key, value in node.items():
            if key not in ("example", "examples"):
                yield from examples(value, [*where, str(key)])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from examples(value, [*where, str(index)])


def _validator(schema_pointer: str) -> OAS31Validator:
    return OAS31Validator(
        {"$ref": f"{BASE}#{schema_pointer}"}, registry=REGISTRY, format_checker=OAS31Validator.FORMAT_CHECKER
    )


ALL = list(examples())


def test_the_document_is_valid_openapi() -> None:
    validate_document(DOC)


def test_the_document_has_examples_and_formats_are_checked() -> None:
    locations = {location for location, _, _ in ALL}
    assert "/paths/~1v1~1sessions/post/requestBody/content/application~1json" in locations
    assert any(location.startswith("/paths/~1v1~1sessions/get/parameters") for location in locations)
    assert len(ALL) >= 10
    # The checker really checks formats (a vacuous pass would prove nothing).
    date_or_time = _validator("/components/schemas/DateOrDateTime")
    for wrong in ("yesterday", "2024-04-01T10:30", "2024-02-30", "2024-04-01 10:30:00Z"):
        with pytest.raises(ValidationError):
            date_or_time.validate(wrong)
    for right in ("2024-04-01", "2024-04-01T10:30:00Z", "2024-04-01t10:30:00.5+02:00"):
        date_or_time.validate(right)


@pytest.mark.parametrize(("location", "example", "schema"), ALL, ids=[location for location, _, _ in ALL])
def test_every_example_is_valid_against_its_schema(location: str, example: Any, schema: str) -> None:
    _validator(schema).validate(example)


def test_the_create_example_passes_the_servers_own_validation() -> None:
    """The request body example, through the API's model and the stream-host rule of the documented server (the
    local stack, which allows loopback hosts)."""
    from emotion_shared.session_models import CreateSessionRequest
    from emotion_shared.uri import check_stream_host

    body = DOC["paths"]["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]["example"]
    request = CreateSessionRequest.model_validate(body)
    assert check_stream_host(request.streamUri, allow_private=True)
    assert DOC["servers"][0]["url"].startswith("http://127.0.0.1")
