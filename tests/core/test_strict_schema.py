"""A pydantic model's schema in the subset strict structured outputs accept."""

from __future__ import annotations

from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field, ValidationError

from backend.core.strict_schema import UnsupportedSchema, strict_json_schema
from tests.generators.fake_llm import strict_schema_problem


class Party(BaseModel):
    """Someone in the case."""

    name: str = Field(min_length=1, max_length=80, description="Who.")
    role: Literal["autor", "reu"] = "autor"


class Case(BaseModel):
    label: str = Field(default="sem título", pattern=r"^\S")
    urgency: Literal["baixa", "alta"]
    note: str | None = None
    score: float = Field(ge=0, le=1)
    tags: list[str] = Field(default_factory=list, max_length=3)
    lead: Party = Field(description="The main party.")
    others: list[Party]
    counterpart: Party | None


def test_every_object_is_closed_with_all_properties_required() -> None:
    schema = strict_json_schema(Case)
    assert strict_schema_problem(schema) is None
    assert schema["additionalProperties"] is False
    assert schema["required"] == list(Case.model_fields)
    # Nested models are inlined, closed the same way, wherever they appear.
    lead = schema["properties"]["lead"]
    assert lead["additionalProperties"] is False and lead["required"] == ["name", "role"]
    assert schema["properties"]["others"]["items"]["required"] == ["name", "role"]
    options = schema["properties"]["counterpart"]["anyOf"]
    assert {"type": "null"} in options
    assert any(o.get("properties", {}).keys() == {"name", "role"} for o in options)
    assert "$defs" not in schema and "$ref" not in str(schema)


def test_a_fields_own_description_wins_over_its_models_docstring() -> None:
    schema = strict_json_schema(Case)
    assert schema["properties"]["lead"]["description"] == "The main party."
    assert schema["properties"]["others"]["items"]["description"] == "Someone in the case."


def test_keywords_outside_the_subset_are_dropped_and_pydantic_still_enforces_them() -> None:
    schema = strict_json_schema(Case)
    text = str(schema)
    for keyword in ("default", "minLength", "maxLength", "pattern", "maxItems", "title"):
        assert f"'{keyword}'" not in text, keyword
    assert schema["properties"]["urgency"] == {"enum": ["baixa", "alta"], "type": "string"}
    assert schema["properties"]["note"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    valid: dict[str, Any] = {
        "label": "Despejo",
        "urgency": "alta",
        "note": None,
        "score": 0.5,
        "tags": [],
        "lead": {"name": "Ana", "role": "autor"},
        "others": [],
        "counterpart": None,
    }
    jsonschema.validate(valid, schema)
    Case.model_validate(valid)
    # Fits the schema sent, but not the model: the validation after the call catches it.
    too_long = {**valid, "tags": ["a", "b", "c", "d"], "lead": {"name": "", "role": "autor"}}
    jsonschema.validate(too_long, schema)
    with pytest.raises(ValidationError):
        Case.model_validate(too_long)
    # Missing keys and extra keys are outside the schema itself.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in valid.items() if k != "note"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**valid, "extra": 1}, schema)


class FreeForm(BaseModel):
    facts: dict[str, str]


class Node(BaseModel):
    children: list[Node]


class Loose(BaseModel):
    anything: Any


@pytest.mark.parametrize(
    ("model", "message"),
    [(FreeForm, "free-form dict"), (Node, "recursive"), (Loose, "any type")],
)
def test_what_strict_mode_cannot_express_is_refused_when_the_schema_is_built(
    model: type[BaseModel], message: str
) -> None:
    with pytest.raises(UnsupportedSchema, match=message):
        strict_json_schema(model)
