"""The cold tier on S3-compatible object storage, against moto's S3 server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.archive.backends import ArchiveBackend, S3Backend
from backend.archive.service import ArchiveUnavailable, ArchiveWriteFailed
from backend.core.auth import create_token
from backend.core.config import Settings
from backend.durability.service import HybridConversationService
from backend.state.service import ConversationStateManager
from tests.archive.conftest import S3Server, s3_settings
from tests.conftest import client_for
from tests.durability.conftest import chat, drop_hot, new_id, rows
from tests.redis_cluster import free_port

TENANT = "escritorio-1"
_dates = iter(range(10_000))


def long_ago() -> datetime:
    """A last-activity date older than any other session's (each call goes further back): a pass
    cut off just after it moves only this test's sessions."""
    return datetime(1990, 1, 1, tzinfo=UTC) - timedelta(days=40 * next(_dates))


async def cold_sessions(
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
    count: int,
    messages: int = 3,
) -> tuple[list[str], datetime]:
    """`count` sessions in PostgreSQL only, inactive since a date of their own; returns the
    ids and a `now` at which an archive pass takes exactly them."""
    ids = [new_id() for _ in range(count)]
    for sid in ids:
        await chat(manager, sid, messages)
    await hybrid.flush_dirty()
    for sid in ids:
        await drop_hot(manager, sid)
    when = long_ago()
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE sessions SET updated_at = :when WHERE id = ANY(:ids)"),
            {"when": when, "ids": ids},
        )
    return ids, when + timedelta(days=31)


async def message_count(engine: AsyncEngine, sid: str) -> int:
    return len(await rows(engine, "SELECT 1 FROM messages WHERE session_id = :id", id=sid))


async def index_row(engine: AsyncEngine, sid: str) -> tuple[str, str] | None:
    found = await rows(engine, "SELECT backend, key FROM archives WHERE session_id = :id", id=sid)
    return (found[0].backend, found[0].key) if found else None


async def test_sessions_archive_to_the_bucket_and_come_back_whole(
    s3: S3Server,
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
) -> None:
    (sid,), now = await cold_sessions(manager, hybrid, engine, 1, messages=7)
    written = await rows(
        engine, "SELECT seq, content FROM messages WHERE session_id = :id ORDER BY seq", id=sid
    )

    assert await hybrid.archive_inactive_sessions(now=now) == 1

    key = f"{sid[:2]}/{sid}.json.gz"
    assert await index_row(engine, sid) == ("s3", key)
    assert s3.keys() == [f"cold/{key}"]
    assert await message_count(engine, sid) == 0

    restored = await manager.get_conversation_state(sid)

    assert restored is not None and len(restored.messages) == 7
    back = await rows(
        engine, "SELECT seq, content FROM messages WHERE session_id = :id ORDER BY seq", id=sid
    )
    assert back == written
    assert await index_row(engine, sid) is None
    assert s3.keys() == []


class ResetAfterFirstPut:
    """The real S3 backend, but the server loses the bucket after the first object lands:
    every later PUT of the batch gets the server's real NoSuchBucket answer."""

    def __init__(self, inner: ArchiveBackend, s3: S3Server) -> None:
        self.inner = inner
        self.name = inner.name
        self.s3 = s3
        self.puts = 0

    def location(self, key: str) -> str:
        return self.inner.location(key)

    async def put(self, key: str, payload: bytes) -> None:
        await self.inner.put(key, payload)
        self.puts += 1
        if self.puts == 1:
            self.s3.reset()

    async def get(self, key: str) -> bytes:
        return await self.inner.get(key)

    async def delete(self, key: str) -> bool:
        return await self.inner.delete(key)


async def test_a_failed_upload_mid_batch_moves_nothing_and_the_next_pass_does(
    s3: S3Server,
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
) -> None:
    ids, now = await cold_sessions(manager, hybrid, engine, 3)
    store = hybrid.archive.store
    real = store.default
    failing = ResetAfterFirstPut(real, s3)
    store.default = store.backends["s3"] = failing

    with pytest.raises(ArchiveWriteFailed):
        await hybrid.archive_inactive_sessions(now=now)

    assert failing.puts == 1  # one object was uploaded before the failure
    for sid in ids:
        assert await message_count(engine, sid) == 3
        assert await index_row(engine, sid) is None
    archived = await rows(
        engine, "SELECT 1 FROM sessions WHERE id = ANY(:ids) AND archived_at IS NOT NULL", ids=ids
    )
    assert archived == []

    # The bucket is back: the next pass moves the whole batch.
    s3.client.create_bucket(Bucket=s3.bucket)
    store.default = store.backends["s3"] = real
    assert await hybrid.archive_inactive_sessions(now=now) == 3
    for sid in ids:
        assert await message_count(engine, sid) == 0
        assert await index_row(engine, sid) == ("s3", f"{sid[:2]}/{sid}.json.gz")
    assert len(s3.keys()) == 3


