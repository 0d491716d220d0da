"""Sessions whose snapshot could not be written: kept, retried with backoff, counted.

A session PostgreSQL refuses (a value it cannot store, a constraint), whose document cannot
be read, or whose archive cannot be brought back, is never released from the dirty set: its
latest writes exist only in Redis. Instead:

* it stays in the dirty set with its score moved to the time of the next attempt (the dirty
  set doubles as the schedule: `flush_dirty` takes only members that are due), doubling from
  SNAPSHOT_RETRY_SECONDS up to SNAPSHOT_RETRY_MAX_SECONDS per refusal;
* it is recorded in the refused hash (`Keys.refused()`: session id -> JSON with the reason,
  the attempts, the first and last refusal and the next attempt), which `triage stats`,
  `triage monitor` and `/health/celery` ("degraded") report;
* its keys lose their TTL (PERSIST), so an idle refused session does not expire from Redis
  with writes PostgreSQL never got; the next successful snapshot gives the TTL back.

Once a snapshot of the session succeeds, it leaves the refused hash. DELETE refuses (409
`session_not_durable`) and eviction keeps a session that is in it.

Why a Redis hash and not a table: what is refused is a write to PostgreSQL, and the record is
read where the dirty set is (stats, health, DELETE, eviction), in the same round trips. Like
the dirty set it can be lost without losing anything: the session is still dirty, and its next
attempt records it again. The reason holds PostgreSQL's message with quoted values masked and
never any message text.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from backend.core.config import Settings
from backend.core.errors import TriageError
from backend.core.redis import translate_errors
from backend.state.store import StateStore

log = logging.getLogger(__name__)


class SessionNotDurable(TriageError):
    """The session's latest version is only in Redis: clearing it would lose it."""

    status_code = 409
    code = "session_not_durable"


@dataclass(frozen=True)
class Refusal:
    """Why a session could not be snapshotted (`code`: a SQLSTATE, or a name from
    backend/durability/refused.py)."""

    code: str
    reason: str


@dataclass(frozen=True)
class RefusedSession:
    session_id: str
    code: str
    reason: str
    attempts: int
    first_refused_at: float
    last_refused_at: float
    next_attempt_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RefusedSessions:
    def __init__(self, manager: StateStore, settings: Settings) -> None:
        self.manager = manager
        self.settings = settings
        self.keys = manager.keys
        self.client = manager.redis.client

    def backoff(self, attempts: int) -> float:
        base, cap = self.settings.snapshot_retry_seconds, self.settings.snapshot_retry_max_seconds
        return float(min(cap, base * 2 ** min(attempts - 1, 32)))

    async def record(self, refusals: dict[str, Refusal]) -> list[RefusedSession]:
        """Count a refusal of each session, push its next attempt back, keep its keys."""
        if not refusals:
            return []
        ids = list(refusals)
        now = time.time()
        with translate_errors():
            previous = await self.client.hmget(self.keys.refused(), ids)
        recorded = []
        for sid, raw in zip(ids, previous, strict=True):
            before = json.loads(raw) if raw else {}
            attempts = int(before.get("attempts", 0)) + 1
            recorded.append(
                RefusedSession(
                    session_id=sid,
                    code=refusals[sid].code,
                    reason=refusals[sid].reason,
                    attempts=attempts,
                    first_refused_at=float(before.get("first_refused_at", now)),
                    last_refused_at=now,
                    next_attempt_at=now + self.backoff(attempts),
                )
            )
        with translate_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(
                self.keys.refused(),
                mapping={r.session_id: json.dumps(_fields(r)) for r in recorded},
            )
            # Not NX: the score becomes the next attempt. A session purged meanwhile that comes
            # back here finds nothing in Redis on that attempt and is released.
            pipe.zadd(self.keys.dirty(), {r.session_id: r.next_attempt_at for r in recorded})
            for r in recorded:
                for key in self._ttl_keys(r.session_id):
                    pipe.persist(key)
            await pipe.execute()
        for r in recorded:
            log.error(
                "snapshot: session %s refused (%s, attempt %d, next in %.0f s): %s",
                r.session_id,
                r.code,
                r.attempts,
                r.next_attempt_at - now,
                r.reason,
            )
        return recorded

    async def clear(self, session_ids: list[str]) -> list[str]:
        """Drop these sessions (now durable) from the record and give their keys a TTL back.

        Returns the ones that were refused before. One HLEN when nothing is refused.
        """
        if not session_ids:
            return []
        with translate_errors():
            if not await self.client.hlen(self.keys.refused()):
                return []
            present = await self.client.hmget(self.keys.refused(), session_ids)
            recovered = [sid for sid, raw in zip(session_ids, present, strict=True) if raw]
            if not recovered:
                return []
            conv_ttl, orch_ttl = self.settings.conversation_ttl, self.settings.orchestration_ttl
            pipe = self.client.pipeline(transaction=False)
            pipe.hdel(self.keys.refused(), *recovered)
            for sid in recovered:
                conv, orch, events = self._ttl_keys(sid)
                pipe.expire(conv, conv_ttl)
                pipe.expire(orch, orch_ttl)
                pipe.expire(events, max(conv_ttl, orch_ttl))
            await pipe.execute()
        for sid in recovered:
            log.info("snapshot: session %s is durable again (left the refused record)", sid)
        return recovered

    async def forget(self, session_id: str) -> None:
        """Drop a purged session from the record (nothing of it is left to make durable)."""
        with translate_errors():
            await self.client.hdel(self.keys.refused(), session_id)

    async def get(self, session_id: str) -> RefusedSession | None:
        with translate_errors():
            raw = await self.client.hget(self.keys.refused(), session_id)
        return None if raw is None else _parse(session_id, str(raw))

    async def count(self) -> int:
        with translate_errors():
            return int(await self.client.hlen(self.keys.refused()))

    async def entries(self, limit: int = 20) -> list[RefusedSession]:
        """Up to `limit` refused sessions, oldest refusal first (HSCAN: the hash can be big)."""
        found: list[RefusedSession] = []
        with translate_errors():
            async for sid, raw in self.client.hscan_iter(self.keys.refused(), count=500):
                found.append(_parse(str(sid), str(raw)))
                if len(found) >= 10 * limit:
                    break
        return sorted(found, key=lambda r: r.first_refused_at)[:limit]

    def _ttl_keys(self, session_id: str) -> tuple[str, str, str]:
        # The conversation, orchestration and stream; the idempotency records keep their own
        # TTL (a retry of a post is only recognised for CONVERSATION_TTL anyway).
        conv, orch, events, *_ = self.keys.state_keys(session_id)
        return conv, orch, events


def _fields(r: RefusedSession) -> dict[str, Any]:
    fields = r.as_dict()
    del fields["session_id"]
    return fields


def _parse(session_id: str, raw: str) -> RefusedSession:
    return RefusedSession(session_id=session_id, **json.loads(raw))
