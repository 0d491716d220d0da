"""The cold tier: sessions inactive for ARCHIVE_INACTIVE_SESSIONS_DAYS move to compressed archives.

Archiving keeps the session row (small: the state without messages, flagged `archived_at`),
its orchestration, summary and stats rollup in PostgreSQL, writes the whole session to an
archive and deletes its message rows, the bulk. Archives go to a local directory or
S3-compatible object storage (`backends.py`); the index row records which, and the key.
`restore_to_warm` reverses it on demand (a read-through of an archived session, a snapshot of
one that came back to life, message paging).

Order of operations: the archive is written whole (fsync and rename, or one S3 PUT) before the
transaction that indexes it and deletes the rows commits; a failed write rolls the whole batch
back, so its messages stay in PostgreSQL. The archive is removed only after the transaction
that brings the rows back commits. A crash in between leaves at worst an orphan object, never
a lost message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.archive import repository as repo
from backend.archive.backends import ArchiveBackendError, ArchiveObjectMissing
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


class ArchiveWriteFailed(TriageError):
    """The archive backend refused or could not take an archive; the batch was rolled back."""

    status_code = 503
    code = "archive_write_failed"


class ArchiveService:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.store = ArchiveStore.from_settings(settings)

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
                    try:
                        stored = await self.store.write(sid, document)
                    except (OSError, ArchiveBackendError) as exc:
                        # Leaving the block rolls back every row of this batch: nothing is
                        # indexed or deleted, and objects already written are overwritten by
                        # the next pass (their key depends on the session id alone).
                        log.error("archive of %s could not be written: %s", sid, exc)
                        raise ArchiveWriteFailed(
                            "the archive backend could not store a session; nothing was moved",
                            session_id=sid,
                        ) from exc
                    await repo.mark_archived(conn, document, stored, now)
                    moved += 1
        metrics.archived(moved)
        if moved:
            log.info("archived %d inactive session(s) to %s", moved, self.store.default.name)
        return moved

    async def restore_to_warm(self, session_id: str) -> bool:
        """Bring an archived session's messages back into PostgreSQL. False if not archived."""
        with translate_db_errors():
            async with self.engine.begin() as conn:
                row = await repo.lock_archived(conn, session_id)
                if row is None:
                    return False
                try:
                    document = await self.store.read(
                        session_id, row["sha256"], backend=row["backend"], key=row["key"]
                    )
                except ArchiveObjectMissing as exc:
                    # Nothing is deleted: the index row stays, so the session stays listed as
                    # archived and an operator can put the object back.
                    log.error("archive of %s is missing: %s", session_id, exc)
                    raise ArchiveUnavailable(
                        f"this session is archived but its archive is missing from the"
                        f" {row['backend']} backend",
                        session_id=session_id,
                        backend=row["backend"],
                    ) from exc
                except (OSError, ValueError, ArchiveBackendError) as exc:
                    log.error("archive of %s cannot be read: %s", session_id, exc)
                    raise ArchiveUnavailable(
                        "this session is archived and its archive cannot be read right now",
                        session_id=session_id,
                        backend=row["backend"],
                    ) from exc
                await repo.mark_restored(
                    conn, session_id, document["session"]["tenant_id"], document["messages"]
                )
        try:
            await self.store.delete_object(row["backend"], row["key"])
        except (OSError, ArchiveBackendError) as exc:
            # The rows are back and the index row is gone: the object is only an orphan now
            # (a purge still finds it by its key).
            log.warning("archive of %s restored but not removed: %s", session_id, exc)
        return True

    async def delete(self, session_id: str) -> bool:
        """Remove a session's archive from every configured backend (a purge)."""
        try:
            return await self.store.delete(session_id)
        except (OSError, ArchiveBackendError) as exc:
            log.error("archive of %s could not be erased: %s", session_id, exc)
            raise ArchiveUnavailable(
                "the session was erased from Redis and PostgreSQL but its archive could not be"
                f" removed right now; run `triage purge {session_id}` again",
                session_id=session_id,
            ) from exc
