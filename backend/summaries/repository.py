"""SQL of the summaries: what needs one, what a session holds, the idempotent upsert."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.summaries.schemas import SessionSummaryOut

_COLUMNS = (
    "session_id, summary, key_points, sentiment, tags, message_count, duration_seconds,"
    " method, session_version, updated_at"
)


async def get(conn: AsyncConnection, session_id: str) -> SessionSummaryOut | None:
    row = (
        (
            await conn.execute(
                text(f"SELECT {_COLUMNS} FROM summaries WHERE session_id = :id"),
                {"id": session_id},
            )
        )
        .mappings()
        .first()
    )
    return SessionSummaryOut.model_validate(dict(row)) if row is not None else None


async def pending(conn: AsyncConnection, limit: int) -> list[str]:
    """Warm sessions without a summary, or whose summary is older than the session."""
    rows = await conn.execute(
        text(
            "SELECT s.id FROM sessions s LEFT JOIN summaries m ON m.session_id = s.id"
            " WHERE s.archived_at IS NULL"
            " AND (m.session_id IS NULL OR m.session_version < s.version)"
            " ORDER BY s.updated_at LIMIT :limit"
        ),
        {"limit": limit},
    )
    return list(rows.scalars().all())


async def session_facts(conn: AsyncConnection, session_id: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                text(
                    "SELECT s.tenant_id, s.version, s.archived_at, o.area FROM sessions s"
                    " LEFT JOIN orchestrations o ON o.session_id = s.id WHERE s.id = :id"
                ),
                {"id": session_id},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


async def upsert(conn: AsyncConnection, tenant_id: str, summary: SessionSummaryOut) -> None:
    """Write a summary unless a newer session version was already summarised."""
    values = summary.model_dump(exclude={"updated_at"})
    values["key_points"] = _json(values["key_points"])
    values["tags"] = _json(values["tags"])
    await conn.execute(
        text(
            "INSERT INTO summaries AS m (session_id, tenant_id, summary, key_points, sentiment,"
            " tags, message_count, duration_seconds, method, session_version, updated_at)"
            " VALUES (:session_id, :tenant_id, :summary, CAST(:key_points AS jsonb), :sentiment,"
            " CAST(:tags AS jsonb), :message_count, :duration_seconds, :method,"
            " :session_version, now())"
            " ON CONFLICT (session_id) DO UPDATE SET summary = excluded.summary,"
            " key_points = excluded.key_points, sentiment = excluded.sentiment,"
            " tags = excluded.tags, message_count = excluded.message_count,"
            " duration_seconds = excluded.duration_seconds, method = excluded.method,"
            " session_version = excluded.session_version, updated_at = now()"
            " WHERE m.session_version <= excluded.session_version"
        ),
        {**values, "tenant_id": tenant_id},
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
