"""Warm-tier benchmarks: snapshot throughput into PostgreSQL, and the tenant stats query.

1. Snapshots: 10,000 sessions x 20 messages are written to Redis (one versioned write each,
   so all are dirty), then snapshotted into PostgreSQL by the code a worker runs: batched
   (`flush_dirty`, SNAPSHOT_BATCH_SIZE sessions per transaction) against one by one
   (`snapshot_and_release` per session, one transaction each), on two equal sets of sessions
   in the same run. Target: >= 25,000 message rows per second batched.
2. Stats: one tenant holding 1,000,000 messages (50,000 sessions x 20, spread over the last 7
   days, generated in SQL), `GET /api/stats`'s query (rollup + indexes, cache bypassed) against
   counting the message rows directly, and the cached path. Target: < 100 ms.

Runs in its own database (`triage_bench_<random>`, migrated, dropped at the end) and its own
Redis database and key prefix.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from alembic.config import Config
from sqlalchemy import text

from alembic import command
from backend.core.config import Settings
from backend.core.db import create_engine
from backend.core.redis import RedisService
from backend.durability.service import HybridConversationService
from backend.state.schemas import ConversationState
from backend.state.service import ConversationStateManager
from backend.stats import repository as stats_repo
from backend.stats.service import StatsService
from bench.common import bench_settings

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = 10_000
MESSAGES = 20
BATCH = 500
STATS_SESSIONS = 50_000
STATS_TENANT = "bench-tenant"


def _pg(url: str) -> tuple[str, str]:
    """(server part for asyncpg, database name) of a SQLAlchemy asyncpg URL."""
    rest = url.split("://", 1)[1]
    server, _, name = rest.rpartition("/")
    return f"postgresql://{server}", name


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(f"{server}/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _migrate(url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"), attributes={"configure_logger": False})
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


async def _seed_redis(manager: ConversationStateManager, tenant: str, count: int) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(count)]

    async def one(sid: str) -> None:
        state = ConversationState(session_id=sid, user_id=f"u{sid[:3]}", tenant_id=tenant)
        for i in range(MESSAGES):
            state.append_message(
                "user" if i % 2 == 0 else "assistant",
                f"Mensagem {i}: fui demitido e não recebi as verbas rescisórias nem o FGTS.",
                max_history=100,
            )
        await manager.save_conversation_state(state)

    for start in range(0, count, 500):
        await asyncio.gather(*(one(sid) for sid in ids[start : start + 500]))
    return ids


async def snapshot_throughput(settings: Settings) -> dict[str, Any]:
    redis = RedisService.from_settings(settings)
    manager = ConversationStateManager(redis, settings)
    await manager.load_scripts()
    engine = create_engine(settings)
    hybrid = HybridConversationService(manager, engine, settings)
    try:
        await _seed_redis(manager, "bench-batched", SESSIONS)
        started = time.perf_counter()
        flush = await hybrid.flush_dirty(batch_size=BATCH, max_batches=10 * SESSIONS // BATCH)
        batched = time.perf_counter() - started
        assert flush.messages_written == SESSIONS * MESSAGES, flush

        ids = await _seed_redis(manager, "bench-single", SESSIONS)
        started = time.perf_counter()
        written = 0
        for sid in ids:
            written += (await hybrid.snapshot_and_release([sid])).messages_written
        single = time.perf_counter() - started
        assert written == SESSIONS * MESSAGES
        rows = SESSIONS * MESSAGES
        return {
            "rows": rows,
            "batched_s": batched,
            "batched_rows_s": rows / batched,
            "single_s": single,
            "single_rows_s": rows / single,
        }
    finally:
        keys = [k async for k in redis.scan_keys(f"{settings.key_prefix}:*")]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
        await engine.dispose()
        await redis.close()


_GENERATE = [
    """
    INSERT INTO sessions (id, user_id, tenant_id, kind, status, version, message_count, state,
                          created_at, updated_at, expires_at)
    SELECT 'bs' || g, 'u' || (g % 2000), :tenant, 'conversation', 'active', 20, 20, '{}',
           ts, ts + interval '10 minutes', ts + interval '5 years'
    FROM (SELECT g, lo + random() * (now() - interval '10 minutes' - lo) AS ts
          FROM generate_series(1, :sessions) AS g,
               -- Inside the 7-day window whatever the time of day: from midnight UTC six days
               -- ago, to 10 minutes ago (a session's 20 messages span its next 10 minutes).
               (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                       - interval '6 days' AS lo) AS w) AS x
    """,
    """
    INSERT INTO messages (session_id, seq, tenant_id, role, content, metadata, created_at)
    SELECT s.id, k, s.tenant_id, CASE WHEN k % 2 = 1 THEN 'user' ELSE 'assistant' END,
           'Mensagem ' || k || ': fui demitido e não recebi as verbas rescisórias.', '{}',
           s.created_at + k * interval '30 seconds'
    FROM sessions s CROSS JOIN generate_series(1, 20) AS k WHERE s.tenant_id = :tenant
    """,
    """
    INSERT INTO session_daily_activity (tenant_id, day, session_id, messages)
    SELECT tenant_id, CAST(created_at AT TIME ZONE 'UTC' AS date), session_id, count(*)
    FROM messages WHERE tenant_id = :tenant GROUP BY 1, 2, 3
    """,
    """
    INSERT INTO orchestrations (session_id, tenant_id, version, stage, status, state, area,
                                urgency, triaged_at, created_at, updated_at)
    SELECT id, tenant_id, 3, 'triaged', 'active', '{}',
           (ARRAY['trabalhista', 'consumidor', 'familia', 'previdenciario'])
               [1 + abs(hashtext(id)) % 4],
           (ARRAY['baixa', 'media', 'alta', 'urgente'])[1 + abs(hashtext(id || 'u')) % 4],
           updated_at, created_at, updated_at
    FROM sessions WHERE tenant_id = :tenant AND abs(hashtext(id)) % 10 < 6
    """,
]


async def stats_query(settings: Settings) -> dict[str, Any]:
    redis = RedisService.from_settings(settings)
    engine = create_engine(settings)
    stats = StatsService(engine, redis, settings)
    params = {"tenant": STATS_TENANT, "sessions": STATS_SESSIONS}
    try:
        async with engine.begin() as conn:
            for statement in _GENERATE:
                await conn.execute(text(statement), params)
        async with engine.connect() as conn:
            # Steady state: autovacuum has set the visibility map after a bulk load.
            await conn.execute(text("COMMIT"))
            await conn.execute(text("VACUUM ANALYZE"))
            total = (
                await conn.execute(
                    text("SELECT count(*) FROM messages WHERE tenant_id = :t"),
                    {"t": STATS_TENANT},
                )
            ).scalar_one()

        async def timed(fn: Any, rounds: int) -> float:
            samples = []
            for _ in range(rounds):
                started = time.perf_counter()
                await fn()
                samples.append((time.perf_counter() - started) * 1000)
            return statistics.median(samples)

        result = await stats.compute(STATS_TENANT, 7)
        assert result.messages_total == total, (result.messages_total, total)
        await stats.compute(STATS_TENANT, 7)  # warm the pool and the cache of plans

        async def raw() -> None:
            async with engine.connect() as conn:
                await stats_repo.tenant_stats_from_messages(conn, STATS_TENANT, result.since)

        rollup_ms = await timed(lambda: stats.compute(STATS_TENANT, 7), 20)
        raw_ms = await timed(raw, 5)
        await stats.tenant_stats(STATS_TENANT, 7)
        cached_ms = await timed(lambda: stats.tenant_stats(STATS_TENANT, 7), 50)
        return {"messages": total, "rollup_ms": rollup_ms, "raw_ms": raw_ms, "cached_ms": cached_ms}
    finally:
        keys = [k async for k in redis.scan_keys(f"{settings.key_prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await engine.dispose()
        await redis.close()


async def run() -> dict[str, Any]:
    base = bench_settings()
    server, _ = _pg(base.database_url)
    name = f"triage_bench_{uuid.uuid4().hex[:8]}"
    url = base.database_url.rsplit("/", 1)[0] + f"/{name}"
    settings = bench_settings(database_url=url, key_prefix=base.key_prefix)
    await _admin(server, f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(_migrate, url)
        return {
            "snapshots": await snapshot_throughput(settings),
            "stats": await stats_query(settings),
        }
    finally:
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(result: dict[str, Any]) -> str:
    s, q = result["snapshots"], result["stats"]
    return "\n".join(
        [
            f"Snapshots into PostgreSQL: {SESSIONS:,} sessions x {MESSAGES} messages "
            f"({s['rows']:,} message rows each way)",
            f"{'mode':>22} {'seconds':>8} {'rows/s':>9}",
            f"{'batched (' + str(BATCH) + '/tx)':>22} {s['batched_s']:>8.2f} "
            f"{s['batched_rows_s']:>9.0f}",
            f"{'one by one':>22} {s['single_s']:>8.2f} {s['single_rows_s']:>9.0f}",
            f"{'speed-up':>22} {s['batched_rows_s'] / s['single_rows_s']:>17.1f}x",
            "",
            f"Stats for one tenant holding {q['messages']:,} messages (7 days, median)",
            f"{'rollup + indexes (API)':>28} {q['rollup_ms']:>8.1f} ms",
            f"{'counting message rows':>28} {q['raw_ms']:>8.1f} ms",
            f"{'cached (Redis hit)':>28} {q['cached_ms']:>8.2f} ms",
        ]
    )
