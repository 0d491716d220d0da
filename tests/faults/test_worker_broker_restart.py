"""The broker (here also the hot store) restarts: the worker reconnects by itself, the health
route answers 503 with a reason meanwhile (never 500) and is right again afterwards."""

from __future__ import annotations

import asyncio
import time

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.config import Settings
from tests.faults.chat import Chat
from tests.faults.conftest import StartCelery
from tests.redis_server import RedisServer


async def celery_health(api: httpx.AsyncClient) -> httpx.Response:
    response = await api.get("/health/celery")
    assert response.status_code in (200, 503), response.text
    if response.status_code == 503:
        assert response.json()["error"]["code"] in {
            "broker_unavailable",
            "workers_unavailable",
            "store_unavailable",
        }, response.text
    return response


async def test_a_broker_restart_is_ridden_out_and_health_recovers_on_its_own(
    redis_server: RedisServer,
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
    assert (await celery_health(api)).status_code == 200

    redis_server.stop()
    down = await celery_health(api)
    assert down.status_code == 503
    assert (await api.get("/health/ready")).status_code == 503
    assert set(await chat.post_round()) == {503}

    redis_server.start()
    # The first look after the restart may still see the worker reconnecting (503 with a
    # reason), never a 500; it turns 200 by itself: nothing broken was left behind.
    deadline = time.monotonic() + 60
    while (response := await celery_health(api)).status_code != 200:
        assert worker.alive() and beat.alive()
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.3)
    assert response.json()["workers"] == [worker.name]
    await chat.assert_none_stranded()

    assert await chat.post_round() == [202] * 3
    await chat.wait_for_postgres(engine, watch=[worker, beat])
    await chat.assert_api_has_each_once()
    await chat.assert_answered_once()
    assert worker.alive() and beat.alive()
