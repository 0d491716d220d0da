from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from backend.api.deps import EngineDep, RedisDep
from backend.core.db import DatabaseUnavailable
from backend.core.db import ping as ping_database
from backend.core.http import error_responses

router = APIRouter(prefix="/health", tags=["health"])
log = logging.getLogger(__name__)

# A readiness probe must answer quickly even when PostgreSQL hangs.
_DATABASE_PING_SECONDS = 2.0
# What a replica cannot do while PostgreSQL is down (everything else only needs Redis).
_WITHOUT_POSTGRES = [
    "restore of sessions no longer in Redis",
    "history older than the hot window",
    "summaries and stats",
    "purge",
    "snapshots (they wait in Redis and are taken once PostgreSQL is back)",
]


@router.get("/live")
async def live() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/ready", responses=error_responses(503))
async def ready(redis: RedisDep, engine: EngineDep) -> dict[str, Any]:
    """Ready to serve: 503 without Redis; without PostgreSQL still 200, status degraded."""
    # Without Redis a replica can serve nothing: StoreUnavailable answers 503.
    await redis.ping()
    try:
        await asyncio.wait_for(ping_database(engine), _DATABASE_PING_SECONDS)
    except (DatabaseUnavailable, SQLAlchemyError, TimeoutError) as exc:
        # Chatting (hot state, streams, replies) goes on: the replica stays in rotation.
        log.warning("ready: PostgreSQL unavailable (%s): serving degraded", type(exc).__name__)
        return {
            "status": "degraded",
            "checks": {"redis": "ok", "postgres": "unavailable"},
            "unavailable": _WITHOUT_POSTGRES,
        }
    return {"status": "ok", "checks": {"redis": "ok", "postgres": "ok"}}


@router.get("/redis", responses=error_responses(503))
async def redis_health(redis: RedisDep) -> dict[str, Any]:
    """Redis latency, version, memory and connected clients."""
    return await redis.health_check()
