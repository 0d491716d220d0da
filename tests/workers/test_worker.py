"""Durability end to end: real worker processes, a private Redis, this run's PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.auth import Principal
from backend.core.config import Settings
from backend.durability.service import HybridConversationService
from backend.state.schemas import ConversationState
from backend.state.service import ConversationStateManager
from tests.durability.conftest import chat, drop_hot, new_id, rows, triage
from tests.workers.conftest import WorkerProcess
from workers.config import ARCHIVE_INACTIVE, SNAPSHOT_SESSION, create_celery_app

pytestmark = pytest.mark.e2e

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def celery_client(settings: Settings) -> Iterator[Celery]:
    app = create_celery_app(settings)
    try:
        yield app
    finally:
        app.close()


async def wait_for(check: Callable[[], Awaitable[bool]], guard: float, what: str) -> None:
    """Poll until `check` holds; `guard` (seconds) stops a hang, it is not a measured limit."""
    deadline = time.monotonic() + guard
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {guard}s")
        await asyncio.sleep(0.1)


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    return (await rows(engine, sql, **params))[0][0]


async def seed(
    manager: ConversationStateManager, tenant: str, sessions: int, messages: int
) -> list[str]:
    """Sessions of `messages` messages each, written in one versioned write per session."""
    ids = [new_id() for _ in range(sessions)]

    async def one(sid: str) -> None:
        state = ConversationState(session_id=sid, user_id="ana", tenant_id=tenant)
        for i in range(messages):
            state.append_message(
                "user" if i % 2 == 0 else "assistant",
                f"mensagem {i + 1} da sessão",
                max_history=manager.settings.max_conversation_history,
            )
        await manager.save_conversation_state(state)

    for start in range(0, sessions, 200):
        await asyncio.gather(*(one(sid) for sid in ids[start : start + 200]))
    return ids


@pytest.mark.parametrize("broker", ["redis", "sentinel"], indirect=True)
async def test_worker_snapshots_what_is_written_into_postgres(
    manager: ConversationStateManager, engine: AsyncEngine, start_worker: StartWorker
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    ids = [new_id() for _ in range(12)]
    for i, sid in enumerate(ids):
        await chat(manager, sid, i + 1, tenant=tenant)
    expected = sum(range(1, 13))

    start_worker()

    async def durable() -> bool:
        count = await scalar(engine, "SELECT count(*) FROM messages WHERE tenant_id = :t", t=tenant)
        return count == expected and await manager.redis.client.zcard(manager.keys.dirty()) == 0

    await wait_for(durable, 60, "the worker's beat-driven flush")
    (row,) = await rows(
        engine, "SELECT version, message_count, user_id FROM sessions WHERE id = :id", id=ids[-1]
    )
    assert tuple(row) == (12, 12, "ana")


@pytest.mark.parametrize("broker", ["redis", "sentinel"], indirect=True)
async def test_the_same_snapshot_task_delivered_twice_changes_nothing(
    manager: ConversationStateManager,
    engine: AsyncEngine,
    start_worker: StartWorker,
    celery_client: Celery,
) -> None:
    sid = new_id()
    await chat(manager, sid, 3)
    start_worker(beat=False)  # only the tasks sent here run

    async def deliver_twice_and_wait() -> None:
        task_id = f"snap-{sid}"
        for _ in range(2):
            celery_client.send_task(SNAPSHOT_SESSION, args=[sid], task_id=task_id)
        # One worker process, prefetch 1, FIFO queue: when the marker is durable, both
        # deliveries before it have run.
        marker = new_id()
        await chat(manager, marker, 1)
        celery_client.send_task(SNAPSHOT_SESSION, args=[marker])

        async def marker_durable() -> bool:
            return bool(await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=marker))

        await wait_for(marker_durable, 60, "the marker snapshot")

    async def state() -> list[Any]:
        return [
            await rows(engine, "SELECT * FROM sessions WHERE id = :id", id=sid),
            await rows(engine, "SELECT * FROM messages WHERE session_id = :id", id=sid),
            await rows(
                engine, "SELECT * FROM session_daily_activity WHERE session_id = :id", id=sid
            ),
        ]

    await deliver_twice_and_wait()
    first = await state()
    assert first[0][0].version == 3 and len(first[1]) == 3 and first[2][0].messages == 3

    await deliver_twice_and_wait()

    assert await state() == first


async def test_sigkill_mid_flush_then_another_worker_completes_without_duplicates(
    manager: ConversationStateManager, engine: AsyncEngine, start_worker: StartWorker
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    sessions, per_session = 3000, 20
    total = sessions * per_session
    await seed(manager, tenant, sessions, per_session)

    async def written() -> int:
        return int(
            await scalar(engine, "SELECT count(*) FROM messages WHERE tenant_id = :t", t=tenant)
        )

    async def some_written() -> bool:
        return await written() > 0

    first = start_worker()
    await wait_for(some_written, 60, "the first batch")
    first.kill()
    partial = await written()
    assert 0 < partial < total, "the worker was not killed in the middle of the flush"

    start_worker()

    async def complete() -> bool:
        return await written() == total and (
            await manager.redis.client.zcard(manager.keys.dirty()) == 0
        )

    await wait_for(complete, 120, "the second worker to finish the flush")
    assert (
        await scalar(engine, "SELECT count(*) FROM sessions WHERE tenant_id = :t", t=tenant)
        == sessions
    )
    broken = await scalar(
        engine,
        "SELECT count(*) FROM (SELECT session_id FROM messages WHERE tenant_id = :t"
        " GROUP BY session_id HAVING count(*) <> :n OR count(DISTINCT seq) <> :n"
        " OR min(seq) <> 1 OR max(seq) <> :n) AS x",
        t=tenant,
        n=per_session,
    )
    assert broken == 0
    # The stats rollup counted every message exactly once, across the kill.
    rolled = await scalar(
        engine, "SELECT sum(messages) FROM session_daily_activity WHERE tenant_id = :t", t=tenant
    )
    assert rolled == total


@pytest.mark.parametrize("broker", ["redis", "sentinel"], indirect=True)
async def test_after_flushall_every_session_comes_back_with_its_history_and_version(
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
    start_worker: StartWorker,
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    ids = [new_id() for _ in range(8)]
    for i, sid in enumerate(ids):
        await chat(manager, sid, 3 * i + 1, tenant=tenant)
    orch = await triage(manager, ids[0], {"area": "trabalhista", "urgency": "alta"}, tenant)
    before = {sid: await manager.get_hot_conversation_state(sid) for sid in ids}
    worker = start_worker()

    async def flushed() -> bool:
        return await manager.redis.client.zcard(manager.keys.dirty()) == 0 and await scalar(
            engine, "SELECT count(*) FROM orchestrations WHERE session_id = :id", id=ids[0]
        )

    await wait_for(flushed, 60, "the flush")
    worker.stop()

    # The private server: hot state gone (the broker too, unless it is behind Sentinel).
    await manager.redis.client.flushall()
    assert await manager.get_hot_conversation_state(ids[0]) is None
    listed = await hybrid.list_sessions(tenant, "ana", limit=20)
    assert {s.session_id for s in listed.items} == set(ids) and listed.total == len(ids)

    for sid in ids:
        assert await manager.get_conversation_state(sid) == before[sid]
    restored_orch = await manager.get_orchestration_state(ids[0])
    assert restored_orch is not None and restored_orch.version == orch.version
    page = await manager.list_active_conversations(tenant, "ana", limit=20)
    assert {s.session_id for s in page.items} == set(ids)


async def test_archive_task_moves_a_session_to_cold_storage_and_it_reads_back_whole(
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
    start_worker: StartWorker,
    celery_client: Celery,
) -> None:
    sid = new_id()
    written = await chat(manager, sid, 40)
    start_worker(beat=False, archive_inactive_sessions_days=0)
    celery_client.send_task(SNAPSHOT_SESSION, args=[sid])

    async def durable() -> bool:
        n = await scalar(engine, "SELECT count(*) FROM messages WHERE session_id = :id", id=sid)
        return n == 40

    await wait_for(durable, 60, "the snapshot")
    await drop_hot(manager, sid)  # expired from Redis: eligible for the archive
    celery_client.send_task(ARCHIVE_INACTIVE)

    async def archived() -> bool:
        return bool(await rows(engine, "SELECT 1 FROM archives WHERE session_id = :id", id=sid))

    await wait_for(archived, 60, "the archive task")
    assert await hybrid.archive.store.exists(sid)
    assert await scalar(engine, "SELECT count(*) FROM messages WHERE session_id = :id", id=sid) == 0

    restored = await manager.get_conversation_state(sid)

    assert restored is not None and restored.version == written.version
    assert restored.messages == written.messages
    page = await hybrid.page_messages(Principal("ana", "escritorio-1"), sid, before=None, limit=200)
    assert [m.seq for m in page.items] == list(range(1, 41))
    assert not await hybrid.archive.store.exists(sid)


@pytest.mark.parametrize("broker", ["redis", "sentinel"], indirect=True)
async def test_celery_health_sees_the_worker_and_the_queue(
    settings: Settings, start_worker: StartWorker, celery_client: Celery
) -> None:
    from tests.health.test_router import client_for
    from tests.ops.test_router import overview

    worker = start_worker(beat=False)
    # The worker took the broker from CELERY_BROKER_URL (the sentinels, when behind Sentinel).
    scheme = settings.broker_url.split("://")[0]
    assert f'"Connected to {scheme}://' in worker.log.read_text()
    async for client in client_for(settings):
        response = await client.get("/health/celery")
        assert response.status_code == 200
        body = response.json()
        assert worker.name in body["workers"]
        assert body["queue"] == settings.celery_queue and body["queue_depth"] == 0
        # The operations page asks the same broker the same way.
        ops = await overview(client, settings)
        assert ops["workers"] == [worker.name] and ops["queue_depth"] == 0


async def test_a_refused_session_degrades_health_until_it_is_written(
    manager: ConversationStateManager,
    engine: AsyncEngine,
    settings: Settings,
    start_worker: StartWorker,
) -> None:
    """The beat-driven flush of a real worker keeps a session PostgreSQL refuses (a NUL written
    straight into Redis), writes the others, reports "degraded", and writes it once fixed."""
    from tests.durability.test_refused import poison
    from tests.health.test_router import client_for

    good, bad = new_id(), new_id()
    await chat(manager, good, 2)
    await chat(manager, bad, 3)
    clean_doc = await poison(manager, bad)
    start_worker(snapshot_retry_seconds=0.5, snapshot_retry_max_seconds=1)
    refused_key = manager.keys.refused()

    async def refused_once_good_written() -> bool:
        sql = "SELECT count(*) FROM messages WHERE session_id = :s"
        return await scalar(engine, sql, s=good) == 2 and await manager.redis.client.hexists(
            refused_key, bad
        )

    await wait_for(refused_once_good_written, 60, "the flush to write one and refuse the other")
    async for client in client_for(settings):
        body = (await client.get("/health/celery")).json()
        assert (body["status"], body["refused_sessions"]) == ("degraded", 1)
    assert await manager.redis.client.zscore(manager.keys.dirty(), bad) is not None

    await manager.redis.client.hset(manager.keys.conversation(bad), "doc", clean_doc)

    async def written() -> bool:
        count = await scalar(engine, "SELECT count(*) FROM messages WHERE session_id = :s", s=bad)
        return count == 3 and not await manager.redis.client.hexists(refused_key, bad)

    await wait_for(written, 60, "the retried snapshot of the fixed session")
    async for client in client_for(settings):
        body = (await client.get("/health/celery")).json()
        assert (body["status"], body["refused_sessions"]) == ("ok", 0)
