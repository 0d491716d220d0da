"""HybridConversationService against real Redis and PostgreSQL (task bodies called directly)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.auth import Principal
from backend.core.errors import SessionNotFound
from backend.durability.repository import Snapshot
from backend.durability.service import HybridConversationService
from backend.state.service import ConversationStateManager
from tests.durability.conftest import chat, drop_hot, new_id, rows, triage

TENANT = "escritorio-1"


async def all_rows(engine: AsyncEngine, sid: str) -> tuple[list, list, list]:
    sessions = await rows(engine, "SELECT * FROM sessions WHERE id = :id", id=sid)
    messages = await rows(
        engine, "SELECT * FROM messages WHERE session_id = :id ORDER BY seq", id=sid
    )
    activity = await rows(
        engine, "SELECT * FROM session_daily_activity WHERE session_id = :id", id=sid
    )
    return sessions, messages, activity


async def test_flush_writes_sessions_and_every_message_then_clears_the_dirty_set(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    a, b = new_id(), new_id()
    await chat(manager, a, 5)
    await chat(manager, b, 3)
    await triage(manager, b, {"area": "trabalhista", "urgency": "alta"}, TENANT)

    report = await hybrid.flush_dirty(batch_size=1)

    assert report.sessions_written == 2 and report.messages_written == 8
    assert await manager.redis.client.zcard(manager.keys.dirty()) == 0
    (row,) = await rows(
        engine, "SELECT version, message_count, user_id FROM sessions WHERE id = :id", id=a
    )
    assert tuple(row) == (5, 5, "ana")
    seqs = await rows(
        engine, "SELECT seq, role, metadata FROM messages WHERE session_id = :id ORDER BY seq", id=a
    )
    assert [s.seq for s in seqs] == [1, 2, 3, 4, 5]
    assert seqs[1].role == "assistant" and seqs[1].metadata == {"i": 1}
    (orch,) = await rows(
        engine, "SELECT area, urgency, triaged_at FROM orchestrations WHERE session_id = :id", id=b
    )
    assert orch.area == "trabalhista" and orch.urgency == "alta" and orch.triaged_at is not None
    (activity,) = await rows(
        engine, "SELECT messages FROM session_daily_activity WHERE session_id = :id", id=a
    )
    assert activity.messages == 5


async def test_the_same_snapshot_twice_changes_nothing(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    sid = new_id()
    await chat(manager, sid, 4)
    await hybrid.snapshot_sessions([sid])
    before = await all_rows(engine, sid)

    report, _ = await hybrid.snapshot_sessions([sid])
    await hybrid.snapshot_sessions([sid])

    assert report.sessions_written == 0 and report.messages_written == 0
    assert await all_rows(engine, sid) == before


async def test_an_older_snapshot_never_overwrites_a_newer_row(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    sid = new_id()
    old = await chat(manager, sid, 2)
    await chat(manager, sid, 1)  # version 3
    await hybrid.snapshot_sessions([sid])

    async with engine.begin() as conn:
        from backend.durability.repository import write_snapshots

        report = await write_snapshots(conn, [Snapshot.of(old)], retention=timedelta(days=1))

    assert report.sessions_written == 0
    (row,) = await rows(
        engine, "SELECT version, message_count FROM sessions WHERE id = :id", id=sid
    )
    assert tuple(row) == (3, 3)


async def test_a_write_after_the_snapshot_keeps_the_session_dirty(
    manager: ConversationStateManager, hybrid: HybridConversationService
) -> None:
    sid = new_id()
    await chat(manager, sid, 1)
    _, snapshots = await hybrid.snapshot_sessions([sid])
    await chat(manager, sid, 1)  # lands between the snapshot and the release

    requeued = await hybrid._release({sid: (snapshots[sid].head.version, 0)})

    assert requeued == 1
    assert await manager.redis.client.zscore(manager.keys.dirty(), sid) is not None


async def test_every_write_after_a_release_is_snapshotted_again(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    """Writes skip the dirty mark while their session is marked already; a release must not
    leave one unmarked: each round of writes after a flush is taken by the next flush."""
    sid = new_id()
    for written in (3, 5, 6):
        await chat(manager, sid, written - await manager.get_version(sid))
        assert await manager.redis.client.zscore(manager.keys.dirty(), sid) is not None
        report = await hybrid.flush_dirty()
        assert report.sessions_written == 1
        assert await manager.redis.client.zscore(manager.keys.dirty(), sid) is None
        (row,) = await rows(engine, "SELECT version FROM sessions WHERE id = :id", id=sid)
        assert row.version == written


async def test_read_through_restores_the_last_window_with_its_version(
    manager: ConversationStateManager, hybrid: HybridConversationService, settings
) -> None:
    sid = new_id()
    total = settings.max_conversation_history + 20
    written = await chat(manager, sid, total, flush=hybrid)
    await hybrid.flush_dirty()
    await drop_hot(manager, sid)
    assert await manager.get_hot_conversation_state(sid) is None

    restored = await manager.get_conversation_state(sid)

    assert restored is not None
    assert restored.version == written.version == total
    assert restored.message_count == total
    assert [m.seq for m in restored.messages] == list(range(21, total + 1))
    # (`written` may hold more: the hot window keeps messages until a snapshot covers them.)
    assert restored.messages == written.messages[-settings.max_conversation_history :]
    # It is hot again, and a write continues from the restored version.
    assert (await manager.get_hot_conversation_state(sid)) == restored
    after = await chat(manager, sid, 1)
    assert after.version == total + 1 and after.messages[-1].seq == total + 1


async def test_a_flush_lets_the_hot_window_drop_what_postgres_now_holds(
    manager: ConversationStateManager, hybrid: HybridConversationService, settings
) -> None:
    sid = new_id()
    window = settings.max_conversation_history
    await chat(manager, sid, window + 10)  # no flush yet: all of them stay hot
    hot = await manager.get_hot_conversation_state(sid)
    assert hot is not None and hot.durable_seq == 0 and len(hot.messages) == window + 10

    await hybrid.flush_dirty()
    hot = await manager.get_hot_conversation_state(sid)
    assert hot is not None and hot.durable_seq == window + 10
    after = await chat(manager, sid, 1)
    assert len(after.messages) == window and after.messages[-1].seq == window + 11


async def test_restore_never_brings_back_an_older_version(
    manager: ConversationStateManager, hybrid: HybridConversationService
) -> None:
    sid = new_id()
    await chat(manager, sid, 2)
    await hybrid.flush_dirty()
    newer = await chat(manager, sid, 1)  # Redis holds v3, PostgreSQL v2

    result = await hybrid.restore(sid)

    assert result is not None and result.version == newer.version == 3


async def test_orchestration_comes_back_with_the_conversation(
    manager: ConversationStateManager, hybrid: HybridConversationService
) -> None:
    sid = new_id()
    await chat(manager, sid, 2)
    orch = await triage(manager, sid, {"area": "consumidor", "urgency": "baixa"}, TENANT)
    await hybrid.flush_dirty()
    await drop_hot(manager, sid)

    restored = await manager.get_orchestration_state(sid)

    assert restored is not None and restored.version == orch.version
    assert restored.triage_result == {"area": "consumidor", "urgency": "baixa"}
    assert (await manager.get_hot_conversation_state(sid)) is not None


async def test_unknown_session_is_not_restored(
    manager: ConversationStateManager, hybrid: HybridConversationService
) -> None:
    assert await manager.get_conversation_state(new_id()) is None


async def test_delete_snapshots_what_redis_holds_and_marks_inactive(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    sid = new_id()
    await chat(manager, sid, 3)  # never flushed

    assert await manager.delete_session(sid)

    (row,) = await rows(engine, "SELECT version, inactive_at FROM sessions WHERE id = :id", id=sid)
    assert row.version == 3 and row.inactive_at is not None
    assert len(await rows(engine, "SELECT 1 FROM messages WHERE session_id = :id", id=sid)) == 3
    # Deleted: not served again, by any route reading through the manager.
    assert await manager.get_conversation_state(sid) is None


async def test_purge_leaves_nothing_in_any_tier_and_a_late_snapshot_cannot_resurrect_it(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    sid = new_id()
    await chat(manager, sid, 3)
    await triage(manager, sid, {"area": "familia", "urgency": "media"}, TENANT)
    _, snapshots = await hybrid.snapshot_sessions([sid])
    await hybrid.archive.store.write(sid, {"stray": True})

    report = await hybrid.purge(sid)

    assert (report.hot, report.warm, report.cold) == (True, True, True)
    assert [k async for k in manager.redis.scan_keys(f"{manager.keys.prefix}:*{sid}*")] == []
    assert await manager.redis.client.zscore(manager.keys.dirty(), sid) is None
    for table, column in [
        ("sessions", "id"),
        ("messages", "session_id"),
        ("orchestrations", "session_id"),
        ("session_daily_activity", "session_id"),
        ("archives", "session_id"),
        ("summaries", "session_id"),
    ]:
        assert await rows(engine, f"SELECT 1 FROM {table} WHERE {column} = :id", id=sid) == []
    assert not await hybrid.archive.store.exists(sid)
    # A snapshot that read Redis before the purge and commits after it writes nothing.
    await hybrid._write([snapshots[sid]])
    assert await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=sid) == []
    assert await manager.get_conversation_state(sid) is None


async def test_archive_moves_inactive_sessions_to_files_and_reads_them_back_whole(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    cold, live = new_id(), new_id()
    written = await chat(manager, cold, 130, flush=hybrid)
    await chat(manager, live, 2)
    await hybrid.flush_dirty()
    await drop_hot(manager, cold)
    later = datetime.now(UTC) + timedelta(days=31)

    while await hybrid.archive_inactive_sessions(now=later):
        pass  # (other tests' sessions in this database are archived too)

    assert await hybrid.archive.store.exists(cold)
    assert not await hybrid.archive.store.exists(live)  # hot: left alone
    assert await rows(engine, "SELECT 1 FROM messages WHERE session_id = :id", id=cold) == []
    (index,) = await rows(
        engine, "SELECT message_count, version FROM archives WHERE session_id = :id", id=cold
    )
    assert tuple(index) == (130, 130)

    restored = await manager.get_conversation_state(cold)

    assert restored is not None and restored.version == written.version
    assert restored.messages == written.messages[-100:]
    seqs = await rows(
        engine, "SELECT seq FROM messages WHERE session_id = :id ORDER BY seq", id=cold
    )
    assert [r.seq for r in seqs] == list(range(1, 131))
    assert not await hybrid.archive.store.exists(cold)
    (row,) = await rows(engine, "SELECT archived_at FROM sessions WHERE id = :id", id=cold)
    assert row.archived_at is None


async def test_message_paging_walks_back_through_hot_and_warm(
    manager: ConversationStateManager, hybrid: HybridConversationService, settings
) -> None:
    sid = new_id()
    total = settings.max_conversation_history + 30  # 130: seqs 31..130 hot, 1..30 warm only
    await chat(manager, sid, total, flush=hybrid)
    await hybrid.flush_dirty()
    me = Principal(user_id="ana", tenant_id=TENANT)

    seen: list[int] = []
    before = None
    while True:
        page = await hybrid.page_messages(me, sid, before=before, limit=50)
        seen = [m.seq for m in page.items] + seen
        if page.next_before is None:
            break
        before = page.next_before

    assert seen == list(range(1, total + 1))
    with pytest.raises(SessionNotFound):
        await hybrid.page_messages(Principal("bruno", TENANT), sid, before=None, limit=10)


async def test_cleanup_purges_sessions_past_retention(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    sid = new_id()
    await chat(manager, sid, 2)
    await hybrid.flush_dirty()
    far = datetime.now(UTC) + timedelta(days=hybrid.settings.data_retention_days + 1)

    result = await hybrid.cleanup_expired(now=far)

    assert result["purged"] >= 1
    assert await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=sid) == []
    assert await manager.get_hot_conversation_state(sid) is None


async def test_a_document_postgres_cannot_read_does_not_block_the_others(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    good, bad = new_id(), new_id()
    await chat(manager, good, 2)
    await chat(manager, bad, 2)
    # Corrupt one stored message the way only a bug or a hand edit could.
    key = manager.keys.conversation(bad)
    doc = await manager.redis.client.hget(key, "doc")
    await manager.redis.client.hset(key, "doc", doc.replace('"seq":2', '"seq":"dois"'))

    report = await hybrid.flush_dirty()

    assert report.sessions_written >= 1
    assert len(await rows(engine, "SELECT 1 FROM messages WHERE session_id = :id", id=good)) == 2
    assert await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=bad) == []
    assert await manager.redis.client.zscore(manager.keys.dirty(), good) is None
    # The culprit is kept dirty and recorded as refused, never dropped.
    assert await manager.redis.client.zscore(manager.keys.dirty(), bad) is not None
    refused = await hybrid.refused.get(bad)
    assert refused is not None and refused.code == "22P02"


async def test_session_listing_merges_hot_and_warm_newest_first(
    manager: ConversationStateManager, hybrid: HybridConversationService
) -> None:
    user, tenant = f"u-{new_id()[:8]}", TENANT
    warm_only, both, hot_only, deleted = new_id(), new_id(), new_id(), new_id()
    for sid in (warm_only, both, deleted):
        await chat(manager, sid, 1, user=user)
    await hybrid.flush_dirty()
    await drop_hot(manager, warm_only)
    await manager.delete_session(deleted)
    newer = await chat(manager, both, 1, user=user)  # Redis ahead of PostgreSQL
    await chat(manager, hot_only, 1, user=user)  # not snapshotted yet

    page = await hybrid.list_sessions(tenant, user, limit=10)

    assert [s.session_id for s in page.items] == [hot_only, both, warm_only]
    assert page.items[1].version == newer.version and page.total == 3
    second = await hybrid.list_sessions(tenant, user, offset=2, limit=10)
    assert [s.session_id for s in second.items] == [warm_only]


async def test_two_flushes_at_once_write_every_message_exactly_once(
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
    settings,
) -> None:
    from backend.core.db import create_engine

    tenant = f"t-{new_id()[:8]}"
    ids = [new_id() for _ in range(40)]
    for sid in ids:
        await chat(manager, sid, 3, tenant=tenant)
    other_engine = create_engine(settings, pool_size=2)
    other = HybridConversationService(manager, other_engine, settings)
    try:
        # Two beats firing together (two workers), small batches so they overlap.
        await asyncio.gather(hybrid.flush_dirty(batch_size=7), other.flush_dirty(batch_size=7))
    finally:
        await other_engine.dispose()

    (count,) = await rows(engine, "SELECT count(*) FROM messages WHERE tenant_id = :t", t=tenant)
    (rolled,) = await rows(
        engine, "SELECT sum(messages) FROM session_daily_activity WHERE tenant_id = :t", t=tenant
    )
    assert count[0] == rolled[0] == 120
    assert await manager.redis.client.zcard(manager.keys.dirty()) == 0
