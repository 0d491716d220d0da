""".env.example documents every setting, and every variable docker-compose.yml reads."""

from __future__ import annotations

import re
from pathlib import Path

from backend.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def documented() -> dict[str, str]:
    """NAME -> the comment above `NAME=`; settings on consecutive lines share one comment."""
    out: dict[str, str] = {}
    comment: list[str] = []
    shared = ""
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith("#"):
            comment.append(line.lstrip("# "))
        elif match := re.match(r"^([A-Z][A-Z0-9_]*)=", line):
            shared = " ".join(comment) or shared
            out[match.group(1)] = shared
            comment = []
        else:
            comment, shared = [], ""
    return out


def test_each_variable_is_defined_once() -> None:
    # A second `NAME=` silently wins over the first: whoever edits the first copy changes nothing.
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert not repeated, f"defined more than once in .env.example: {repeated}"


def test_every_setting_is_in_env_example_with_a_comment() -> None:
    docs = documented()
    for name in Settings.model_fields:
        assert name.upper() in docs, f"{name.upper()} is missing from .env.example"
        assert docs[name.upper()].strip(), f"{name.upper()} has no comment in .env.example"


def test_every_compose_variable_is_in_env_example() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    # ${NAME}, ${NAME:-default}, ${NAME:?error}; $$NAME is a container-side variable.
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", compose))
    assert used, "docker-compose.yml reads no variables?"
    missing = used - set(documented())
    assert not missing, f"not in .env.example: {sorted(missing)}"


def test_no_secret_values_in_env_example() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, _, value = line.partition("=")
        if not line.startswith("#") and re.search(r"SECRET|PASSWORD", name):
            assert value == "", f"{name} must be empty in .env.example"
