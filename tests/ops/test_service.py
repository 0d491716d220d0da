"""Replica heartbeats in Redis, on a single node and on a cluster."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from backend.core.redis import RedisService
from backend.core.replica_stats import ReplicaStats, p99
from backend.ops.keys import OpsKeys
from backend.ops.service import ReplicaHeartbeat
from tests.conftest import make_settings, purge_prefix


async def live(redis: RedisService, keys: OpsKeys) -> list[dict[str, Any]]:
    return [json.loads(v) for v in await redis.live_indexed(keys.replicas(), keys.replica)]


async def test_heartbeats_are_listed_until_withdrawn_or_expired(
    redis_backend: dict[str, Any],
) -> None:
    settings = make_settings(key_prefix=f"test-{uuid.uuid4().hex[:12]}", **redis_backend)
    redis = RedisService.from_settings(settings)
    keys = OpsKeys(settings.key_prefix)
    try:
        stats = ReplicaStats(replies_completed=3, streams_open=2)
        stats.first_event(0.25)
        a = ReplicaHeartbeat(redis, keys, "a", 60, stats)
        b = ReplicaHeartbeat(redis, keys, "b", 60, ReplicaStats())
        await a.publish()
        await b.publish()
        beats = await live(redis, keys)
        assert [(x["replica_id"], x["replies_completed"], x["streams_open"]) for x in beats] == [
            ("a", 3, 2),
            ("b", 0, 0),
        ]
        assert beats[0]["first_event_seconds"] == [0.25]

        await b.close()  # withdrawn at once
        assert [x["replica_id"] for x in await live(redis, keys)] == ["a"]

        # A replica that dies stops beating: it drops out once its heartbeat expires.
        dying = ReplicaHeartbeat(redis, keys, "c", 0.01, ReplicaStats())
        await dying.publish()
        for _ in range(10_000):  # a hang guard, not a timing assertion
            if "c" not in [x["replica_id"] for x in await live(redis, keys)]:
                break
            await asyncio.sleep(0.01)
        assert [x["replica_id"] for x in await live(redis, keys)] == ["a"]

        used, maxmemory = await redis.memory()
        assert used > 0 and maxmemory >= 0
    finally:
        await purge_prefix(redis, settings.key_prefix)
        await redis.close()


def test_p99_is_the_nearest_rank() -> None:
    assert p99([]) is None
    assert p99([0.5]) == 0.5
    assert p99([float(i) for i in range(1, 101)]) == 99.0
    assert p99([float(i) for i in range(1, 201)]) == 198.0
