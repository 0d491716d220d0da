"""HybridConversationService: Redis (hot) in front of PostgreSQL (warm) and the archive (cold).

How the tiers meet (invariants 6, 7, 8 and 11):

* Writes go to Redis through `ConversationStateManager`, which marks the session dirty
  (`ZADD NX` into `Keys.dirty()`, score = first-dirty time) in the same round trip. Celery beat
  runs `flush_dirty` every DIRTY_FLUSH_INTERVAL seconds: it snapshots the oldest dirty sessions
  in batches, then releases each one from the dirty set only if Redis did not move on since
  (ZREM, re-read the versions, re-add the ones that changed), so no write is ever skipped.
  A worker killed mid-batch leaves its sessions dirty; the next flush takes them again.
* Reads go through the manager too. A session missing from Redis is brought back by
  `restore` (installed as the manager's `restorer`): from PostgreSQL, or from the cold archive
  via PostgreSQL, with its stored version, using the manager's `restore_state`, which never
  writes over a newer version.
* DELETE (the manager's `delete_session`) first runs `before_delete`: what Redis holds is
  snapshotted synchronously, then the session is marked inactive in PostgreSQL. A purge
  removes the session from every tier and leaves a tombstone so an in-flight snapshot cannot
  bring it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from sqlalchemy import exc as sa_errors
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.archive.service import ArchiveService, ArchiveUnavailable
from backend.core import metrics
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import translate_db_errors
from backend.durability import repository as repo
from backend.durability.refused import (
    ARCHIVE_UNAVAILABLE,
    INVALID_DOCUMENT,
    Refusal,
    RefusedSessions,
    SessionNotDurable,
    data_refusal,
)
from backend.durability.repository import Snapshot, WriteReport
from backend.durability.schemas import MessagePage, PurgeReport
from backend.state.schemas import (
    ConversationState,
    Message,
    MessageOut,
    OrchestrationState,
    SessionPage,
    StateDocument,
    convert_state,
)
from backend.state.service import ConversationStateManager, Kind

log = logging.getLogger(__name__)


@dataclass
class FlushReport:
    batches: int = 0
    sessions: int = 0
    sessions_written: int = 0
    messages_written: int = 0
    released: int = 0
    requeued: int = 0
    refused: int = 0  # kept dirty with a backoff (backend/state/refused.py)
    recovered: int = 0  # refused before, written now

    def merge(self, other: FlushReport) -> None:
        for name in ("batches", "sessions", "sessions_written", "messages_written"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.released += other.released
        self.requeued += other.requeued
        self.refused += other.refused
        self.recovered += other.recovered


@dataclass(frozen=True)
class Owner:
    user_id: str
    tenant_id: str
    inactive: bool = False


class HybridConversationService:
    def __init__(
        self, manager: ConversationStateManager, engine: AsyncEngine, settings: Settings
    ) -> None:
        self.manager = manager
        self.engine = engine
        self.settings = settings
        self.archive = ArchiveService(engine, settings)
        self.refused = RefusedSessions(manager, settings)
        self.retention = timedelta(days=settings.data_retention_days)

    def install(self) -> None:
        """Plug the read-through restorer and the before-delete hook into the manager."""
        self.manager.restorer = self._restorer
        self.manager.before_delete = self._before_delete
        self.manager.session_lister = self._list_sessions

    # -------------------------------------------------------------- snapshots

    async def read_hot(
        self, session_ids: list[str]
    ) -> tuple[dict[str, Snapshot], dict[str, Refusal]]:
        """What Redis holds for each session (sessions without a conversation are left out),
        and the sessions whose documents cannot be read (refused: they stay dirty)."""
        if not session_ids:
            return {}, {}
        raw = await self.manager.read_hot_documents(session_ids)
        snapshots: dict[str, Snapshot] = {}
        refused: dict[str, Refusal] = {}
        for sid, (conv_raw, orch_raw) in zip(session_ids, raw, strict=True):
            if conv_raw is None:
                continue
            try:
                snapshots[sid] = Snapshot.parse(conv_raw, orch_raw)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                # Left out of the batch (it never blocks the others) and kept dirty with a
                # backoff until someone fixes it; the decoder's message names the field only.
                refused[sid] = Refusal(INVALID_DOCUMENT, f"invalid document: {exc}"[:300])
        return snapshots, refused

    async def snapshot_sessions(
        self, session_ids: list[str]
    ) -> tuple[WriteReport, dict[str, Snapshot]]:
        """Snapshot what Redis holds for these sessions into PostgreSQL, idempotently."""
        snapshots, unreadable = await self.read_hot(session_ids)
        report = await self._write(list(snapshots.values()))
        report.refused |= unreadable
        if report.archived:
            # Came back to life while archived (rare: archiving skips live sessions): bring the
            # archived messages back to warm first, then write the snapshot.
            back = []
            for sid in report.archived:
                try:
                    await self.archive.restore_to_warm(sid)
                    back.append(sid)
                except ArchiveUnavailable as exc:
                    report.refused[sid] = Refusal(ARCHIVE_UNAVAILABLE, f"archive unreadable: {exc}")
            again = await self._write([snapshots[sid] for sid in back])
            report.refused |= again.refused
            report.done += again.done
            report.purged += again.purged
            report.sessions_written += again.sessions_written
            report.messages_written += again.messages_written
        # PostgreSQL now holds these messages: the hot window may let them go.
        await self.manager.mark_durable(
            {
                sid: snapshots[sid].head.message_count
                for sid in report.done
                if sid in snapshots and sid not in report.purged
            }
        )
        return report, snapshots

    async def _write(self, snapshots: list[Snapshot]) -> WriteReport:
        """Write a batch; if the database refuses its data, isolate the culprit session.

        A document the database cannot store (a malformed message, a NUL) must not block the
        whole dirty set: the batch is split in halves until the culprit is alone (a few
        transactions, not one per session), the others are written, and the culprit is
        reported as refused (kept dirty with a backoff, see backend/state/refused.py).
        """
        try:
            return await self._write_batch(snapshots)
        except sa_errors.DBAPIError as exc:
            refusal = data_refusal(exc)
            if refusal is None:
                raise
            if len(snapshots) == 1:
                return WriteReport(refused={snapshots[0].session_id: refusal})
            half = len(snapshots) // 2
            report = await self._write(snapshots[:half])
            report.merge(await self._write(snapshots[half:]))
            return report

    async def _write_batch(self, snapshots: list[Snapshot]) -> WriteReport:
        with translate_db_errors():
            async with self.engine.begin() as conn:
                return await repo.write_snapshots(
                    conn,
                    snapshots,
                    retention=self.retention,
                    max_history=self.settings.max_conversation_history,
                )

    async def flush_dirty(
        self,
        *,
        batch_size: int | None = None,
        max_batches: int | None = None,
        concurrency: int | None = None,
        due_only: bool = True,
    ) -> FlushReport:
        """Snapshot dirty sessions, oldest first, batch by batch, until none is left (bounded).

        SNAPSHOT_CONCURRENCY disjoint batches run at once, each in its own transaction, so
        PostgreSQL writes one batch while this process reads and encodes the next. A refused
        session's score is its next attempt: it is taken only once due (`due_only=False`,
        the CLI's `triage flush`, takes every dirty session now).
        """
        batch_size = batch_size or self.settings.snapshot_batch_size
        max_batches = max_batches or self.settings.snapshot_max_batches
        concurrency = concurrency or self.settings.snapshot_concurrency
        flush = FlushReport()
        seen: set[str] = set()
        while flush.batches < max_batches:
            width = min(concurrency, max_batches - flush.batches)
            raw_ids = await self.manager.dirty.batch(batch_size * width, due_only=due_only)
            # A session written again during this run goes back to the end of the set; it is
            # left for the next run rather than chased in a loop.
            ids = [sid for sid in raw_ids if sid not in seen]
            if not ids:
                break
            seen.update(ids)
            chunks = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
            results = await asyncio.gather(
                *(self.snapshot_and_release(chunk) for chunk in chunks), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result  # the other batches committed (or rolled back) already
                flush.merge(result)
        return flush

    async def snapshot_and_release(self, session_ids: list[str]) -> FlushReport:
        """Snapshot these sessions, then drop from the dirty set those that did not move on."""
        started = time.perf_counter()
        report, snapshots = await self.snapshot_sessions(session_ids)
        metrics.snapshot_batch(
            time.perf_counter() - started, report.sessions_written, report.messages_written
        )
        # Released: written (or already durable), purged, or gone from Redis entirely. Kept:
        # archived ones being brought back, and refused ones (dirty again after a backoff).
        keep = (set(report.archived) - set(report.done)) | set(report.refused)
        released = {sid: _versions(snapshots.get(sid)) for sid in session_ids if sid not in keep}
        requeued = await self._release(released)
        await self.refused.record(report.refused)
        recovered = await self.refused.clear(report.done)
        return FlushReport(
            batches=1,
            sessions=len(session_ids),
            sessions_written=report.sessions_written,
            messages_written=report.messages_written,
            released=len(released),
            requeued=requeued,
            refused=len(report.refused),
            recovered=len(recovered),
        )

    async def _release(self, versions: dict[str, tuple[int, int]]) -> int:
        """Drop sessions from the dirty set unless written since their snapshot (see
        `DirtySet.release`); returns how many stay."""
        return await self.manager.dirty.release(versions)

    # ------------------------------------------------------------ read-through

    async def _restorer(self, kind: Kind, session_id: str) -> StateDocument | None:
        return await self.restore(session_id, kind)

    async def restore(self, session_id: str, kind: Kind = "conversation") -> StateDocument | None:
        """Bring a session missing from Redis back from PostgreSQL (or the archive).

        Deleted (inactive) sessions are not restored: they answer 404 like missing ones.
        Returns what Redis holds afterwards, which may be newer than what was restored.
        """
        with translate_db_errors():
            async with self.engine.connect() as conn:
                stored = await repo.get_session(conn, session_id)
        if stored is None or stored.inactive_at is not None:
            return None
        tier = "warm" if stored.archived_at is None else "cold"
        if stored.archived_at is not None:
            await self.archive.restore_to_warm(session_id)
        with translate_db_errors():
            async with self.engine.connect() as conn:
                messages = await repo.get_messages(
                    conn, session_id, limit=self.settings.max_conversation_history
                )
                orch_doc = await repo.get_orchestration_state(conn, session_id)
        conversation = convert_state(
            ConversationState,
            {
                **stored.state,
                "version": stored.version,
                "message_count": stored.message_count,
                "messages": messages,
            },
        )
        if await self.manager.restore_state("conversation", conversation):
            metrics.restored(tier)
        await self.manager.mark_durable({session_id: stored.message_count})
        if orch_doc is not None:
            await self.manager.restore_state(
                "orchestration", convert_state(OrchestrationState, orch_doc)
            )
        if kind == "conversation":
            return await self.manager.get_hot_conversation_state(session_id)
        return await self.manager.get_hot_orchestration_state(session_id)

    # ------------------------------------------------------------------ delete

    async def _before_delete(self, session_id: str) -> None:
        await self.deactivate(session_id)

    async def deactivate(self, session_id: str) -> None:
        """Make what Redis holds durable, then mark the session inactive (history kept).

        When its snapshot is refused, nothing is changed and `SessionNotDurable` (409) is
        raised: clearing Redis would lose what only Redis holds.
        """
        report, _ = await self.snapshot_sessions([session_id])
        if session_id in report.refused:
            (refused,) = await self.refused.record(report.refused)
            raise SessionNotDurable(
                f"session {session_id} cannot be deleted yet: PostgreSQL has not stored its "
                "latest version, which deleting it now would lose (operators see it in "
                "`triage stats`); retry later, or purge it to erase it everywhere",
                retry_after=max(1, round(refused.next_attempt_at - time.time())),
            )
        await self.refused.clear([session_id])
        with translate_db_errors():
            async with self.engine.begin() as conn:
                await repo.mark_inactive(conn, session_id)

    async def purge(self, session_id: str) -> PurgeReport:
        """Remove a session from every tier: Redis, PostgreSQL (tombstoned) and the archive."""
        hot = await self.manager.purge_hot(session_id)
        with translate_db_errors():
            async with self.engine.begin() as conn:
                warm = await repo.purge_session(conn, session_id)
        cold = await self.archive.delete(session_id)
        await self.refused.forget(session_id)
        metrics.purged()
        return PurgeReport(session_id=session_id, hot=hot, warm=warm, cold=cold)

    # ----------------------------------------------------------- owner, paging

    async def owner(self, session_id: str) -> Owner | None:
        """Who owns a session, from Redis or PostgreSQL (deleted sessions included)."""
        (meta,) = await self.manager.session_metas([session_id])
        if meta is not None:
            return Owner(meta["user_id"], meta["tenant_id"])
        with translate_db_errors():
            async with self.engine.connect() as conn:
                stored = await repo.get_session(conn, session_id)
        if stored is None:
            return None
        return Owner(stored.user_id, stored.tenant_id, inactive=stored.inactive_at is not None)

    async def owned_conversation(self, principal: Principal, session_id: str) -> ConversationState:
        """The caller's conversation (read-through); another user's is 404 like a missing one."""
        return await self.manager.get_owned(principal, session_id)

    async def page_messages(
        self, principal: Principal, session_id: str, *, before: int | None, limit: int
    ) -> MessagePage:
        """Up to `limit` messages with seq < `before` (newest page when None), oldest first.

        The hot window serves what it holds; older messages come from PostgreSQL, and from the
        cold archive (brought back to warm) when the session is archived.
        """
        conv = await self.owned_conversation(principal, session_id)
        upper = conv.message_count + 1 if before is None else min(before, conv.message_count + 1)
        page: list[Message] = [m for m in conv.messages if m.seq < upper][-limit:]
        start = page[0].seq if page else upper
        if len(page) < limit and start > 1:
            older = await self._warm_messages(session_id, start, limit - len(page))
            incomplete = len(older) < min(limit - len(page), start - 1)
            if incomplete and await self.archive.restore_to_warm(session_id):
                older = await self._warm_messages(session_id, start, limit - len(page))
            page = older + page
        first = page[0].seq if page else None
        return MessagePage(
            session_id=session_id,
            items=MessageOut.of(page),
            message_count=conv.message_count,
            next_before=first if first is not None and first > 1 else None,
        )

    async def _list_sessions(
        self, tenant_id: str, user_id: str, offset: int, limit: int
    ) -> SessionPage:
        return await self.list_sessions(tenant_id, user_id, offset=offset, limit=limit)

    async def list_sessions(
        self, tenant_id: str, user_id: str, *, offset: int = 0, limit: int = 20
    ) -> SessionPage:
        """A user's sessions newest first, hot and warm together (read-through for listings).

        Redis's user index only knows sessions touched since they were last loaded; after a
        flush or expiry, PostgreSQL still lists them. Where both tiers know a session, the
        higher version wins. `total` counts PostgreSQL's rows plus hot sessions not yet
        snapshotted that this page saw.
        """
        hot = await self.manager.list_active_conversations(
            tenant_id, user_id, offset=0, limit=offset + limit
        )
        with translate_db_errors():
            async with self.engine.connect() as conn:
                warm, warm_total = await repo.list_user_sessions(
                    conn, tenant_id, user_id, limit=offset + limit
                )
        merged = {s.session_id: s for s in warm}
        for s in hot.items:
            if s.session_id not in merged or merged[s.session_id].version < s.version:
                merged[s.session_id] = s
        ordered = sorted(merged.values(), key=lambda s: s.updated_at, reverse=True)
        hot_only = len({s.session_id for s in hot.items} - {s.session_id for s in warm})
        return SessionPage(
            items=ordered[offset : offset + limit],
            total=warm_total + hot_only,
            offset=offset,
            limit=limit,
        )

    async def _warm_messages(self, session_id: str, before: int, limit: int) -> list[Message]:
        with translate_db_errors():
            async with self.engine.connect() as conn:
                return await repo.get_messages(conn, session_id, before=before, limit=limit)

    # ---------------------------------------------------------- maintenance

    async def archive_inactive_sessions(self, *, now: datetime | None = None) -> int:
        """One archive pass: move a batch of inactive sessions to the cold tier."""
        return await self.archive.archive_inactive(self.manager.hot_sessions, now=now)

    async def archive_all(self, max_batches: int) -> int:
        """Archive pass after pass until none is left (at most `max_batches`); the count."""
        moved = 0
        for _ in range(max_batches):
            batch = await self.archive_inactive_sessions()
            moved += batch
            if not batch:
                break
        return moved

    async def cleanup_expired(
        self, *, now: datetime | None = None, limit: int = 500
    ) -> dict[str, int]:
        """Purge sessions past their retention, re-purge tombstoned rows, drop old tombstones."""
        now = now or datetime.now(UTC)
        with translate_db_errors():
            async with self.engine.connect() as conn:
                expired = list(
                    (
                        await conn.execute(
                            text(
                                "SELECT id FROM sessions WHERE expires_at < :now"
                                " UNION SELECT s.id FROM sessions s"
                                " JOIN purged_sessions p ON p.session_id = s.id"
                                " LIMIT :limit"
                            ),
                            {"now": now, "limit": limit},
                        )
                    ).scalars()
                )
        for sid in expired:
            await self.purge(sid)
        cutoff = now - timedelta(days=self.settings.purge_tombstone_days)
        with translate_db_errors():
            async with self.engine.begin() as conn:
                dropped = (
                    await conn.execute(
                        text("DELETE FROM purged_sessions WHERE purged_at < :cutoff"),
                        {"cutoff": cutoff},
                    )
                ).rowcount
        return {"purged": len(expired), "tombstones_dropped": int(dropped or 0)}


def _versions(snapshot: Snapshot | None) -> tuple[int, int]:
    if snapshot is None:
        return (0, 0)
    orch = snapshot.orchestration
    return (snapshot.head.version, orch.version if orch is not None else 0)
