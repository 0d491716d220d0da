"""scripts/ensure_services.sh (the set-up step of `make run` and `make test`), run for real
against this machine's Redis and PostgreSQL, from a directory without a `.env` (a fresh clone
has none)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ensure_services.sh"


def _run(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_BROKER")}
    return subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_a_dotenv_the_services_check_passes(tmp_path: Path) -> None:
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "redis and postgresql are up" in done.stderr


def test_a_sentinel_broker_nobody_names_stops_with_a_reason(tmp_path: Path) -> None:
    # Port 9 (discard): nothing answers as a sentinel there.
    done = _run(tmp_path, CELERY_BROKER_URL="sentinel://127.0.0.1:9")
    assert done.returncode == 1
    assert "no sentinel names a master 'mymaster'" in done.stderr
