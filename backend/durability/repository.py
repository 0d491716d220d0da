"""SQL of the warm tier: batched idempotent snapshots, restore loads, deletion and purge.

Why the snapshot writer looks like this (invariant 6):

* One transaction per batch, a handful of statements whatever the batch size: rows travel as
  parallel arrays through `unnest`, and the raw conversation documents go to PostgreSQL as
  they are, where `jsonb_to_recordset` expands their messages (parsing 10,000 messages into
  Python objects and encoding them back cost more than the database's whole insert).
* Existing rows of the batch are locked first (`FOR UPDATE`, in id order so two concurrent
  batches never deadlock); a concurrent purge or archive of the same session waits or is
  waited for, never interleaves.
* Sessions and orchestrations are upserted only when the incoming version is higher
  (`ON CONFLICT ... WHERE stored.version < excluded.version`); messages are inserted keyed by
  (session, sequence) with conflicts ignored. Redelivering a batch changes nothing.
* The stats rollup is fed from the message rows the INSERT actually wrote (RETURNING), so a
  redelivered batch never counts a message twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.durability.refused import Refusal
from backend.state.schemas import (
    ConversationState,
    Message,
    OrchestrationState,
    SessionSummary,
    decode_state,
    encode_state,
    to_jsonable,
)

log = logging.getLogger(__name__)


class ConversationHead(msgspec.Struct, kw_only=True):
    """The session-level fields of a conversation document (its messages are skipped, not
    parsed)."""

    session_id: str
    user_id: str
    tenant_id: str
    kind: str
    status: str
    title: str | None = None
    version: int
    message_count: int
    created_at: datetime
    updated_at: datetime


_head_decoder = msgspec.json.Decoder(ConversationHead)


class _MessageSeq(msgspec.Struct):
    seq: int


class _WindowSeqs(msgspec.Struct):
    messages: list[_MessageSeq] = msgspec.field(default_factory=list)


# The sequences of a document's hot window (the rest of each message is skipped, not parsed).
_window_decoder = msgspec.json.Decoder(_WindowSeqs)


@dataclass(frozen=True)
class Snapshot:
    """What Redis held for one session: the raw conversation document, and its head.

    The document travels to PostgreSQL as it is; the database expands its messages
    (`jsonb_to_recordset`), which costs a fraction of parsing them into objects here.
    """

    head: ConversationHead
    document: str
    orchestration: OrchestrationState | None = None

    @property
    def session_id(self) -> str:
        return self.head.session_id

    @classmethod
    def parse(cls, conversation: str | bytes, orchestration: str | bytes | None) -> Snapshot:
        """From the JSON documents Redis holds; raises `msgspec.DecodeError` on a malformed one."""
        document = conversation if isinstance(conversation, str) else conversation.decode()
        return cls(
            head=_head_decoder.decode(document),
            document=document,
            orchestration=(
                decode_state(OrchestrationState, orchestration) if orchestration else None
            ),
        )

    @classmethod
    def of(
        cls, conversation: ConversationState, orchestration: OrchestrationState | None = None
    ) -> Snapshot:
        return cls.parse(encode_state(conversation), None).with_orchestration(orchestration)

    def with_orchestration(self, orchestration: OrchestrationState | None) -> Snapshot:
        return Snapshot(self.head, self.document, orchestration)


@dataclass
class WriteReport:
    # Sessions now durable at (at least) the versions read from Redis: written or already there.
    done: list[str] = field(default_factory=list)
    # Sessions in the cold archive: brought back to warm first, snapshotted on the next pass.
    archived: list[str] = field(default_factory=list)
    # Purged sessions (tombstoned): never written again.
    purged: list[str] = field(default_factory=list)
    sessions_written: int = 0
    messages_written: int = 0
    # Messages that left the hot window before any snapshot saw them, and that PostgreSQL
    # does not hold either: lost (see README, "The hot window waits for snapshots").
    messages_missed: int = 0
    # Sessions that could not be written, and why: kept dirty (backend/state/refused.py).
    refused: dict[str, Refusal] = field(default_factory=dict)

    def merge(self, other: WriteReport) -> None:
        self.refused |= other.refused
        self.done += other.done
        self.archived += other.archived
        self.purged += other.purged
        self.sessions_written += other.sessions_written
        self.messages_written += other.messages_written
        self.messages_missed += other.messages_missed


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def state_document(state: OrchestrationState) -> dict[str, Any]:
    """The JSONB form of a state document."""
    return to_jsonable(state)


_LOCK = text(
    "SELECT id, version, message_count, archived_at IS NOT NULL AS archived FROM sessions"
    " WHERE id = ANY(CAST(:ids AS text[])) ORDER BY id FOR UPDATE"
)
_TOMBSTONES = text(
    "SELECT session_id FROM purged_sessions WHERE session_id = ANY(CAST(:ids AS text[]))"
)
# The state column keeps the document without its message window (messages are rows).
_UPSERT_SESSIONS = text(
    """
    INSERT INTO sessions AS s (id, user_id, tenant_id, kind, status, title, version,
                               message_count, state, created_at, updated_at, expires_at)
    SELECT u.id, u.user_id, u.tenant_id, u.kind, u.status, u.title, u.version, u.message_count,
           CAST(u.doc AS jsonb) - 'messages', u.created_at, u.updated_at,
           u.updated_at + make_interval(secs => :retention)
    FROM unnest(CAST(:ids AS text[]), CAST(:users AS text[]), CAST(:tenants AS text[]),
                CAST(:kinds AS text[]), CAST(:statuses AS text[]), CAST(:titles AS text[]),
                CAST(:versions AS int[]), CAST(:counts AS int[]), CAST(:docs AS text[]),
                CAST(:created AS timestamptz[]), CAST(:updated AS timestamptz[]))
         AS u(id, user_id, tenant_id, kind, status, title, version, message_count, doc,
              created_at, updated_at)
    ON CONFLICT (id) DO UPDATE SET
        kind = excluded.kind, status = excluded.status, title = excluded.title,
        version = excluded.version, message_count = excluded.message_count,
        state = excluded.state, updated_at = excluded.updated_at,
        expires_at = excluded.expires_at, snapshotted_at = now()
    WHERE s.version < excluded.version
    """
)
# Messages with seq > `after` (what PostgreSQL already holds for the session), expanded from
# the documents by the database itself.
_INSERT_MESSAGES = text(
    """
    WITH inserted AS (
        INSERT INTO messages (session_id, seq, tenant_id, role, content, metadata, created_at)
        SELECT u.session_id, m.seq, u.tenant_id, m.role, m.content,
               COALESCE(m.metadata, '{}'), m.created_at
        FROM unnest(CAST(:sids AS text[]), CAST(:tenants AS text[]), CAST(:after AS int[]),
                    CAST(:docs AS text[])) AS u(session_id, tenant_id, after, doc)
        CROSS JOIN LATERAL jsonb_to_recordset(CAST(u.doc AS jsonb) -> 'messages')
             AS m(seq int, role text, content text, metadata jsonb, created_at timestamptz)
        WHERE m.seq > u.after
        ON CONFLICT (session_id, seq) DO NOTHING
        RETURNING tenant_id, session_id, created_at
    ), rolled AS (
        INSERT INTO session_daily_activity AS a (tenant_id, day, session_id, messages)
        SELECT tenant_id, CAST(created_at AT TIME ZONE 'UTC' AS date), session_id, count(*)
        FROM inserted GROUP BY 1, 2, 3
        ON CONFLICT (tenant_id, day, session_id)
        DO UPDATE SET messages = a.messages + excluded.messages
    )
    SELECT count(*) FROM inserted
    """
)
_UPSERT_ORCHESTRATIONS = text(
    """
    INSERT INTO orchestrations AS o (session_id, tenant_id, version, stage, status, state,
                                     triage_result, area, urgency, triaged_at, created_at,
                                     updated_at)
    SELECT u.session_id, u.tenant_id, u.version, u.stage, u.status, CAST(u.state AS jsonb),
           CAST(u.result AS jsonb), u.area, u.urgency, u.triaged_at, u.created_at, u.updated_at
    FROM unnest(CAST(:sids AS text[]), CAST(:tenants AS text[]), CAST(:versions AS int[]),
                CAST(:stages AS text[]), CAST(:statuses AS text[]), CAST(:states AS text[]),
                CAST(:results AS text[]), CAST(:areas AS text[]), CAST(:urgencies AS text[]),
                CAST(:triaged AS timestamptz[]), CAST(:created AS timestamptz[]),
                CAST(:updated AS timestamptz[]))
         AS u(session_id, tenant_id, version, stage, status, state, result, area, urgency,
              triaged_at, created_at, updated_at)
    WHERE EXISTS (SELECT 1 FROM sessions WHERE id = u.session_id)
    ON CONFLICT (session_id) DO UPDATE SET
        version = excluded.version, stage = excluded.stage, status = excluded.status,
        state = excluded.state, triage_result = excluded.triage_result,
        area = excluded.area, urgency = excluded.urgency,
        triaged_at = COALESCE(o.triaged_at, excluded.triaged_at),
        updated_at = excluded.updated_at
    WHERE o.version < excluded.version
    """
)


async def write_snapshots(
    conn: AsyncConnection,
    snapshots: list[Snapshot],
    *,
    retention: timedelta,
    max_history: int = 100,
) -> WriteReport:
    """Write a batch of snapshots idempotently. The caller owns the transaction."""
    report = WriteReport()
    by_id = {s.session_id: s for s in snapshots}
    ids = sorted(by_id)
    if not ids:
        return report
    stored = {row.id: row for row in (await conn.execute(_LOCK, {"ids": ids})).mappings().all()}
    tombstoned = set((await conn.execute(_TOMBSTONES, {"ids": ids})).scalars().all())
    report.purged = sorted(tombstoned)
    report.archived = sorted(sid for sid, row in stored.items() if row["archived"])
    writable = [by_id[sid] for sid in ids if sid not in tombstoned and sid not in report.archived]

    newer: list[tuple[Snapshot, int]] = []
    for snap in writable:
        row = stored.get(snap.session_id)
        if row is not None and row["version"] >= snap.head.version:
            continue
        already = row["message_count"] if row is not None else 0
        newer.append((snap, already))

    if newer:
        await conn.execute(_UPSERT_SESSIONS, _session_params([s for s, _ in newer], retention))
        report.sessions_written = len(newer)
        fresh = [(s, after) for s, after in newer if s.head.message_count > after]
        if fresh:
            params = {
                "sids": [s.session_id for s, _ in fresh],
                "tenants": [s.head.tenant_id for s, _ in fresh],
                "after": [after for _, after in fresh],
                "docs": [s.document for s, _ in fresh],
            }
            report.messages_written = int(
                (await conn.execute(_INSERT_MESSAGES, params)).scalar_one()
            )
            report.messages_missed = await _count_missed(conn, fresh, max_history)
    orchestrated = [s for s in writable if s.orchestration is not None]
    if orchestrated:
        await conn.execute(_UPSERT_ORCHESTRATIONS, _orchestration_params(orchestrated))
    report.done = [s.session_id for s in writable]
    return report


_HELD_BEFORE = text(
    """
    SELECT u.session_id, count(m.seq) AS held
    FROM unnest(CAST(:sids AS text[]), CAST(:firsts AS int[])) AS u(session_id, first_seq)
    LEFT JOIN messages m ON m.session_id = u.session_id AND m.seq < u.first_seq
    GROUP BY u.session_id
    """
)


async def _count_missed(
    conn: AsyncConnection, fresh: list[tuple[Snapshot, int]], max_history: int
) -> int:
    """Messages older than a snapshot's hot window that PostgreSQL does not hold; each session
    with some is logged. Called after the batch's messages are inserted.

    The window keeps every message not yet snapshotted (up to its hard cap), so it can hold far
    more than `max_history`: its real first sequence is read from the document. A gap is only
    possible when the session grew by more than `max_history` since PostgreSQL last saw it;
    only those documents are looked at, and PostgreSQL counts what it holds below the window.
    """
    firsts: dict[str, int] = {}
    for snap, after in fresh:
        if snap.head.message_count - after <= max_history:
            continue  # the window (at least `max_history` long) reaches back to `after`
        window = _window_decoder.decode(snap.document).messages
        first = window[0].seq if window else snap.head.message_count + 1
        if first > after + 1:
            firsts[snap.session_id] = first
    if not firsts:
        return 0
    params = {"sids": list(firsts), "firsts": list(firsts.values())}
    missed = 0
    for row in (await conn.execute(_HELD_BEFORE, params)).mappings():
        first = firsts[row["session_id"]]
        lost = first - 1 - int(row["held"])
        if lost > 0:
            missed += lost
            log.warning(
                "snapshot: session %s: %d message(s) left the hot window before being "
                "snapshotted (PostgreSQL holds %d of seq 1-%d)",
                row["session_id"],
                lost,
                int(row["held"]),
                first - 1,
            )
    return missed


def _session_params(snaps: list[Snapshot], retention: timedelta) -> dict[str, Any]:
    heads = [s.head for s in snaps]
    return {
        "ids": [h.session_id for h in heads],
        "users": [h.user_id for h in heads],
        "tenants": [h.tenant_id for h in heads],
        "kinds": [h.kind for h in heads],
        "statuses": [h.status for h in heads],
        "titles": [h.title for h in heads],
        "versions": [h.version for h in heads],
        "counts": [h.message_count for h in heads],
        "docs": [s.document for s in snaps],
        "created": [h.created_at for h in heads],
        "updated": [h.updated_at for h in heads],
        "retention": retention.total_seconds(),
    }


def _orchestration_params(snaps: list[Snapshot]) -> dict[str, Any]:
    orchs = [s.orchestration for s in snaps if s.orchestration is not None]
    results = [o.triage_result for o in orchs]
    return {
        "sids": [o.session_id for o in orchs],
        "tenants": [o.tenant_id for o in orchs],
        "versions": [o.version for o in orchs],
        "stages": [o.stage for o in orchs],
        "statuses": [o.status for o in orchs],
        "states": [_json(state_document(o)) for o in orchs],
        "results": [None if r is None else _json(r) for r in results],
        "areas": [_str_or_none(r, "area") for r in results],
        "urgencies": [_str_or_none(r, "urgency") for r in results],
        "triaged": [
            None if r is None else o.updated_at for o, r in zip(orchs, results, strict=True)
        ],
        "created": [o.created_at for o in orchs],
        "updated": [o.updated_at for o in orchs],
    }


def _str_or_none(result: dict[str, Any] | None, key: str) -> str | None:
    value = (result or {}).get(key)
    return str(value)[:64] if value is not None else None


# ------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class StoredSession:
    session_id: str
    user_id: str
    tenant_id: str
    version: int
    message_count: int
    state: dict[str, Any]
    inactive_at: datetime | None
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime


async def get_session(conn: AsyncConnection, session_id: str) -> StoredSession | None:
    row = (
        (
            await conn.execute(
                text(
                    "SELECT id, user_id, tenant_id, version, message_count, state, inactive_at,"
                    " archived_at, created_at, updated_at FROM sessions WHERE id = :id"
                ),
                {"id": session_id},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return StoredSession(session_id=row["id"], **{k: v for k, v in row.items() if k != "id"})


async def get_orchestration_state(conn: AsyncConnection, session_id: str) -> dict[str, Any] | None:
    return (
        await conn.execute(
            text("SELECT state FROM orchestrations WHERE session_id = :id"), {"id": session_id}
        )
    ).scalar_one_or_none()


async def get_messages(
    conn: AsyncConnection, session_id: str, *, before: int | None = None, limit: int | None = None
) -> list[Message]:
    """Messages with seq < `before` (all when None), the last `limit` of them, oldest first."""
    rows = (
        await conn.execute(
            text(
                "SELECT seq, role, content, metadata, created_at FROM messages"
                " WHERE session_id = :id AND seq < :before ORDER BY seq DESC LIMIT :limit"
            ),
            {"id": session_id, "before": before or 2**31 - 1, "limit": limit},
        )
    ).all()
    return [
        Message(
            seq=r.seq, role=r.role, content=r.content, metadata=r.metadata, created_at=r.created_at
        )
        for r in reversed(rows)
    ]


async def list_user_sessions(
    conn: AsyncConnection, tenant_id: str, user_id: str, *, limit: int
) -> tuple[list[SessionSummary], int]:
    """A user's live (not deleted) sessions, newest first, and how many there are."""
    params = {"tenant": tenant_id, "user": user_id, "limit": limit}
    found = await conn.execute(
        text(
            "SELECT id, kind, status, title, message_count, version, updated_at FROM sessions"
            " WHERE tenant_id = :tenant AND user_id = :user AND inactive_at IS NULL"
            " ORDER BY updated_at DESC LIMIT :limit"
        ),
        params,
    )
    total = await conn.execute(
        text(
            "SELECT count(*) FROM sessions"
            " WHERE tenant_id = :tenant AND user_id = :user AND inactive_at IS NULL"
        ),
        params,
    )
    items = [
        SessionSummary(
            session_id=r.id,
            kind=r.kind,
            status=r.status,
            title=r.title,
            message_count=r.message_count,
            version=r.version,
            updated_at=r.updated_at,
        )
        for r in found
    ]
    return items, int(total.scalar_one())


# ---------------------------------------------------------------- delete, purge


async def mark_inactive(conn: AsyncConnection, session_id: str) -> bool:
    result = await conn.execute(
        text("UPDATE sessions SET inactive_at = COALESCE(inactive_at, now()) WHERE id = :id"),
        {"id": session_id},
    )
    return bool(result.rowcount)


async def purge_session(conn: AsyncConnection, session_id: str) -> bool:
    """Delete the session and all its rows; leave a tombstone. Returns whether a row existed.

    Orchestration, summary, rollup and archive index go by cascade; messages (no foreign key,
    see the model) explicitly.
    """
    await conn.execute(
        text(
            "INSERT INTO purged_sessions (session_id) VALUES (:id)"
            " ON CONFLICT (session_id) DO UPDATE SET purged_at = now()"
        ),
        {"id": session_id},
    )
    result = await conn.execute(text("DELETE FROM sessions WHERE id = :id"), {"id": session_id})
    await conn.execute(text("DELETE FROM messages WHERE session_id = :id"), {"id": session_id})
    return bool(result.rowcount)
