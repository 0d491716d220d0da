"""The cold tier: sessions inactive for ARCHIVE_INACTIVE_SESSIONS_DAYS move to compressed files.

Archiving keeps the session row (small: the state without messages, flagged `archived_at`),
its orchestration, summary and stats rollup in PostgreSQL, writes the whole session to a file
and deletes its message rows, the bulk. `restore_to_warm` reverses it on demand (a read-through
of an archived session, a snapshot of one that came back to life, message paging).

Order of operations: the file is written and fsynced before the transaction that deletes the
rows commits; the file is removed only after the transaction that brings the rows back commits.
A crash in between leaves at worst an orphan file, never a lost message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.archive import repository as repo
from backend.archive.storage import ArchiveStore
from backend.core import metrics
from backend.core.config import Settings
from backend.core.db import translate_db_errors
from backend.core.errors import TriageError

log = logging.getLogger(__name__)

# Given session ids, return the ones that are live in Redis (they must not be archived).
HotFilter = Callable[[list[str]], Awaitable[set[str]]]


class ArchiveUnavailable(TriageError):
    """An archived session's file is missing or damaged."""

    status_code = 503
    code = "archive_unavailable"


class ArchiveService:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.store = ArchiveStore(settings.archive_dir)

    async def archive_inactive(
        self, hot: HotFilter, *, now: datetime | None = None, limit: int | None = None
    ) -> int:
        """Archive one batch of sessions inactive since the cutoff. Returns how many moved."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.settings.archive_inactive_sessions_days)
        moved = 0
        with translate_db_errors():
            async with self.engine.begin() as conn:
                ids = await repo.lock_candidates(
                    conn, cutoff, limit or self.settings.archive_batch_size
                )
                live = await hot(ids) if ids else set()
                for sid in ids:
                    if sid in live:
                        continue
                    document = await repo.load_document(conn, sid)
                    stored = await self.store.write(sid, document)
                    await repo.mark_archived(conn, document, stored, now)
                    moved += 1
        metrics.archived(moved)
        if moved:
            log.info("archived %d inactive session(s) to %s", moved, self.store.root)
        return moved

    async def restore_to_warm(self, session_id: str) -> bool:
        """Bring an archived session's messages back into PostgreSQL. False if not archived."""
        with translate_db_errors():
            async with self.engine.begin() as conn:
                row = await repo.lock_archived(conn, session_id)
                if row is None:
                    return False
                try:
                    document = await self.store.read(session_id, row["sha256"])
                except (OSError, ValueError) as exc:
                    log.error("archive of %s cannot be read: %s", session_id, exc)
                    raise ArchiveUnavailable(
                        "this session is archived and its archive cannot be read right now",
                        session_id=session_id,
                    ) from exc
                await repo.mark_restored(
                    conn, session_id, document["session"]["tenant_id"], document["messages"]
                )
        await self.store.delete(session_id)
        return True

    async def delete(self, session_id: str) -> bool:
        return await self.store.delete(session_id)
