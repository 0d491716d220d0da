"""Dockerfile and .dockerignore, read (Docker does not run here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.main import get_command

from backend.cli import app

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_base_image_and_unprivileged_user() -> None:
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    created = " ".join(rest for word, rest in steps if word == "RUN")
    assert "useradd" in created and users[-1] in created
    # The user is switched to after every install step.
    last_run = max(i for i, (word, _) in enumerate(steps) if word == "RUN")
    assert [i for i, (word, _) in enumerate(steps) if word == "USER"][-1] > last_run


def test_installs_the_project_and_serves_the_api_by_default() -> None:
    steps = instructions()
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "pip install" in runs and re.search(r"pip install (--no-deps )?\.", runs)
    for word, rest in steps:
        if word == "COPY":
            *sources, _dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), source
    (cmd,) = [json.loads(rest) for word, rest in steps if word == "CMD"]
    assert cmd[:2] == ["triage", "serve"]
    serve = get_command(app).commands["serve"]  # type: ignore[attr-defined]
    options = {opt for p in serve.params for opt in p.opts}
    assert all(arg in options for arg in cmd[2:] if arg.startswith("--"))
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", "tests"} <= ignored
    assert "!.env.example" in ignored
