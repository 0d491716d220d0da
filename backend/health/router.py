from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.core.deps import RedisDep
from backend.core.http import error_responses

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/ready", responses=error_responses(503))
async def ready(redis: RedisDep) -> dict[str, Any]:
    """Ready to serve: Redis answers. 503 when it does not."""
    await redis.ping()
    return {"status": "ok", "checks": {"redis": "ok"}}


@router.get("/redis", responses=error_responses(503))
async def redis_health(redis: RedisDep) -> dict[str, Any]:
    """Redis latency, version, memory and connected clients."""
    return await redis.health_check()
