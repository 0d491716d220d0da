"""The hybrid service with its own clients, for one-off commands, and the durability runs the
`flush`, `archive` and `purge` commands make (the API and the workers build theirs in their
lifespans)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backend.core.config import Settings
from backend.core.db import create_engine
from backend.core.redis import RedisService
from backend.durability.schemas import PurgeReport
from backend.durability.service import FlushReport, HybridConversationService
from backend.state.service import ConversationStateManager


@asynccontextmanager
async def open_hybrid(settings: Settings) -> AsyncIterator[HybridConversationService]:
    """A hybrid service with its own clients, for one-off commands; closed on exit."""
    redis = RedisService.from_settings(settings)
    engine = create_engine(settings, pool_size=2)
    try:
        service = HybridConversationService(
            ConversationStateManager(redis, settings), engine, settings
        )
        service.install()
        yield service
    finally:
        await engine.dispose()
        await redis.close()


async def purge_session(settings: Settings, session_id: str) -> PurgeReport:
    """Erase one session from every tier (the CLI's `purge`)."""
    async with open_hybrid(settings) as service:
        return await service.purge(session_id)


async def archive_inactive_sessions(settings: Settings, *, max_batches: int = 1_000) -> int:
    """Archive every session inactive past the cutoff (the CLI's `archive`); returns the count."""
    moved = 0
    async with open_hybrid(settings) as service:
        for _ in range(max_batches):
            batch = await service.archive_inactive_sessions()
            moved += batch
            if not batch:
                break
    return moved


async def flush_dirty_sessions(settings: Settings) -> FlushReport:
    """Snapshot every dirty session now (the CLI's `flush`)."""
    async with open_hybrid(settings) as service:
        return await service.flush_dirty(max_batches=1_000_000, due_only=False)
