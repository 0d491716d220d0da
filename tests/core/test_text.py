"""backend/core/text.py: what PostgreSQL and UTF-8 cannot store, found, named and replaced."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, ValidationError

from backend.core.text import (
    STORABLE_NON_BLANK_PATTERN,
    STORABLE_PATTERN,
    StoredJson,
    StoredText,
    find_unstorable,
    make_storable,
    make_storable_json,
)

STORABLE = ["", "Ação trabalhista", "emoji \U0001f600", "controle \x01\x1f", "\ufffd \uffff"]
UNSTORABLE = ["a\x00b", "\x00", "a\ud800b", "\udfff", "ok \udc80"]


class Body(BaseModel):
    text: StoredText
    facts: StoredJson = {}


@pytest.mark.parametrize("value", STORABLE)
def test_storable_text_is_accepted_unchanged(value: str) -> None:
    assert Body(text=value, facts={value: [value]}).text == value
    assert make_storable(value) == value
    assert find_unstorable({"k": [value]}) is None


@pytest.mark.parametrize("value", UNSTORABLE)
def test_unstorable_text_is_refused_with_the_character_named(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Body(text=value)
    (error,) = caught.value.errors()
    assert error["type"] == "unstorable_text" and error["loc"] == ("text",)
    assert ("NUL character" if "\x00" in value else "lone surrogate") in error["msg"]
    assert "\ufffd" in make_storable(value) and find_unstorable(make_storable(value)) is None


def test_nested_values_and_keys_are_found_by_path() -> None:
    assert find_unstorable({"a": {"b": [1, "ok", "x\x00"]}}) == (
        "a.b.2",
        "holds a NUL character (\\u0000), which cannot be stored",
    )
    assert find_unstorable({"a": {"k\ud800": 1}})[0] == "a.'k\\ud800'"  # type: ignore[index]
    with pytest.raises(ValidationError, match=r"partes\.0\.nome holds a NUL"):
        Body(text="ok", facts={"partes": [{"nome": "\x00"}]})
    assert make_storable_json({"k\x00": ["\ud800", 1, None]}) == {"k\ufffd": ["\ufffd", 1, None]}


@pytest.mark.parametrize("value", STORABLE + UNSTORABLE + [" \n\t "])
def test_the_openapi_patterns_agree_with_the_check(value: str) -> None:
    # The patterns refuse NUL; lone surrogates only the check does (see STORABLE_PATTERN).
    storable = "\x00" not in value
    has_surrogate = any("\ud800" <= c <= "\udfff" for c in value)
    assert (find_unstorable(value) is None) == (storable and not has_surrogate)
    assert bool(re.match(STORABLE_PATTERN, value)) == storable
    assert bool(re.match(STORABLE_NON_BLANK_PATTERN, value)) == (storable and bool(value.strip()))


def test_every_character_the_server_trims_is_blank_in_the_pattern() -> None:
    blank = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    assert not [c for c in blank if re.match(STORABLE_NON_BLANK_PATTERN, c)]
