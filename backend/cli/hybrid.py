"""The hybrid service with its own clients, for one-off commands, and the durability runs the
`flush`, `archive` and `purge` commands make (the API and the workers build theirs in their
lifespans)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backend.core.config import Settings
from backend.durability.schemas import PurgeReport
from backend.durability.service import FlushReport, HybridConversationService
from backend.wiring import open_services


@asynccontextmanager
async def open_hybrid(settings: Settings) -> AsyncIterator[HybridConversationService]:
    """A hybrid service with its own clients (the app's wiring, small pools), for one-off
    commands; closed on exit."""
    async with open_services(settings) as services:
        yield services.hybrid


async def purge_session(settings: Settings, session_id: str) -> PurgeReport:
    """Erase one session from every tier (the CLI's `purge`)."""
    async with open_hybrid(settings) as service:
        return await service.purge(session_id)


async def archive_inactive_sessions(settings: Settings, *, max_batches: int = 1_000) -> int:
    """Archive every session inactive past the cutoff (the CLI's `archive`); returns the count."""
    async with open_hybrid(settings) as service:
        return await service.archive_all(max_batches)


async def flush_dirty_sessions(settings: Settings) -> FlushReport:
    """Snapshot every dirty session now (the CLI's `flush`)."""
    async with open_hybrid(settings) as service:
        return await service.flush_dirty(max_batches=1_000_000, due_only=False)