async def test_a_missing_object_is_a_clear_error_and_deletes_nothing(
    s3: S3Server,
    settings: Settings,
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
) -> None:
    (sid,), now = await cold_sessions(manager, hybrid, engine, 1)
    assert await hybrid.archive_inactive_sessions(now=now) == 1
    s3.client.delete_object(Bucket=s3.bucket, Key=f"cold/{sid[:2]}/{sid}.json.gz")
    headers = {"Authorization": f"Bearer {create_token(settings, 'ana', TENANT)}"}

    async for client in client_for(settings):
        response = await client.get(f"/api/conversations/sessions/{sid}", headers=headers)

        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "archive_unavailable"
        assert "missing from the s3 backend" in error["message"]

    assert await index_row(engine, sid) == ("s3", f"{sid[:2]}/{sid}.json.gz")
    (session,) = await rows(
        engine, "SELECT archived_at, message_count FROM sessions WHERE id = :id", id=sid
    )
    assert session.archived_at is not None and session.message_count == 3


async def test_purge_removes_the_object_from_the_bucket(
    s3: S3Server,
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
) -> None:
    (sid,), now = await cold_sessions(manager, hybrid, engine, 1)
    assert await hybrid.archive_inactive_sessions(now=now) == 1
    assert s3.keys() == [f"cold/{sid[:2]}/{sid}.json.gz"]

    report = await hybrid.purge(sid)

    assert (report.warm, report.cold) == (True, True)
    assert s3.keys() == []
    assert await rows(engine, "SELECT 1 FROM archives WHERE session_id = :id", id=sid) == []


async def test_archives_stay_readable_after_switching_the_default_backend(
    s3: S3Server,
    tmp_path: Path,
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
) -> None:
    local = HybridConversationService(
        manager, engine, s3_settings(s3, tmp_path, archive_backend="local")
    )
    (on_disk,), now = await cold_sessions(manager, hybrid, engine, 1, messages=4)
    assert await local.archive_inactive_sessions(now=now) == 1
    (in_bucket,), now = await cold_sessions(manager, hybrid, engine, 1, messages=5)
    assert await hybrid.archive_inactive_sessions(now=now) == 1
    assert (await index_row(engine, on_disk) or ("",))[0] == "local"
    assert (await index_row(engine, in_bucket) or ("",))[0] == "s3"
    assert (tmp_path / "archive" / on_disk[:2] / f"{on_disk}.json.gz").exists()

    # Default now s3: the local archive still comes back; default local: so does the s3 one.
    assert await hybrid.archive.restore_to_warm(on_disk)
    assert await local.archive.restore_to_warm(in_bucket)

    assert await message_count(engine, on_disk) == 4
    assert await message_count(engine, in_bucket) == 5
    assert not (tmp_path / "archive" / on_disk[:2] / f"{on_disk}.json.gz").exists()
    assert s3.keys() == []


async def test_a_purge_while_the_store_is_unreachable_says_so_and_can_be_run_again(
    s3: S3Server,
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
) -> None:
    (sid,), now = await cold_sessions(manager, hybrid, engine, 1)
    assert await hybrid.archive_inactive_sessions(now=now) == 1
    store = hybrid.archive.store
    real = store.backends["s3"]
    # The same bucket behind an endpoint nobody listens on: connections are refused.
    store.backends["s3"] = S3Backend(s3.bucket, "cold", f"http://127.0.0.1:{free_port()}")

    with pytest.raises(ArchiveUnavailable, match="run `triage purge"):
        await hybrid.purge(sid)

    assert await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=sid) == []
    assert s3.keys() == [f"cold/{sid[:2]}/{sid}.json.gz"]
    store.backends["s3"] = real
    report = await hybrid.purge(sid)
    assert report.cold
    assert s3.keys() == []
