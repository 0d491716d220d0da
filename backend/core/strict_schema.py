"""A pydantic model's JSON schema in the subset OpenAI's strict structured outputs accept.

`response_format: {"type": "json_schema", "json_schema": {..., "strict": true}}` makes the
provider constrain decoding to the schema, but only for a subset of JSON Schema: every object
lists all its properties in `required` (an optional field is a required, nullable one) and
sets `additionalProperties: false`; keywords outside the subset (`default`, `minLength`,
`maxLength`, `pattern`, `format`, ...) are refused with a 400 by some providers and ignored by
others. So the schema sent keeps only the keywords every strict implementation accepts, with
the references inlined; the answer is then validated by the pydantic model itself, which
still enforces everything that was left out (lengths, storable text, custom validators).

A model the subset cannot express (a free-form dict, a recursive model) raises
`UnsupportedSchema` when the schema is built, at start-up, not at the first request.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# Kept as they are; everything else is dropped (pydantic enforces it on the answer).
_KEPT = frozenset({"type", "description", "enum", "const"})


class UnsupportedSchema(ValueError):
    """The model has a construct that strict structured outputs cannot express."""


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model.model_json_schema()` adapted to strict structured outputs (see module doc)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    return _strict(schema, definitions, path=model.__name__, seen=())


def _strict(
    node: dict[str, Any], definitions: dict[str, Any], *, path: str, seen: tuple[str, ...]
) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            raise UnsupportedSchema(f"{path}: recursive model {name} (inline it or flatten it)")
        # A reference with siblings (a field's own description) keeps them over the target's.
        target = {**definitions[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _strict(target, definitions, path=path, seen=(*seen, name))
    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEPT}
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in node:
            if combinator != "anyOf":
                raise UnsupportedSchema(f"{path}: {combinator} is not supported, use a union")
            out["anyOf"] = [
                _strict(option, definitions, path=f"{path}|{i}", seen=seen)
                for i, option in enumerate(node["anyOf"])
            ]
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        properties = node.get("properties") or {}
        extra = node.get("additionalProperties", False)
        if not properties or extra not in (False, None):
            raise UnsupportedSchema(
                f"{path}: an object needs fixed properties (no free-form dict) for strict mode"
            )
        out["type"] = "object"
        out["properties"] = {
            name: _strict(sub, definitions, path=f"{path}.{name}", seen=seen)
            for name, sub in properties.items()
        }
        out["required"] = list(properties)
        out["additionalProperties"] = False
    elif kind == "array":
        items = node.get("items")
        if not isinstance(items, dict):
            raise UnsupportedSchema(f"{path}: an array needs one `items` schema (no tuples)")
        out["items"] = _strict(items, definitions, path=f"{path}[]", seen=seen)
    elif "type" not in out and "anyOf" not in out and "enum" not in out and "const" not in out:
        raise UnsupportedSchema(f"{path}: a value of any type (Any) is not supported")
    return out
