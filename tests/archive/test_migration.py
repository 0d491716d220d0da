"""Migration 0002: archives indexed before object storage existed stay readable, as local files."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic import command
from backend.archive.service import ArchiveService
from backend.core.db import create_engine
from tests.conftest import ROOT, TEST_POSTGRES, _admin, make_settings


def upgrade(url: str, revision: str) -> None:
    config = Config(str(ROOT / "alembic.ini"), attributes={"configure_logger": False})
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, revision)


@pytest.fixture
async def old_database() -> AsyncIterator[str]:
    """A database of its own at revision 0001 (dropped after the test)."""
    name = f"triage_test_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+asyncpg://{TEST_POSTGRES}/{name}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(upgrade, url, "0001")
        yield url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_archives_from_before_0002_are_local_and_restore_after_the_upgrade(
    old_database: str, tmp_path: Path
) -> None:
    sid = uuid.uuid4().hex
    now = datetime.now(UTC)
    messages = [
        {"seq": i, "role": "user", "content": f"mensagem {i}", "metadata": {}, "created_at": now}
        for i in (1, 2)
    ]
    payload = gzip.compress(
        json.dumps(
            {"format": 1, "session": {"tenant_id": "t1"}, "messages": messages}, default=str
        ).encode()
    )
    path = tmp_path / "archive" / sid[:2] / f"{sid}.json.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    engine: AsyncEngine = create_engine(make_settings(database_url=old_database), pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO sessions (id, user_id, tenant_id, kind, status, version,"
                    " message_count, state, created_at, updated_at, expires_at, archived_at)"
                    " VALUES (:id, 'ana', 't1', 'conversation', 'active', 2, 2, '{}', :now, :now,"
                    " :now, :now)"
                ),
                {"id": sid, "now": now},
            )
            await conn.execute(
                text(
                    "INSERT INTO archives (session_id, tenant_id, path, version, message_count,"
                    " bytes, sha256, archived_at) VALUES (:id, 't1', :path, 2, 2, :bytes, :sha,"
                    " :now)"
                ),
                {
                    "id": sid,
                    "path": str(path),
                    "bytes": len(payload),
                    "sha": hashlib.sha256(payload).hexdigest(),
                    "now": now,
                },
            )
        await engine.dispose()

        await asyncio.to_thread(upgrade, old_database, "head")

        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT backend, key FROM archives WHERE session_id = :id"), {"id": sid}
                )
            ).one()
        assert tuple(row) == ("local", f"{sid[:2]}/{sid}.json.gz")

        # Even with S3 as the default now, the old archive is read from the local directory.
        settings = make_settings(
            database_url=old_database,
            archive_dir=str(tmp_path / "archive"),
            archive_backend="s3",
            archive_s3_bucket="not-used-by-this-read",
            archive_s3_endpoint_url="http://127.0.0.1:9",
        )
        assert await ArchiveService(engine, settings).restore_to_warm(sid)
        async with engine.connect() as conn:
            contents = (
                await conn.execute(
                    text("SELECT content FROM messages WHERE session_id = :id ORDER BY seq"),
                    {"id": sid},
                )
            ).scalars()
            assert list(contents) == ["mensagem 1", "mensagem 2"]
        assert not path.exists()
    finally:
        await engine.dispose()
