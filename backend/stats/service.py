"""Tenant stats, cached in Redis for STATS_CACHE_TTL seconds (5 minutes by default)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.config import Settings
from backend.core.db import translate_db_errors
from backend.core.redis import RedisService
from backend.stats import repository as repo
from backend.stats.keys import stats_cache
from backend.stats.schemas import DayCount, TenantStats, TriageCount


class StatsService:
    def __init__(self, engine: AsyncEngine, redis: RedisService, settings: Settings) -> None:
        self.engine = engine
        self.redis = redis
        self.settings = settings

    async def tenant_stats(self, tenant_id: str, days: int) -> TenantStats:
        key = stats_cache(self.settings.key_prefix, tenant_id, days)
        cached = await self.redis.get_json(key)
        if cached is not None:
            return TenantStats.model_validate({**cached, "cached": True})
        stats = await self.compute(tenant_id, days)
        if self.settings.stats_cache_ttl:
            await self.redis.set_json(
                key, stats.model_dump(mode="json"), ttl=self.settings.stats_cache_ttl
            )
        return stats

    async def compute(self, tenant_id: str, days: int) -> TenantStats:
        now = datetime.now(UTC)
        since = now.date() - timedelta(days=days - 1)
        with translate_db_errors():
            async with self.engine.connect() as conn:
                raw = await repo.tenant_stats(conn, tenant_id, since)
        per_day = [
            DayCount(day=day, messages=m, active_sessions=a)
            for day in (since + timedelta(days=i) for i in range(days))
            for m, a in [raw["per_day"].get(day, (0, 0))]
        ]
        by_area: dict[str, int] = {}
        by_urgency: dict[str, int] = {}
        for area, urgency, n in raw["triage"]:
            by_area[area or "indefinida"] = by_area.get(area or "indefinida", 0) + n
            by_urgency[urgency or "indefinida"] = by_urgency.get(urgency or "indefinida", 0) + n
        return TenantStats(
            tenant=tenant_id,
            days=days,
            since=since,
            messages_total=sum(d.messages for d in per_day),
            messages_per_day=per_day,
            active_sessions=raw["active_sessions"],
            new_sessions=raw["new_sessions"],
            triage_by_area=by_area,
            triage_by_urgency=by_urgency,
            triage_outcomes=[
                TriageCount(area=a, urgency=u, sessions=n) for a, u, n in raw["triage"]
            ],
            average_duration_seconds=raw["average_duration_seconds"],
            generated_at=now,
        )
