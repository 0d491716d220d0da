"""ConversationStateManager: the only code that reads or writes conversation state in Redis.

The versioned read and write path is `StateStore` (backend/state/store.py); the manager adds
what spans sessions or tiers: events, listings, ownership, the dirty and due sets
(backend/state/queues.py), deletion and purge of hot keys, stats and the legacy migration.
Code outside `backend/state/` goes through these methods, never through the Redis client (the
streaming hub, which tails the event streams, aside).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

from redis.client import NEVER_DECODE

from backend.core.auth import Principal
from backend.core.errors import SessionNotFound
from backend.core.redis import translate_errors
from backend.state.migration import MigrationReport, write_legacy_records
from backend.state.owed import owes_reply
from backend.state.schemas import (
    ConversationState,
    OrchestrationState,
    SessionPage,
    SessionSummary,
    StreamEntry,
)
from backend.state.stats import system_stats
from backend.state.store import (
    AlreadyWritten,
    Companion,
    CompanionConflict,
    IdempotentWrite,
    Kind,
    OverLimit,
    RateLimit,
    StateStore,
    WriteResult,
    _evalsha,
)

__all__ = [
    "AlreadyWritten",
    "Companion",
    "CompanionConflict",
    "ConversationStateManager",
    "IdempotentWrite",
    "Kind",
    "OverLimit",
    "RateLimit",
    "StateStore",
    "WriteResult",
]

_BYTES = {NEVER_DECODE: True}
ZERO_ID = "0-0"


class ConversationStateManager(StateStore):
    # ------------------------------------------------------------------ reads

    async def get_hot_orchestration_state(self, session_id: str) -> OrchestrationState | None:
        """Redis only, never the restorer (what a restore just wrote)."""
        return await self._get(OrchestrationState, self.keys.orchestration(session_id))

    async def get_owned(self, principal: Principal, session_id: str) -> ConversationState:
        """The caller's conversation (read-through), or `SessionNotFound`: another user's
        session answers exactly like a missing one."""
        state = await self.get_conversation_state(session_id)
        if state is None or not owned_by(state, principal):
            raise not_found(session_id)
        return state

    async def read_hot_documents(
        self, session_ids: list[str]
    ) -> list[tuple[bytes | None, bytes | None]]:
        """The raw (conversation, orchestration) documents Redis holds, per session.

        As bytes: a document that is not UTF-8 (a hand edit) must be refused alone by the
        caller, not fail the decoding of the whole batch's reply.
        """
        if not session_ids:
            return []
        with translate_errors():
            pipe = self.redis.client.pipeline(transaction=False)
            for sid in session_ids:
                pipe.execute_command("HGET", self.keys.conversation(sid), "doc", **_BYTES)
                pipe.execute_command("HGET", self.keys.orchestration(sid), "doc", **_BYTES)
            raw = await pipe.execute()
        return [(raw[2 * i], raw[2 * i + 1]) for i in range(len(session_ids))]

    async def hot_sessions(self, session_ids: list[str]) -> set[str]:
        """The sessions that live in Redis or wait in the dirty set (never archived then)."""
        if not session_ids:
            return set()
        with translate_errors():
            pipe = self.redis.client.pipeline(transaction=False)
            for sid in session_ids:
                pipe.exists(self.keys.conversation(sid))
                pipe.zscore(self.keys.dirty(), sid)
            raw = await pipe.execute()
        return {
            sid for i, sid in enumerate(session_ids) if raw[2 * i] or raw[2 * i + 1] is not None
        }

    async def mark_durable(self, sequences: dict[str, int]) -> None:
        """Record, per session, the highest message sequence PostgreSQL now holds.

        Lets the hot window drop those messages (see `ConversationState.trim_window`). It only
        goes up, touches no version and no TTL, and does nothing for a session that is gone.
        """
        if not sequences:
            return
        await self._pipeline(
            [
                _evalsha(self._durable_script.sha, [self.keys.conversation(sid)], [seq])
                for sid, seq in sequences.items()
            ]
        )

    async def idempotency_record(self, session_id: str, key: str) -> dict[str, Any] | None:
        """The record a write tagged with Idempotency-Key `key` stored, if any (see
        `IdempotentWrite`)."""
        current, previous = self.keys.idempotency(session_id)
        found = await self._pipeline([("HGET", current, key), ("HGET", previous, key)])
        raw = found[0] or found[1]
        if raw is None:
            return None
        await self._confirm_replicated(session_id)
        return cast(dict[str, Any], json.loads(raw))

    # ------------------------------------------------------------------ events

    async def read_events(
        self, session_id: str, after: str = "0-0", count: int = 500
    ) -> list[StreamEntry]:
        """Events strictly after the stream id `after`, oldest first."""
        with translate_errors():
            rows = await self.redis.client.xrange(
                self.keys.events(session_id),
                min=f"({after}" if after != "0-0" else "-",
                count=count,
            )
        entries = cast(list[tuple[str, dict[str, str]]], rows or [])
        return [StreamEntry.from_redis(entry_id, fields) for entry_id, fields in entries]

    async def last_event_id(self, session_id: str) -> str:
        """The id of the newest entry of the session's event stream (`0-0` when empty)."""
        with translate_errors():
            rows = await self.redis.client.xrevrange(self.keys.events(session_id), count=1)
        return str(rows[0][0]) if rows else ZERO_ID

    # ------------------------------------------------------------ listing, stats

    async def list_sessions(
        self, tenant_id: str, user_id: str, *, offset: int = 0, limit: int = 20
    ) -> SessionPage:
        """A user's sessions, newest first: every tier when the durability layer is plugged
        in (`session_lister`), else what Redis holds."""
        if self.session_lister is not None:
            return await self.session_lister(tenant_id, user_id, offset, limit)
        return await self.list_active_conversations(tenant_id, user_id, offset=offset, limit=limit)

    async def list_active_conversations(
        self, tenant_id: str, user_id: str, *, offset: int = 0, limit: int = 20
    ) -> SessionPage:
        """The user's live sessions, newest first, from the user's index.

        Index entries whose state has expired are skipped and pruned on the way.
        """
        index = self.keys.user_index(tenant_id, user_id)
        with translate_errors():
            total = int(await self.redis.client.zcard(index))
            ids = cast(
                list[str], await self.redis.client.zrevrange(index, offset, offset + limit - 1)
            )
        items, gone = [], []
        metas = await self.session_metas(ids)
        for sid, meta in zip(ids, metas, strict=True):
            if meta is None or meta.get("tenant_id") != tenant_id or meta.get("user_id") != user_id:
                gone.append(sid)
                continue
            items.append(SessionSummary.from_meta(sid, meta))
        if gone:
            with translate_errors():
                await self.redis.client.zrem(index, *gone)
        return SessionPage(items=items, total=total - len(gone), offset=offset, limit=limit)

    async def get_system_stats(self) -> dict[str, Any]:
        """Counts over the whole hot tier (SCAN-based: for ops, not for every request)."""
        return await system_stats(self)

    async def dirty_backlog(self) -> tuple[int, float]:
        """Sessions waiting for a snapshot, and how long the oldest has waited (seconds)."""
        return await self.dirty.backlog()

    async def memory_info(self) -> dict[str, Any]:
        """Redis's INFO memory section (for `triage monitor`)."""
        with translate_errors():
            return cast(dict[str, Any], await self.redis.client.info("memory"))

    async def rebuild_indexes(self) -> int:
        """Rebuild every user's index, the dirty set and the replies' due set from the
        sessions' own state.

        Marks every live session dirty: snapshotting is idempotent, so the worst case is
        redundant work, never a lost write. A session that owes a reply is made due now.
        Returns the number of sessions seen.
        """
        seen = 0
        async for key in self.redis.scan_keys(self.keys.conversation_pattern()):
            sid = self.keys.session_id_from_key(key)
            (meta,) = await self.session_metas([sid])
            if meta is None:
                continue
            index_key = self.keys.user_index(meta["tenant_id"], meta["user_id"])
            commands: list[tuple[Any, ...]] = [
                _evalsha(
                    self._index_script.sha,
                    [index_key],
                    [sid, meta["updated_at"], self.settings.conversation_ttl, 1],
                ),
                ("ZADD", self.keys.dirty(), "NX", time.time(), sid),
            ]
            conversation = await self.get_hot_conversation_state(sid)
            if conversation is not None and owes_reply(conversation):
                commands.append(("ZADD", self.keys.replies_due(), "LT", time.time(), sid))
            await self._pipeline(commands)
            seen += 1
        return seen

    # ------------------------------------------------------------------ delete

    async def delete_session(self, session_id: str) -> bool:
        """Remove every hot key of a session, its index entry and its due entry. Returns
        whether it existed.

        `before_delete` (if set) runs first, so what Redis holds is made durable before it goes.
        The Idempotency-Key records stay (a retry still gets its first answer).
        """
        if self.before_delete is not None:
            await self.before_delete(session_id)
        return await self._drop_hot(session_id)

    async def purge_hot(self, session_id: str) -> bool:
        """Erase a session from Redis (right to erasure): every hot key, its index, dirty and
        due entries, its Idempotency-Key records and the user's mapping of the key that opened
        it (named in its record), so a retry after it opens a new session, not this id again.
        Returns whether it held state."""
        records = self.keys.idempotency(session_id)
        with translate_errors():
            values = [v for key in records for v in await self.redis.client.hvals(key)]
        opened = {str(json.loads(v).get("opened") or "") for v in values} - {""}
        return await self._drop_hot(session_id, extra=[*records, *sorted(opened)], dirty=True)

    async def _drop_hot(
        self, session_id: str, *, extra: list[str] | None = None, dirty: bool = False
    ) -> bool:
        """The one hot-key delete: the session's keys (and `extra`), then its entries in the
        user's index, the due set and (`dirty`) the dirty set."""
        (meta,) = await self.session_metas([session_id])
        # One DEL: a session's keys share its hash tag (one slot, also on a cluster). Its open
        # streams are told, so they end now rather than at the replicas' next sweep.
        keys = self.keys.session_keys(session_id)
        removed = await self.notifier.delete(self.redis.client, self._pipeline, session_id, keys)
        if extra:
            await self.redis.delete(*extra)
        self._decoded.forget(self.keys.conversation(session_id))
        with translate_errors():
            if meta is not None:
                await self.redis.client.zrem(
                    self.keys.user_index(meta["tenant_id"], meta["user_id"]), session_id
                )
            await self.due.drop(session_id)
            if dirty:
                await self.redis.client.zrem(self.keys.dirty(), session_id)
        return removed > 0

    # -------------------------------------------------------------- migration

    async def migrate_memory_to_redis(
        self,
        active_conversations: dict[str, dict[str, Any]],
        active_orchestrations: dict[str, dict[str, Any]],
        *,
        dry_run: bool = False,
        on_record: Callable[[str, str], None] | None = None,
    ) -> MigrationReport:
        """Move the legacy in-memory dicts into Redis. Idempotent; never overwrites newer state.

        See `backend.state.migration.write_legacy_records`.
        """
        return await write_legacy_records(
            self, active_conversations, active_orchestrations, dry_run=dry_run, on_record=on_record
        )


def owned_by(state: ConversationState, principal: Principal) -> bool:
    """The one ownership check: the session belongs to this user of this tenant."""
    return state.user_id == principal.user_id and state.tenant_id == principal.tenant_id


def not_found(session_id: str) -> SessionNotFound:
    # One message for "missing" and "someone else's": the answer must not tell them apart.
    return SessionNotFound(f"session {session_id} not found", session_id=session_id)
