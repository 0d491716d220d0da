"""The stats queries: one tenant, a window of UTC days, read from the rollup and indexes.

Messages (and active sessions) per day come from `session_daily_activity` (one row per session
and day), never from counting message rows; sessions and triage outcomes use the
(tenant, time) indexes of their tables.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_PER_DAY = text(
    "SELECT day, sum(messages) AS messages, count(*) AS active FROM session_daily_activity"
    " WHERE tenant_id = :tenant AND day >= :since GROUP BY day ORDER BY day"
)
# A session active in the window has its last activity (updated_at) in it, and a new one too
# (created <= updated): one index-only range scan of (tenant_id, updated_at) INCLUDE created_at.
_SESSIONS = text(
    "SELECT count(*) AS active, count(*) FILTER (WHERE created_at >= :start) AS new_sessions,"
    " avg(extract(epoch FROM updated_at - created_at)) AS avg_duration"
    " FROM sessions WHERE tenant_id = :tenant AND updated_at >= :start"
)
_TRIAGE = text(
    "SELECT area, urgency, count(*) AS sessions FROM orchestrations"
    " WHERE tenant_id = :tenant AND triaged_at >= :start GROUP BY area, urgency"
    " ORDER BY count(*) DESC, area, urgency"
)


async def tenant_stats(conn: AsyncConnection, tenant_id: str, since: date) -> dict[str, Any]:
    start = datetime.combine(since, time.min, tzinfo=UTC)
    params = {"tenant": tenant_id, "since": since, "start": start}
    per_day = (await conn.execute(_PER_DAY, params)).all()
    sessions = (await conn.execute(_SESSIONS, params)).one()
    triage = (await conn.execute(_TRIAGE, params)).all()
    return {
        "per_day": {r.day: (int(r.messages), int(r.active)) for r in per_day},
        "active_sessions": int(sessions.active),
        "new_sessions": int(sessions.new_sessions),
        "average_duration_seconds": (
            None if sessions.avg_duration is None else round(float(sessions.avg_duration), 3)
        ),
        "triage": [(r.area, r.urgency, int(r.sessions)) for r in triage],
    }


async def tenant_stats_from_messages(
    conn: AsyncConnection, tenant_id: str, since: date
) -> dict[date, tuple[int, int]]:
    """Messages per day counted from the message rows (the benchmark's baseline)."""
    start = datetime.combine(since, time.min, tzinfo=UTC)
    rows = await conn.execute(
        text(
            "SELECT CAST(created_at AT TIME ZONE 'UTC' AS date) AS day, count(*) AS messages,"
            " count(DISTINCT session_id) AS active FROM messages"
            " WHERE tenant_id = :tenant AND created_at >= :start GROUP BY 1 ORDER BY 1"
        ),
        {"tenant": tenant_id, "start": start},
    )
    return {r.day: (int(r.messages), int(r.active)) for r in rows}
