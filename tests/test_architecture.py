"""The package picture of ARCHITECTURE.md holds: which package may import which.

The contracts live in pyproject.toml (`[tool.importlinter]`) and `make lint` runs them too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first, so a copy of the tree is what gets analysed, not the installed one.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_import_goes_the_allowed_direction() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_against_the_direction_is_caught(tmp_path: Path) -> None:
    for name in ("backend", "workers"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # Plumbing reaching up into a domain, and the state package into the reply runtime.
    with (tmp_path / "backend/core/text.py").open("a") as f:
        f.write("\nfrom backend.conversations import service as _service  # noqa\n")
    with (tmp_path / "backend/state/owed.py").open("a") as f:
        f.write("\nfrom backend.replies import bookkeeping as _bookkeeping  # noqa\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "backend.core.text -> backend.conversations.service" in result.stdout
    assert "backend.state.owed -> backend.replies.bookkeeping" in result.stdout


def test_only_the_state_and_streaming_packages_reach_the_redis_client() -> None:
    """Session state in Redis has one owner: others call its methods, never `.redis.client`."""
    raw_client = re.compile(r"\.redis\.client\b")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for base in ("backend", "workers")
        for path in sorted((ROOT / base).rglob("*.py"))
        if path.parent.relative_to(ROOT).parts[:2]
        not in {("backend", "state"), ("backend", "streaming")}
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if raw_client.search(line)
    ]
    assert offenders == []
