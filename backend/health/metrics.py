"""The backlog gauges of `/metrics`, read when it is scraped (see backend/core/metrics.py).

Each reader is separate, so one that cannot answer (the broker down, PostgreSQL irrelevant
here, Redis slow) leaves out only its own figures. Every replica exports the same shared
figures (dirty backlog, queue, workers, Redis memory): aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from backend.core.metrics import Reader, Reading
from workers.inspect import broker_replicas, ping_workers, queue_depth

# A scrape waits at most this long for the workers' answers to a ping.
_PING_SECONDS = 0.25


def readers(app: Any) -> list[Reader]:
    """The scrape-time readers of an API replica, on the clients of `app.state`."""
    state = app.state
    settings = state.settings

    async def replica() -> list[Reading]:
        found = [Reading("triage_hub_readers", state.runtime.hub.stats()["readers"])]
        for pool, redis in (("state", state.redis), ("hub", state.runtime.hub_redis)):
            in_use = redis.connections_in_use()
            if in_use is not None:
                found.append(Reading("triage_redis_connections_in_use", in_use, {"pool": pool}))
        return found

    async def backlog() -> list[Reading]:
        manager = state.hybrid.manager
        dirty, age = await manager.dirty_backlog()
        refused = await state.hybrid.refused.count()
        return [
            Reading("triage_dirty_sessions", dirty),
            Reading("triage_dirty_oldest_age_seconds", age),
            Reading("triage_snapshot_refused_sessions", refused),
        ]

    async def memory() -> list[Reading]:
        info = await state.hybrid.manager.memory_info()
        return [
            Reading("triage_redis_used_memory_bytes", float(info.get("used_memory", 0))),
            Reading("triage_redis_maxmemory_bytes", float(info.get("maxmemory", 0))),
        ]

    async def queue() -> list[Reading]:
        depth = await asyncio.to_thread(queue_depth, state.celery, settings.celery_queue)
        return [] if depth is None else [Reading("triage_celery_queue_depth", depth)]

    async def workers() -> list[Reading]:
        names = await asyncio.to_thread(ping_workers, state.celery, _PING_SECONDS)
        return [Reading("triage_celery_workers", len(names))]

    async def broker() -> list[Reading]:
        # Only behind Sentinel: a plain broker has no replica by design, nothing to alert on.
        replicas = await asyncio.to_thread(broker_replicas, state.celery)
        return [Reading("triage_broker_replicas", replicas)]

    found: list[Reader] = [replica, backlog, memory, queue, workers]
    return [*found, broker] if settings.broker_behind_sentinel else found
