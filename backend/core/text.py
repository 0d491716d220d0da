"""Text the stores can hold: refused at the boundary, never half-written later.

PostgreSQL's `text` and `jsonb` cannot hold a NUL character (U+0000: "unsupported Unicode
escape sequence"), and nothing encoded as UTF-8 can hold a lone surrogate (U+D800-U+DFFF,
which JSON's `\\uD800` escape and Python's `json` happily produce). A message holding either
would be stored in Redis, then refused by every snapshot, or fail to encode at all (a 500).
So every text a client or the legacy migration dump sends is checked here first:

* `StoredText`, an `Annotated[str, ...]` for pydantic fields: refused with a validation error
  (type `unstorable_text`, a message naming the character and where it is).
* `StoredJson`, for free-form JSON objects (metadata, collected facts, extra fields): every
  string inside, keys included, is checked; the error names the nested path.
* `find_unstorable(value)` for code that is not a pydantic model, and `make_storable(text)`
  for text relayed rather than refused (an LLM provider's reply: U+FFFD in their place).

Paired surrogates never reach Python as two code points (JSON decoders join them), so any
surrogate in a `str` is a lone one.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, GetJsonSchemaHandler, StrictStr
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

ERROR_TYPE = "unstorable_text"


def unstorable_char(value: str) -> str | None:
    """Why `value` cannot be stored (the offending character named), or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "holds a NUL character (\\u0000), which cannot be stored"
    return f"holds a lone surrogate (\\u{ord(char):04x}), which is not valid Unicode text"


def make_storable(value: str) -> str:
    """`value` with every unstorable character replaced by U+FFFD, for text the service does
    not refuse but relays (an LLM provider's reply)."""
    return _UNSTORABLE.sub("\ufffd", value)


def make_storable_json(value: Any) -> Any:
    """A copy of JSON data with `make_storable` applied to every string, keys included."""
    if isinstance(value, str):
        return make_storable(value)
    if isinstance(value, dict):
        return {make_storable(str(k)): make_storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [make_storable_json(v) for v in value]
    return value


def find_unstorable(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first string in JSON data `value` that cannot be stored: (its path, why).

    Keys are checked as well as values; the path reads like `facts.parties.0` (a key's own
    problem is reported at the key's path).
    """
    if isinstance(value, str):
        problem = unstorable_char(value)
        return None if problem is None else (path, problem)
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (problem := unstorable_char(key)) is not None:
                return (f"{path}.{key!r}" if path else repr(key), f"key {problem}")
            found = find_unstorable(item, where)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = find_unstorable(item, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


def _check_text(value: str) -> str:
    problem = unstorable_char(value)
    if problem is not None:
        raise PydanticCustomError(ERROR_TYPE, "text {problem}", {"problem": problem})
    return value


def _check_json(value: Any) -> Any:
    found = find_unstorable(value)
    if found is not None:
        where, problem = found
        raise PydanticCustomError(
            ERROR_TYPE, "{where} {problem}", {"where": where or "value", "problem": problem}
        )
    return value


class _DocumentedStorable:
    """Puts the rule in the OpenAPI schema too (a JSON Schema `pattern`), so a client or a
    schema-driven fuzzer knows these characters are refused; a field's own pattern wins (the
    ones in this API already exclude them)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.setdefault("pattern", STORABLE_PATTERN)
        return schema


# ECMA-262 / Python `re` syntax: anything but NUL. Lone surrogates are refused too, but are
# left out of the patterns: a UTF-8 body cannot carry one (only JSON's `\ud800` escape can),
# and regex engines that validate schemas (Rust's, in schemathesis) reject a surrogate range,
# which made the whole pattern ignored.
STORABLE_PATTERN = r"^[^\u0000]*$"
# The same, with at least one character that is not white space (a JSON Schema has one
# `pattern`: a field that must not be blank uses this one instead). White space as the server
# trims it (Python's str.strip): ECMA's `\s` leaves out U+001C-U+001F and U+0085.
STORABLE_NON_BLANK_PATTERN = r"^[^\u0000]*[^\s\u0000\u001C-\u001F\u0085][^\u0000]*$"

StoredText = Annotated[StrictStr, AfterValidator(_check_text), _DocumentedStorable()]
"""A string (strict: no coercion) that PostgreSQL `text`/`jsonb` and UTF-8 can hold."""

StoredJson = Annotated[dict[str, Any], AfterValidator(_check_json)]
"""A free-form JSON object whose every string (keys included) is storable."""


def check_json(value: Any) -> None:
    """Raise the `unstorable_text` validation error when JSON data holds an unstorable string
    (for model validators over extra fields)."""
    _check_json(value)
