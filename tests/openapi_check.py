"""A small JSON Schema (2020-12, as OpenAPI 3.1 uses it) checker for the tests: the subset
our document uses. jsonschema is not a dependency; this is enough to hold real answers and
the document's own examples against the document."""

from __future__ import annotations

import re
from typing import Any

TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        *_, name = schema["$ref"].split("/")
        schema = {**document["components"]["schemas"][name], **_without_ref(schema)}
    return schema


def _without_ref(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "$ref"}


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, TYPES[kind])


def errors(
    document: dict[str, Any], schema: dict[str, Any], value: Any, at: str = "$"
) -> list[str]:
    """Why `value` does not match `schema` (empty: it does)."""
    schema = resolve(document, schema)
    found: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is(value, k) for k in kinds):
            return [f"{at}: {value!r} is not of type {kind}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{at}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: {value!r} is not one of {schema['enum']}")
    if "not" in schema and not errors(document, schema["not"], value, at):
        found.append(f"{at}: {value!r} matches what it must not")
    for sub in schema.get("allOf", []):
        found += errors(document, sub, value, at)
    if "anyOf" in schema and all(errors(document, s, value, at) for s in schema["anyOf"]):
        found.append(f"{at}: matches none of anyOf")
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not errors(document, s, value, at)]
        if len(matching) != 1:
            found.append(f"{at}: matches {len(matching)} of oneOf, not exactly one")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{at}: {name!r} is required")
        extra = schema.get("additionalProperties", True)
        for name, member in value.items():
            if name in properties:
                found += errors(document, properties[name], member, f"{at}.{name}")
            elif extra is False:
                found.append(f"{at}: {name!r} is not allowed")
            elif isinstance(extra, dict):
                found += errors(document, extra, member, f"{at}.{name}")
    if isinstance(value, list):
        if "items" in schema:
            for i, item in enumerate(value):
                found += errors(document, schema["items"], item, f"{at}[{i}]")
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1e9):
            found.append(f"{at}: {len(value)} items")
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 1e9):
            found.append(f"{at}: length {len(value)}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if _is(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{at}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{at}: {value} > {schema['maximum']}")
    return found


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def response_schema(
    document: dict[str, Any], path: str, method: str, status: int, media_type: str
) -> dict[str, Any]:
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    schema: dict[str, Any] = response["content"][media_type]["schema"]
    return schema
