"""SQL of the cold tier: pick inactive sessions, move their messages out and back."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.archive.storage import StoredFile


async def lock_candidates(conn: AsyncConnection, cutoff: datetime, limit: int) -> list[str]:
    """Inactive, not archived sessions, oldest first; rows locked, skipping ones in use."""
    rows = await conn.execute(
        text(
            "SELECT id FROM sessions WHERE archived_at IS NULL AND updated_at < :cutoff"
            " ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"cutoff": cutoff, "limit": limit},
    )
    return list(rows.scalars().all())


async def load_document(conn: AsyncConnection, session_id: str) -> dict[str, Any]:
    """Everything the cold file holds for one session: its row, orchestration and messages."""
    session = (
        (
            await conn.execute(
                text(
                    "SELECT id, user_id, tenant_id, kind, status, title, version, message_count,"
                    " state, created_at, updated_at, expires_at, inactive_at"
                    " FROM sessions WHERE id = :id"
                ),
                {"id": session_id},
            )
        )
        .mappings()
        .one()
    )
    orchestration = (
        await conn.execute(
            text("SELECT state FROM orchestrations WHERE session_id = :id"), {"id": session_id}
        )
    ).scalar_one_or_none()
    messages = (
        (
            await conn.execute(
                text(
                    "SELECT seq, role, content, metadata, created_at FROM messages"
                    " WHERE session_id = :id ORDER BY seq"
                ),
                {"id": session_id},
            )
        )
        .mappings()
        .all()
    )
    return {
        "format": 1,
        "session": dict(session),
        "orchestration": orchestration,
        "messages": [dict(m) for m in messages],
    }


async def mark_archived(
    conn: AsyncConnection, document: dict[str, Any], stored: StoredFile, now: datetime
) -> None:
    session = document["session"]
    params = {"id": session["id"], "now": now}
    await conn.execute(
        text(
            "INSERT INTO archives (session_id, tenant_id, path, backend, key, version,"
            " message_count, bytes, sha256, archived_at) VALUES (:id, :tenant, :path, :backend,"
            " :key, :version, :count, :bytes, :sha, :now) ON CONFLICT (session_id) DO UPDATE"
            " SET path = excluded.path, backend = excluded.backend, key = excluded.key,"
            " version = excluded.version, message_count = excluded.message_count,"
            " bytes = excluded.bytes, sha256 = excluded.sha256, archived_at = excluded.archived_at"
        ),
        {
            **params,
            "tenant": session["tenant_id"],
            "path": stored.path,
            "backend": stored.backend,
            "key": stored.key,
            "version": session["version"],
            "count": len(document["messages"]),
            "bytes": stored.bytes,
            "sha": stored.sha256,
        },
    )
    await conn.execute(text("DELETE FROM messages WHERE session_id = :id"), params)
    await conn.execute(text("UPDATE sessions SET archived_at = :now WHERE id = :id"), params)


async def lock_archived(conn: AsyncConnection, session_id: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                text(
                    "SELECT s.version, a.sha256, a.backend, a.key FROM sessions s"
                    " JOIN archives a ON a.session_id = s.id"
                    " WHERE s.id = :id AND s.archived_at IS NOT NULL FOR UPDATE OF s"
                ),
                {"id": session_id},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


async def mark_restored(
    conn: AsyncConnection, session_id: str, tenant_id: str, messages: list[dict[str, Any]]
) -> None:
    if messages:
        await conn.execute(
            text(
                "INSERT INTO messages (session_id, seq, tenant_id, role, content, metadata,"
                " created_at)"
                " SELECT :id, u.seq, :tenant, u.role, u.content, CAST(u.meta AS jsonb),"
                " CAST(u.created_at AS timestamptz)"
                " FROM unnest(CAST(:seqs AS int[]), CAST(:roles AS text[]),"
                " CAST(:contents AS text[]), CAST(:metas AS text[]), CAST(:created AS text[]))"
                " AS u(seq, role, content, meta, created_at)"
                " ON CONFLICT (session_id, seq) DO NOTHING"
            ),
            {
                "id": session_id,
                "tenant": tenant_id,
                "seqs": [m["seq"] for m in messages],
                "roles": [m["role"] for m in messages],
                "contents": [m["content"] for m in messages],
                "metas": [json.dumps(m["metadata"], ensure_ascii=False) for m in messages],
                "created": [m["created_at"] for m in messages],
            },
        )
    params = {"id": session_id}
    await conn.execute(text("DELETE FROM archives WHERE session_id = :id"), params)
    await conn.execute(text("UPDATE sessions SET archived_at = NULL WHERE id = :id"), params)
