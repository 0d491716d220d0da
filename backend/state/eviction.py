"""Evicting snapshotted sessions from the hot tier (`triage clear-cache`).

A session may leave Redis only when PostgreSQL already holds what Redis holds, because the
read-through restore brings it back from there on the next read. A session in the dirty set
has writes not yet snapshotted, so it is never evicted (nor one whose snapshot PostgreSQL
refused: it stays dirty, see backend/state/refused.py); neither is one with a reply being
generated (its lease is held) nor one written in the last `min_idle` seconds. With a
`warm_holds` check (the CLI passes one that asks PostgreSQL), the snapshot's versions must also
be at least those in Redis: that covers a dirty mark lost to a crash between a write and its
ZADD, which only `rebuild_indexes` would otherwise repair.

Why the quiet period: a writer bumps the version (one script) and marks the session dirty
(ZADD, another slot) in one pipeline, so for an instant a fresh write can be outside the dirty
set. The eviction script refuses any version change after our read, and a session idle for a
minute has no such write in flight.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files

from backend.core.redis import translate_errors
from backend.state.service import ConversationStateManager

NOT_FOUND = "not in Redis"
DIRTY = "not yet snapshotted to PostgreSQL"
RECENT = "written too recently"
BUSY = "a reply is being generated"
CHANGED = "changed while being evicted"
NOT_DURABLE = "PostgreSQL holds an older version"
REFUSED = "PostgreSQL refused its snapshot (see triage stats)"

# (session id, conversation version, orchestration version; 0 when absent) -> whether the warm
# tier holds at least those versions.
WarmCheck = Callable[[str, int, int], Awaitable[bool]]


@dataclass
class EvictionReport:
    evicted: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (session id, reason)


class SessionEvictor:
    def __init__(
        self,
        manager: ConversationStateManager,
        *,
        min_idle: float = 60.0,
        warm_holds: WarmCheck | None = None,
    ) -> None:
        self.manager = manager
        self.warm_holds = warm_holds
        self.keys = manager.keys
        self.client = manager.redis.client
        self.min_idle = min_idle
        script = files("backend.state").joinpath("lua", "evict_session.lua").read_text()
        self._script = self.client.register_script(script)

    async def evict(self, session_id: str) -> str | None:
        """Evict one session; returns None when it was evicted, else why it was kept."""
        conv_key = self.keys.conversation(session_id)
        orch_key = self.keys.orchestration(session_id)
        with translate_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(conv_key, ["version", "meta"])
            pipe.hmget(orch_key, ["version", "meta"])
            (conv_version, conv_meta), (orch_version, orch_meta) = await pipe.execute()
            if conv_version is None and orch_version is None:
                return NOT_FOUND
            # After the versions: a write that lands in between changes a version (refused
            # below) even if its dirty mark has not arrived yet.
            if await self.client.hexists(self.keys.refused(), session_id):
                return REFUSED
            if await self.client.zscore(self.keys.dirty(), session_id) is not None:
                return DIRTY
            meta = json.loads(conv_meta or orch_meta)
            if time.time() - meta["updated_at"] / 1_000_000 < self.min_idle:
                return RECENT
        if self.warm_holds is not None and not await self.warm_holds(
            session_id, int(conv_version or 0), int(orch_version or 0)
        ):
            return NOT_DURABLE
        keys = [conv_key, orch_key, self.keys.events(session_id), self.keys.lease(session_id)]
        args = [conv_version or "0", orch_version or "0"]
        # The session's open streams end, as those of any session that left Redis do: told
        # now (notify.py) rather than found at the replicas' next sweep.
        notify_keys, notify_args = self.manager.notifier.in_script(session_id)
        with translate_errors():
            result = int(await self._script(keys=keys + notify_keys, args=args + notify_args))
            if result < 0:
                return BUSY
            if result == 0:
                return CHANGED
        if not notify_keys:
            await self.manager.notify_gone(session_id)
        with translate_errors():
            await self.client.zrem(
                self.keys.user_index(meta["tenant_id"], meta["user_id"]), session_id
            )
        return None

    async def evict_all(self) -> EvictionReport:
        """Evict every snapshotted, idle session under the prefix (SCAN, never KEYS)."""
        report = EvictionReport()
        seen: set[str] = set()
        for pattern in (self.keys.conversation_pattern(), self.keys.orchestration_pattern()):
            async for key in self.manager.redis.scan_keys(pattern):
                sid = self.keys.session_id_from_key(key)
                if sid in seen:
                    continue
                seen.add(sid)
                reason = await self.evict(sid)
                if reason is None:
                    report.evicted.append(sid)
                elif reason != NOT_FOUND:  # expired while we scanned
                    report.kept.append((sid, reason))
        return report
