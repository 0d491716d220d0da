"""AutoPipeline: concurrent callers share round trips yet each gets exactly its own replies."""

from __future__ import annotations

import asyncio

import pytest

from backend.core.autopipeline import AutoPipeline
from backend.core.config import Settings
from backend.core.errors import StoreUnavailable
from backend.core.redis import RedisService
from tests.conftest import make_settings
from tests.redis_cluster import free_port


async def test_concurrent_callers_get_their_own_replies_in_order(
    redis_service: RedisService, settings: Settings
) -> None:
    pipe = AutoPipeline(redis_service.client, max_commands=7)
    prefix = settings.key_prefix

    async def caller(i: int) -> list[object]:
        key = f"{prefix}:ap:{i}"
        return await pipe.execute([("SET", key, i), ("INCR", key), ("GET", key), ("BADCMD",)])

    results = await asyncio.gather(*(caller(i) for i in range(200)))
    for i, (set_ok, incr, get, bad) in enumerate(results):
        assert (set_ok, incr, get) == (True, i + 1, str(i + 1))
        assert isinstance(bad, Exception)  # an error is that caller's reply, not everyone's


async def test_an_unreachable_redis_fails_every_waiter_with_the_typed_error() -> None:
    service = RedisService.from_settings(
        make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_retries=0)
    )
    pipe = AutoPipeline(service.client)
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(pipe.execute([("GET", "k")]) for _ in range(20)), return_exceptions=True
            ),
            timeout=30,
        )
        assert all(isinstance(o, StoreUnavailable) for o in outcomes)
        # And it recovers its state: a later call is attempted again, not stuck.
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(pipe.execute([("GET", "k")]), timeout=30)
    finally:
        await service.close()
