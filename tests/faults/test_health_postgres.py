"""PostgreSQL stopped, then started (a private cluster): chatting goes on, /health/ready says
degraded without leaving rotation, /health/celery says snapshots lag, and once PostgreSQL is
back every acknowledged message lands there exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.config import Settings
from tests.faults.chat import Chat
from tests.faults.conftest import StartCelery, fault_settings
from tests.faults.servers import PostgresCluster
from tests.redis_server import RedisServer


@pytest.fixture
def settings(redis_server: RedisServer, pg_cluster: PostgresCluster, tmp_path: Path) -> Settings:
    return fault_settings(redis_server, tmp_path, database_url=pg_cluster.url)


async def wait_for_celery_health(
    api: httpx.AsyncClient, status: int, guard: float = 45
) -> dict[str, Any]:
    """Poll /health/celery until it answers `status`; `guard` only stops a hang."""
    deadline = time.monotonic() + guard
    while True:
        response = await api.get("/health/celery")
        assert response.status_code in (200, 503), response.text
        if response.status_code == status:
            return dict(response.json())
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.3)


async def test_postgres_outage_degrades_health_and_loses_nothing(
    pg_cluster: PostgresCluster,
    settings: Settings,
    start_celery: StartCelery,
    api: httpx.AsyncClient,
    engine: AsyncEngine,
) -> None:
    worker = start_celery("worker")
    beat = start_celery("beat")
    chat = Chat(api, settings)
    for _ in range(3):
        await chat.start()
    await chat.post_round()
    await chat.wait_for_postgres(engine, watch=[worker, beat])
    ready = await api.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "postgres": "ok"}
    await wait_for_celery_health(api, 200)

    pg_cluster.stop()
    ready = await api.get("/health/ready")
    assert ready.status_code == 200, "a replica without PostgreSQL still serves chats"
    body = ready.json()
    assert body["status"] == "degraded" and body["checks"]["postgres"] == "unavailable"
    assert any("restore" in what for what in body["unavailable"])
    # Sessions in Redis go on: messages are acknowledged and wait there for their snapshot.
    for _ in range(3):
        assert await chat.post_round() == [202] * 3
    lagging = (await wait_for_celery_health(api, 503))["error"]
    assert lagging["code"] == "snapshots_lagging", lagging
    assert lagging["dirty_sessions"] >= 3
    assert lagging["snapshot_lag_seconds"] > lagging["snapshot_lag_limit_seconds"]
    assert worker.alive() and beat.alive()
    await chat.assert_none_stranded()

    pg_cluster.start()
    await chat.wait_for_postgres(engine, watch=[worker, beat])
    await chat.assert_api_has_each_once()
    await chat.assert_answered_once()
    healthy = await wait_for_celery_health(api, 200)
    assert healthy["workers"] == [worker.name]
    ready = await api.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
