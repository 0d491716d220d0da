"""The broker's master dies (SIGKILL) behind Sentinel: a replica is promoted, the worker and
its beat reconnect by themselves, `/health/celery` says so honestly meanwhile, and no work is
lost, not even a task the dead master had not replicated (beat derives the work again from
the dirty set in the state Redis, which is not the broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.config import Settings
from backend.state.service import ConversationStateManager
from tests.conftest import client_for
from tests.core.test_metrics import scrape
from tests.durability.conftest import chat, drop_hot, new_id, rows
from tests.redis_sentinel import MASTER_NAME, SentinelGroup
from tests.workers.test_worker import StartWorker, wait_for
from workers.config import RESTORE_SESSION, SNAPSHOT_SESSION, create_celery_app
from workers.inspect import queue_depth

pytestmark = pytest.mark.e2e


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    """This test's own group: it kills masters."""
    group = SentinelGroup().start()
    try:
        yield group
    finally:
        group.destroy()


@pytest.fixture
def broker(group: SentinelGroup) -> dict[str, Any]:
    return {"celery_broker_url": group.url, "celery_broker_sentinel_master": MASTER_NAME}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(settings):
        yield client


async def celery_health(api: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    """Status and body of /health/celery: 200, or 503 with a reason (never a 500). Snapshots
    lag behind while the broker is away: a reason as well, until the flushes catch up."""
    response = await api.get("/health/celery")
    body = response.json()
    assert response.status_code in (200, 503), response.text
    if response.status_code == 503:
        reasons = {"broker_unavailable", "workers_unavailable", "snapshots_lagging"}
        assert body["error"]["code"] in reasons, body
    return response.status_code, body


async def assert_outage_reported(api: httpx.AsyncClient, group: SentinelGroup, dead: int) -> None:
    """While the sentinels still name the dead master, the health route says the broker
    cannot be read (asked right after the kill: the sentinels wait a second before acting)."""
    status, body = await celery_health(api)
    assert group.master_port() == dead, "the failover was over before the health check ran"
    assert (status, body["error"]["code"]) == (503, "broker_unavailable"), body


async def broker_replicas(api: httpx.AsyncClient) -> float | None:
    """The gauge of /metrics (None: not exported)."""
    return (await scrape(api)).get(("triage_broker_replicas", frozenset()))


async def durable(engine: AsyncEngine, session_id: str) -> bool:
    return bool(await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=session_id))


async def test_a_killed_broker_master_fails_over_and_no_work_is_lost(
    group: SentinelGroup,
    settings: Settings,
    manager: ConversationStateManager,
    engine: AsyncEngine,
    start_worker: StartWorker,
    api: httpx.AsyncClient,
) -> None:
    celery = create_celery_app(settings)
    try:
        # 1. A snapshot task queued while no worker runs, that the replica never received:
        # Redis replicates asynchronously, and this is the write a dying master can take
        # with it (made certain here by removing it from the replica before the kill).
        first = new_id()
        await chat(manager, first, 2)
        celery.send_task(SNAPSHOT_SESSION, args=[first])
        master = group.master()
        with master.client() as client:
            assert client.wait(1, 5_000) == 1  # the replica has it...
        replica = next(node for node in group.nodes if node is not master)
        with replica.client() as client:
            client.config_set("replica-read-only", "no")
            assert client.delete(settings.celery_queue) == 1  # ...and now it does not
        assert queue_depth(celery, settings.celery_queue) == 1

        dead = group.kill_master()
        await assert_outage_reported(api, group, dead.port)
        # The state Redis is not the broker: conversations go on being written.
        during = new_id()
        await chat(manager, during, 3)
        group.wait_for_failover(dead)

        status, body = await celery_health(api)
        assert (status, body["error"]["code"]) == (503, "workers_unavailable")
        assert body["error"]["queue_depth"] == 0  # the queued task was lost with the master
        # Nothing left to fail over to: the gauge BrokerWithoutReplica watches says so.
        assert await broker_replicas(api) == 0

        # With its beat, which stands by after a failed renewal and looks again a third of
        # BEAT_LOCK_SECONDS later.
        worker = start_worker(beat_lock_seconds=3)

        async def both_durable() -> bool:
            return await durable(engine, first) and await durable(engine, during)

        await wait_for(both_durable, 60, "beat's flush to snapshot the dirty sessions")

        # 2. The dead node comes back as a replica; the worker and beat are connected to the
        # promoted master when that one is killed in turn.
        group.rejoin(dead)
        assert await broker_replicas(api) == 1
        await wait_for(lambda: _healthy(api, worker.name), 30, "a healthy worker and beat")
        dead = group.kill_master()
        await assert_outage_reported(api, group, dead.port)
        group.wait_for_failover(dead)

        # Nobody restarts anything: the health route turns 200 by itself, the same worker
        # answering and a beat holding its lock on the new master.
        await wait_for(lambda: _healthy(api, worker.name), 60, "the worker and beat to reconnect")
        assert worker.proc.poll() is None

        # Tasks sent after the failover run: beat's flush of a new session, and a restore
        # sent by the API's own Celery client (beat never sends those).
        after = new_id()
        await chat(manager, after, 1)
        await wait_for(lambda: durable(engine, after), 60, "the snapshot of a new session")
        await drop_hot(manager, first)
        celery.send_task(RESTORE_SESSION, args=[first])

        async def restored() -> bool:
            return await manager.get_hot_conversation_state(first) is not None

        await wait_for(restored, 60, "the restore task sent after the failover")
        assert worker.proc.poll() is None
    finally:
        celery.close()


async def _healthy(api: httpx.AsyncClient, worker: str) -> bool:
    status, body = await celery_health(api)
    return status == 200 and body["workers"] == [worker] and body["beat_scheduler"] is not None
