from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from backend.core.config import Settings
from tests.conftest import client_for, make_settings
from tests.redis_cluster import free_port


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(settings):
        yield c


async def test_live_ready_and_redis(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"
    redis = (await client.get("/health/redis")).json()
    assert redis["status"] == "ok" and redis["redis_version"] and redis["connected_clients"] >= 1


async def test_ready_is_503_with_a_clear_error_when_redis_is_down() -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_retries=0)
    async for client in client_for(settings):
        live = await client.get("/health/live")
        assert live.status_code == 200
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "store_unavailable"
        assert ready.headers["retry-after"] == "1"
