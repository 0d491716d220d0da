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


async def test_ready_without_postgres_still_serves_and_says_degraded() -> None:
    settings = make_settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/triage"
    )
    async for client in client_for(settings):
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "degraded"
        assert body["checks"] == {"redis": "ok", "postgres": "unavailable"}
        assert "history older than the hot window" in body["unavailable"]


async def test_celery_health_is_a_503_with_the_reason_when_the_broker_is_down() -> None:
    settings = make_settings(celery_broker_url=f"redis://127.0.0.1:{free_port()}/0")
    async for client in client_for(settings):
        response = await client.get("/health/celery")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "broker_unavailable" and error["workers"] == []
        assert error["message"]
