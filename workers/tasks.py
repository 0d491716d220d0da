"""Thin tasks: take ids, call a service on the process's context, return a small report.

Every task is safe to run twice (see backend/durability/repository.py). Tasks that Redis or
PostgreSQL outages can fail retry with backoff; the periodic ones simply run again on the next
beat. No task waits on another.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from backend.archive.service import ArchiveWriteFailed
from backend.core.db import DatabaseUnavailable
from backend.core.errors import StoreUnavailable
from workers.app import celery_app
from workers.config import (
    ARCHIVE_INACTIVE,
    BUILD_SUMMARIES,
    CLEANUP_EXPIRED,
    FLUSH_DIRTY,
    RESTORE_SESSION,
    SNAPSHOT_SESSION,
)
from workers.context import get_context

_RETRY: dict[str, Any] = {
    "autoretry_for": (StoreUnavailable, DatabaseUnavailable),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


@celery_app.task(name=FLUSH_DIRTY)
def flush_dirty(batch_size: int | None = None) -> dict[str, Any]:
    """Snapshot dirty sessions in batches (beat, every DIRTY_FLUSH_INTERVAL seconds)."""
    ctx = get_context()
    return asdict(ctx.run(ctx.hybrid.flush_dirty(batch_size=batch_size)))


@celery_app.task(name=SNAPSHOT_SESSION, **_RETRY)
def snapshot_session(session_id: str) -> dict[str, Any]:
    """Snapshot one session now and release it from the dirty set if it did not move on."""
    ctx = get_context()
    return asdict(ctx.run(ctx.hybrid.snapshot_and_release([session_id])))


@celery_app.task(name=RESTORE_SESSION, **_RETRY)
def restore_session(session_id: str) -> int | None:
    """Warm Redis with a session from PostgreSQL or the archive; returns its version."""
    ctx = get_context()
    state = ctx.run(ctx.hybrid.restore(session_id))
    return None if state is None else state.version


# An archive backend that refuses a write (object storage down) rolled its batch back: retry
# with the same backoff rather than wait an hour for the next beat.
@celery_app.task(
    name=ARCHIVE_INACTIVE,
    **{**_RETRY, "autoretry_for": (*_RETRY["autoretry_for"], ArchiveWriteFailed)},
)
def archive_inactive(max_batches: int = 50) -> int:
    """Move sessions inactive for ARCHIVE_INACTIVE_SESSIONS_DAYS to the cold tier (hourly)."""
    ctx = get_context()
    return ctx.run(ctx.hybrid.archive_all(max_batches))


@celery_app.task(name=CLEANUP_EXPIRED, **_RETRY)
def cleanup_expired() -> dict[str, int]:
    """Purge sessions past DATA_RETENTION_DAYS and old purge tombstones (every 10 minutes)."""
    ctx = get_context()
    return ctx.run(ctx.hybrid.cleanup_expired())


@celery_app.task(name=BUILD_SUMMARIES, **_RETRY)
def build_summaries(limit: int = 5_000) -> int:
    """Build or refresh the summaries of sessions that changed since theirs (daily, 02:00)."""
    ctx = get_context()
    return ctx.run(ctx.summaries.build_pending(limit=limit))
