"""A session PostgreSQL refuses is never dropped: kept dirty with a backoff, counted, visible,
never cleared from Redis by DELETE or eviction, and written once fixed.

The refused value is written straight into Redis (as data stored before text was checked at
the boundary, or a hand edit, would be), bypassing the API that now refuses it.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.cli.stats import gather_stats
from backend.core.config import Settings
from backend.core.db import DatabaseUnavailable
from backend.durability.refused import SessionNotDurable
from backend.durability.service import HybridConversationService
from backend.state.eviction import REFUSED, SessionEvictor
from backend.state.service import ConversationStateManager
from tests.conftest import client_for
from tests.durability.conftest import chat, new_id, rows
from tests.sse_helpers import bearer

CLEAN = "mensagem 2: fui demitido sem justa causa"
POISONED = "mensagem 2: fui demitido \\u0000 sem justa causa"  # as it sits in the JSON document


async def poison(manager: ConversationStateManager, session_id: str) -> str:
    """Put a NUL into message 2 of the stored document; returns the clean document."""
    key = manager.keys.conversation(session_id)
    doc = await manager.redis.client.hget(key, "doc")
    assert CLEAN in doc
    await manager.redis.client.hset(key, "doc", doc.replace(CLEAN, POISONED))
    return str(doc)


async def message_rows(engine: AsyncEngine, session_id: str) -> list[int]:
    found = await rows(
        engine, "SELECT seq FROM messages WHERE session_id = :id ORDER BY seq", id=session_id
    )
    return [r.seq for r in found]


async def test_a_refused_session_is_kept_counted_and_written_once_fixed(
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    client, keys = manager.redis.client, manager.keys
    first, bad, last = new_id(), new_id(), new_id()
    await chat(manager, first, 2)
    await chat(manager, bad, 3, user="bia")
    await chat(manager, last, 2)
    clean_doc = await poison(manager, bad)

    report = await hybrid.flush_dirty()

    # The rest of the batch is snapshotted; the refused one is kept, not dropped.
    assert (report.refused, report.sessions_written) == (1, 2)
    assert await message_rows(engine, first) == [1, 2]
    assert await message_rows(engine, last) == [1, 2]
    assert await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=bad) == []
    assert await client.zrange(keys.dirty(), 0, -1) == [bad]
    next_attempt = await client.zscore(keys.dirty(), bad)
    assert next_attempt > time.time() + settings.snapshot_retry_seconds / 2
    refused = await hybrid.refused.get(bad)
    assert refused is not None
    assert (refused.code, refused.attempts) == ("22P05", 1)
    assert "Unicode" in refused.reason and "demitido" not in refused.reason
    assert refused.next_attempt_at == pytest.approx(next_attempt)
    # Its keys no longer expire: an idle refused session is not lost to its TTL.
    assert await client.ttl(keys.conversation(bad)) == -1

    # Visible to operators.
    stats = await gather_stats(manager, settings)
    assert stats["refused_sessions"] == 1 and stats["dirty_sessions"] == 1
    assert [e["session_id"] for e in stats["refused"]] == [bad]
    # Not retried before its backoff is over (the next beat takes nothing).
    assert (await hybrid.flush_dirty()).sessions == 0
    assert (await hybrid.refused.get(bad)).attempts == 1  # type: ignore[union-attr]

    # Neither eviction nor DELETE clears it from Redis.
    assert await SessionEvictor(manager, min_idle=0).evict(bad) == REFUSED
    with pytest.raises(SessionNotDurable):
        await manager.delete_session(bad)
    state = await manager.get_conversation_state(bad)
    assert state is not None and [m.seq for m in state.messages] == [1, 2, 3]
    assert (await hybrid.refused.get(bad)).attempts == 2  # type: ignore[union-attr]

    # Fixed (the operator puts the clean text back), then flushed: durable, no longer refused.
    await client.hset(keys.conversation(bad), "doc", clean_doc)
    fixed = await hybrid.flush_dirty(due_only=False)
    assert (fixed.sessions_written, fixed.recovered, fixed.refused) == (1, 1, 0)
    assert await message_rows(engine, bad) == [1, 2, 3]
    assert await hybrid.refused.get(bad) is None
    assert await client.zcard(keys.dirty()) == 0
    assert 0 < await client.ttl(keys.conversation(bad)) <= settings.conversation_ttl
    assert (await gather_stats(manager, settings))["refused_sessions"] == 0
    # Now DELETE goes through.
    assert await manager.delete_session(bad)


async def test_backoff_doubles_up_to_its_cap(
    manager: ConversationStateManager, hybrid: HybridConversationService
) -> None:
    sid = new_id()
    await chat(manager, sid, 2)
    await poison(manager, sid)
    waits = []
    for _ in range(9):
        await hybrid.flush_dirty(due_only=False)
        refused = await hybrid.refused.get(sid)
        assert refused is not None
        waits.append(round(refused.next_attempt_at - refused.last_refused_at))
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert refused.attempts == 9


async def test_an_unreadable_document_is_refused_too(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    good, bad = new_id(), new_id()
    await chat(manager, good, 2)
    await chat(manager, bad, 2)
    await manager.redis.client.hset(manager.keys.conversation(bad), "doc", '{"not": "a session"}')

    report = await hybrid.flush_dirty()

    assert (report.sessions_written, report.refused) == (1, 1)
    refused = await hybrid.refused.get(bad)
    assert refused is not None and refused.code == "invalid_document"
    assert await manager.redis.client.zscore(manager.keys.dirty(), bad) is not None
    assert await message_rows(engine, good) == [1, 2]


async def test_delete_over_http_is_409_and_keeps_the_session(
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    settings: Settings,
) -> None:
    kept, other = new_id(), new_id()
    await chat(manager, kept, 3, user="alice", tenant="acme")
    await chat(manager, other, 2, user="alice", tenant="acme")
    await poison(manager, kept)

    async for api in client_for(settings):
        url = f"/api/conversations/sessions/{kept}"
        response = await api.delete(url, headers=bearer())
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "session_not_durable"
        assert "PostgreSQL" in error["message"]
        assert int(response.headers["retry-after"]) >= 1
        history = await api.get(url, headers=bearer())
        assert history.status_code == 200 and history.json()["message_count"] == 3

        # Deleting them all deletes the other one and says which one was kept.
        everything = await api.delete("/api/conversations/sessions", headers=bearer())
        assert everything.status_code == 200
        assert everything.json() == {"deleted": 1, "not_durable": [kept]}
        assert (await api.get(url, headers=bearer())).status_code == 200
        gone = await api.get(f"/api/conversations/sessions/{other}", headers=bearer())
        assert gone.status_code == 404

        # /health/celery reports the refused count (in its 503 when no worker answers, as in
        # this test, unless a worker of another test process shares the broker).
        health = (await api.get("/health/celery")).json()
        assert health.get("error", health)["refused_sessions"] == 1


async def test_a_batch_failing_for_another_reason_is_retried_whole_not_refused(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    """Only refusals of the data isolate a session; an outage fails the flush, and nothing is
    recorded as refused or released (the next run takes the same sessions)."""
    sid = new_id()
    await chat(manager, sid, 2)
    await engine.dispose()
    hybrid.engine = _unreachable_engine(hybrid.settings)
    try:
        with pytest.raises(DatabaseUnavailable):
            await hybrid.flush_dirty()
    finally:
        await hybrid.engine.dispose()
    assert await hybrid.refused.count() == 0
    assert await manager.redis.client.zscore(manager.keys.dirty(), sid) is not None


def _unreachable_engine(settings: Settings) -> AsyncEngine:
    from backend.core.db import create_engine
    from tests.redis_cluster import free_port

    url = settings.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{free_port()}")
    assert url != settings.database_url
    return create_engine(settings.model_copy(update={"database_url": url}), pool_size=1)


async def test_a_document_that_is_not_utf8_is_refused_alone(
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    """Bytes no decoder accepts (an encoded lone surrogate) used to fail the whole flush."""
    import redis.asyncio

    good, bad = new_id(), new_id()
    await chat(manager, good, 2)
    await chat(manager, bad, 2)
    raw = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        key = manager.keys.conversation(bad)
        doc = await raw.hget(key, "doc")
        await raw.hset(key, "doc", doc.replace(b"demitido", b"demi\xed\xa0\x80tido"))
    finally:
        await raw.aclose()

    report = await hybrid.flush_dirty()

    assert (report.sessions_written, report.refused) == (1, 1)
    assert await message_rows(engine, good) == [1, 2]
    refused = await hybrid.refused.get(bad)
    assert refused is not None and refused.code == "invalid_document"
    assert await manager.redis.client.zscore(manager.keys.dirty(), bad) is not None


async def test_delete_of_a_session_not_in_the_dirty_set_is_refused_too_and_purge_forgets_it(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    """DELETE snapshots first whatever the dirty set says: a session poisoned after its last
    snapshot (no dirty mark) is kept, recorded and made dirty; a purge erases it everywhere."""
    sid = new_id()
    await chat(manager, sid, 3)
    await hybrid.flush_dirty()
    assert await message_rows(engine, sid) == [1, 2, 3]
    await poison(manager, sid)
    doc = await manager.redis.client.hget(manager.keys.conversation(sid), "doc")
    # A newer version, so PostgreSQL's copy is older than Redis's and the snapshot must run.
    await manager.redis.client.hset(
        manager.keys.conversation(sid), "doc", doc.replace('"version":3', '"version":4')
    )
    assert await manager.redis.client.zscore(manager.keys.dirty(), sid) is None

    with pytest.raises(SessionNotDurable):
        await manager.delete_session(sid)

    assert await manager.get_conversation_state(sid) is not None
    assert await hybrid.refused.count() == 1
    assert await manager.redis.client.zscore(manager.keys.dirty(), sid) is not None

    report = await hybrid.purge(sid)
    assert report.hot and report.warm
    assert await hybrid.refused.count() == 0
    assert await manager.redis.client.zcard(manager.keys.dirty()) == 0


async def test_two_refused_in_a_batch_of_twenty_leave_the_other_eighteen_written(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    ids = [new_id() for _ in range(20)]
    for sid in ids:
        await chat(manager, sid, 2)
    bad = {ids[3], ids[16]}
    for sid in bad:
        await poison(manager, sid)

    report = await hybrid.flush_dirty(batch_size=20)

    assert (report.batches, report.sessions_written, report.refused) == (1, 18, 2)
    for sid in ids:
        assert await message_rows(engine, sid) == ([] if sid in bad else [1, 2])
    assert set(await manager.redis.client.zrange(manager.keys.dirty(), 0, -1)) == bad
    assert {r.session_id for r in await hybrid.refused.entries()} == bad
