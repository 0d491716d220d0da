"""Redis full (maxmemory reached, noeviction) under writes, then freed: the worker rides it out
and nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal

import httpx
from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.config import Settings
from tests.faults.chat import Chat
from tests.faults.conftest import StartCelery
from tests.redis_server import RedisServer
from workers.config import FLUSH_DIRTY, create_celery_app


async def test_a_full_redis_neither_ends_the_worker_nor_loses_an_acknowledged_message(
    redis_server: RedisServer,
    settings: Settings,
    start_celery: StartCelery,
    api: httpx.AsyncClient,
    engine: AsyncEngine,
) -> None:
    worker = start_celery("worker")
    # A short lock: the beat renews it several times while Redis is full.
    beat = start_celery("beat", beat_lock_seconds=1.5)
    chat = Chat(api, settings)
    for _ in range(4):
        await chat.start()
    assert await chat.post_round() == [202] * 4

    # Hold the worker still while tasks queue up and Redis fills, then let it go: it meets a
    # full broker with deliveries to take (kombu's ZADD into its unacked index is refused).
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    celery: Celery = create_celery_app(settings)
    try:
        for _ in range(5):
            celery.send_task(FLUSH_DIRTY)
    finally:
        celery.close()
    redis_server.fill()
    os.killpg(worker.proc.pid, signal.SIGCONT)

    # Writers keep going: every answer is an acknowledgement or a clear 503, never a 5xx else.
    for _ in range(3):
        await chat.post_round()
    assert chat.refused > 0, "Redis was not full"
    worker.wait_for_line("OutOfMemoryError")
    # The beat still holds its lock and tries (only the holder sends): Redis refuses the task.
    beat.wait_for_line("Couldn't apply scheduled task")
    for _ in range(3):
        await chat.post_round()
    assert worker.alive() and beat.alive()
    await chat.assert_none_stranded()

    redis_server.free()
    assert await chat.post_round() == [202] * 4
    await chat.wait_for_postgres(engine, watch=[worker, beat])
    await chat.assert_api_has_each_once()
    await chat.assert_answered_once()
    await chat.assert_none_stranded()
    # The same processes, still running: nobody had to restart them.
    assert worker.alive() and beat.alive()
    assert "Unrecoverable error" not in worker.output()
    # Renewing the beat's lock needs no memory: it kept scheduling throughout.
    assert "standing by" not in beat.output()
