"""Cold-tier benchmark: archive and restore throughput for 1,000 sessions on each backend.

1,000 sessions x 20 messages are generated in SQL, then moved to the cold tier by the code the
hourly task runs (`ArchiveService.archive_inactive`, ARCHIVE_BATCH_SIZE sessions per
transaction) and brought back one session at a time (`restore_to_warm`, what a read-through
does), 8 at once as concurrent readers would. Once on the local directory (a temporary
directory here), once on S3-compatible storage: moto's S3 server in a process of its own on a
free loopback port (no real S3 can run here), so the S3 figures measure the client path and
the wire protocol, not the latency of a real bucket.

Runs in its own database (`triage_bench_<random>`, migrated, dropped at the end).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from sqlalchemy import text

from backend.archive.service import ArchiveService
from backend.core.config import Settings
from backend.core.db import create_engine
from bench.common import bench_settings
from bench.durability import _admin, _migrate, _pg

SESSIONS = 1_000
MESSAGES = 20
RESTORE_CONCURRENCY = 8

_GENERATE = [
    """
    INSERT INTO sessions (id, user_id, tenant_id, kind, status, version, message_count, state,
                          created_at, updated_at, expires_at)
    SELECT md5(:tenant || g), 'u' || (g % 100), :tenant, 'conversation', 'active', 20, 20,
           '{}', CAST(:when AS timestamptz), CAST(:when AS timestamptz),
           CAST(:when AS timestamptz) + interval '5 years'
    FROM generate_series(1, :sessions) AS g
    """,
    """
    INSERT INTO messages (session_id, seq, tenant_id, role, content, metadata, created_at)
    SELECT s.id, k, s.tenant_id, CASE WHEN k % 2 = 1 THEN 'user' ELSE 'assistant' END,
           'Mensagem ' || k || ': fui demitido e não recebi as verbas rescisórias nem o FGTS.',
           '{}', s.created_at + k * interval '30 seconds'
    FROM sessions s CROSS JOIN generate_series(1, :messages) AS k WHERE s.tenant_id = :tenant
    """,
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _no_hot_sessions(ids: list[str]) -> set[str]:
    return set()


async def _one_backend(settings: Settings, tenant: str, when: datetime) -> dict[str, Any]:
    engine = create_engine(settings)
    archive = ArchiveService(engine, settings)
    params = {"tenant": tenant, "when": when, "sessions": SESSIONS, "messages": MESSAGES}
    try:
        async with engine.begin() as conn:
            for statement in _GENERATE:
                await conn.execute(text(statement), params)
            ids = list(
                (
                    await conn.execute(
                        text("SELECT id FROM sessions WHERE tenant_id = :t"), {"t": tenant}
                    )
                ).scalars()
            )
        # Older than every session of an earlier run, newer than none: this pass takes only
        # this backend's sessions.
        now = when + timedelta(days=settings.archive_inactive_sessions_days + 1)
        started = time.perf_counter()
        moved = 0
        while batch := await archive.archive_inactive(_no_hot_sessions, now=now):
            moved += batch
        archived = time.perf_counter() - started
        assert moved == SESSIONS, moved

        gate = asyncio.Semaphore(RESTORE_CONCURRENCY)

        async def restore(sid: str) -> None:
            async with gate:
                assert await archive.restore_to_warm(sid)

        started = time.perf_counter()
        await asyncio.gather(*(restore(sid) for sid in ids))
        restored = time.perf_counter() - started
        async with engine.connect() as conn:
            back = (
                await conn.execute(
                    text("SELECT count(*) FROM messages WHERE tenant_id = :t"), {"t": tenant}
                )
            ).scalar_one()
        assert back == SESSIONS * MESSAGES, back
        return {"archive_s": archived, "restore_s": restored}
    finally:
        await engine.dispose()


async def _s3_server() -> tuple[asyncio.subprocess.Process, str]:
    """moto's S3 server in a process of its own (not a thread of this one: the figures would
    include its work on this process's GIL)."""
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "moto_server"),
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    return process, url


async def run() -> dict[str, Any]:
    base = bench_settings()
    server, _ = _pg(base.database_url)
    name = f"triage_bench_{uuid.uuid4().hex[:8]}"
    url = base.database_url.rsplit("/", 1)[0] + f"/{name}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    moto, s3_url = await _s3_server()
    # The standard AWS variables are how the service gets credentials; moto accepts any.
    aws = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in aws}
    os.environ.update(aws)
    try:
        await asyncio.to_thread(_migrate, url)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        # boto3 comes with moto (dev extras); the service itself never needs it.
        client = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
        await asyncio.to_thread(client.create_bucket, Bucket=bucket)
        results: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="triage-bench-archive-") as tmp:
            backends = {
                "local": bench_settings(database_url=url, archive_dir=tmp),
                "s3": bench_settings(
                    database_url=url,
                    archive_dir=tmp,
                    archive_backend="s3",
                    archive_s3_bucket=bucket,
                    archive_s3_endpoint_url=s3_url,
                ),
            }
            for i, (backend, settings) in enumerate(backends.items()):
                when = datetime(2000, 1, 1, tzinfo=UTC) - timedelta(days=365 * i)
                results[backend] = await _one_backend(settings, f"bench-{backend}", when)
        return results
    finally:
        moto.terminate()
        await moto.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(result: dict[str, Any]) -> str:
    lines = [
        f"Cold tier: {SESSIONS:,} sessions x {MESSAGES} messages, archived in batches and "
        f"restored {RESTORE_CONCURRENCY} at a time",
        f"{'backend':>8} {'archive s':>10} {'sessions/s':>11} {'restore s':>10} {'sessions/s':>11}",
    ]
    for backend, r in result.items():
        lines.append(
            f"{backend:>8} {r['archive_s']:>10.2f} {SESSIONS / r['archive_s']:>11.0f}"
            f" {r['restore_s']:>10.2f} {SESSIONS / r['restore_s']:>11.0f}"
        )
    return "\n".join(lines)
