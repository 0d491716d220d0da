"""`triage serve`: a real uvicorn process."""

from __future__ import annotations

import httpx
import pytest

from backend.core.config import Settings
from tests.cli.helpers import serving, triage
from tests.redis_cluster import free_port

pytestmark = pytest.mark.e2e


def test_serves_the_api_with_several_workers(ops_settings: Settings) -> None:
    with serving(ops_settings, "--workers", "2") as url:
        ready = httpx.get(f"{url}/health/ready", timeout=5)
        assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"
        # Every request is answered, whichever worker process takes it.
        assert all(httpx.get(f"{url}/health/live", timeout=5).status_code == 200 for _ in range(6))


def test_bad_settings_refuse_to_start(ops_settings: Settings) -> None:
    result = triage(
        "serve",
        "--port",
        str(free_port()),
        settings=ops_settings,
        ENVIRONMENT="production",
        JWT_SECRET="change-me",
    )
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr
