"""A worker that must give up exits non-zero, so that its supervisor restarts it; a worker
killed outright loses nothing, and its replacement takes over."""

from __future__ import annotations

import subprocess

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.config import Settings
from tests.faults.chat import Chat
from tests.faults.conftest import StartCelery
from tests.redis_server import RedisServer


def test_a_worker_that_gives_up_on_its_broker_exits_non_zero(
    redis_server: RedisServer, start_celery: StartCelery
) -> None:
    worker = start_celery("worker", celery_broker_max_retries=1)
    redis_server.stop()
    try:
        status = worker.proc.wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker is still waiting:\n{worker.output()[-3000:]}") from None
    assert status != 0, worker.output()[-3000:]


async def test_after_a_worker_sigkill_its_replacement_snapshots_everything_once(
    settings: Settings,
    start_celery: StartCelery,
    api: httpx.AsyncClient,
    engine: AsyncEngine,
) -> None:
    first = start_celery("worker")
    beat = start_celery("beat")
    chat = Chat(api, settings)
    for _ in range(3):
        await chat.start()
    await chat.post_round()
    first.kill()
    # Written while no worker runs: the beat's flushes wait in the queue.
    assert await chat.post_round() == [202] * 3
    second = start_celery("worker")
    assert await chat.post_round() == [202] * 3
    await chat.wait_for_postgres(engine, watch=[second, beat])
    await chat.assert_none_stranded()
    await chat.assert_api_has_each_once()
    await chat.assert_answered_once()
