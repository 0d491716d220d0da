from __future__ import annotations

import asyncio
from typing import Any

from backend.core.redis import RedisService
from backend.state.service import ConversationStateManager
from backend.streaming.lease import SessionLease
from tests.conftest import make_settings, purge_prefix


def lease_for(
    manager: ConversationStateManager, ttl_ms: int = 5_000, owner: str = "a"
) -> SessionLease:
    return SessionLease(manager.redis, manager.keys, ttl_ms, owner)


async def test_one_holder_at_a_time(manager: ConversationStateManager) -> None:
    a, b = lease_for(manager, owner="a"), lease_for(manager, owner="b")
    ta, tb = a.new_token(), b.new_token()
    assert ta.startswith("a:") and ta != a.new_token()
    assert await a.acquire("s1", ta)
    assert not await b.acquire("s1", tb)
    assert await b.acquire("s2", tb)  # other sessions are independent
    assert await a.is_held("s1")


async def test_release_and_renew_only_by_the_holder(manager: ConversationStateManager) -> None:
    a, b = lease_for(manager), lease_for(manager, owner="b")
    ta, tb = a.new_token(), b.new_token()
    assert await a.acquire("s1", ta)
    assert not await b.release("s1", tb)
    assert not await b.renew("s1", tb)
    assert await a.renew("s1", ta)
    assert await a.release("s1", ta)
    assert not await a.is_held("s1")
    assert await b.acquire("s1", tb)


async def test_expired_lease_is_free_and_old_holder_cannot_touch_the_new_one(
    manager: ConversationStateManager, redis_service: RedisService
) -> None:
    a, b = lease_for(manager, ttl_ms=300), lease_for(manager, owner="b")
    ta, tb = a.new_token(), b.new_token()
    assert await a.acquire("s1", ta)
    deadline = asyncio.get_running_loop().time() + 10
    while await a.is_held("s1"):  # hang guard only; the lease expires by itself
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert await b.acquire("s1", tb)
    assert not await a.renew("s1", ta)
    assert not await a.release("s1", ta)
    assert await redis_service.client.get(manager.keys.lease("s1")) == tb


async def test_a_holder_takes_its_own_lease_back_and_extends_it(
    redis_backend: dict[str, Any],
) -> None:
    # A holder that waited out a Redis outage takes its lease back with the same token: the
    # lease is still its own, and is extended, not refused (the reply goes on as its own).
    settings = make_settings(**redis_backend)
    redis = RedisService.from_settings(settings)
    try:
        manager = ConversationStateManager(redis, settings)
        a, b = lease_for(manager, ttl_ms=5_000), lease_for(manager, owner="b")
        ta, tb = a.new_token(), b.new_token()
        key = manager.keys.lease("s1")
        assert await a.take("s1", ta)
        await redis.client.pexpire(key, 300)  # about to lapse, as after a long outage
        assert await a.take("s1", ta)
        assert await redis.client.pttl(key) > 1_000
        assert not await b.take("s1", tb)
        assert await redis.client.get(key) == ta
        # Lapsed meanwhile and nobody took it: the same token takes it again.
        await redis.client.delete(key)
        assert await a.take("s1", ta)
        assert await redis.client.get(key) == ta
    finally:
        await purge_prefix(redis, settings.key_prefix)
        await redis.close()
