"""The shared tailer against a real Redis (standalone and cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.core.config import Settings
from backend.core.redis import RedisService, create_redis_client
from backend.state.schemas import ConversationState, Event, StreamEntry
from backend.state.service import ConversationStateManager
from backend.streaming.events import ResumePoint
from backend.streaming.hub import Reload, StreamHub, Subscription
from backend.streaming.sse import session_events
from tests.conftest import make_settings, purge_prefix

GUARD = 15  # seconds; a hang guard, not a timing assertion


def make_hub(manager: ConversationStateManager, client: Any, **overrides: Any) -> StreamHub:
    options: dict[str, Any] = {
        "cluster": manager.redis.is_cluster,
        "partitions": manager.settings.stream_partitions,
        # Far longer than GUARD: only a notification can make a test pass.
        "block_ms": 30_000,
        "check_seconds": 0.2,
        "sweep_seconds": 3_600,
        "max_backlog": 1_000,
    }
    options.update(overrides)
    return StreamHub(client, manager.keys, **options)


@pytest.fixture
async def hub_client(settings: Settings) -> AsyncIterator[Any]:
    client = create_redis_client(settings.model_copy(update={"redis_socket_timeout": 40}))
    yield client
    await client.aclose()


async def new_session(manager: ConversationStateManager, sid: str) -> str:
    state = ConversationState(session_id=sid, user_id="u", tenant_id="t")
    _, event_id = await manager.update_returning_event(
        sid, lambda s: Event(type="session.created"), create=lambda: state
    )
    assert event_id is not None
    return event_id


async def take(sub: Subscription, n: int) -> list[StreamEntry]:
    got: list[StreamEntry] = []
    while len(got) < n:
        item = await asyncio.wait_for(sub.next(), GUARD)
        assert item is not None and not isinstance(item, Reload), (item, sub.reason)
        got.extend(item)
    return got


async def test_fan_out_to_every_subscriber_in_order(
    manager: ConversationStateManager, hub_client: Any
) -> None:
    hub = make_hub(manager, hub_client)
    hub.start()
    try:
        start = await new_session(manager, "s1")
        subs = [hub.new_subscription("s1") for _ in range(3)]
        for sub in subs:
            hub.attach(sub, start)
        await asyncio.sleep(0)
        for i in range(20):
            await manager.append_event("s1", Event(type="message.delta", data={"i": i}))
        for sub in subs:
            assert [e.data["i"] for e in await take(sub, 20)] == list(range(20))
        assert hub.stats() == {"sessions": 1, "subscriptions": 3, "readers": 1}
        for sub in subs:
            hub.unsubscribe(sub)
        assert hub.stats()["sessions"] == 0
    finally:
        await hub.close()


async def test_a_write_wakes_the_blocked_reader(
    manager: ConversationStateManager, hub_client: Any
) -> None:
    # Sessions over several partitions, the reader blocked for 30 s when each joins: only the
    # notification of the write lets its event arrive within the guard.
    hub = make_hub(manager, hub_client)
    hub.start()
    try:
        subs = []
        for n in range(5):
            sid = f"s{n}"
            sub = hub.new_subscription(sid)
            hub.attach(sub, await new_session(manager, sid))
            subs.append(sub)
            await asyncio.sleep(0.05)  # let the reader block before the next one joins
            await manager.append_event(sid, Event(type="message.delta", data={"n": n}))
            assert (await take(sub, 1))[0].data == {"n": n}
        assert hub.stats()["readers"] == 1
    finally:
        await hub.close()
    assert all(sub.reason == "shutdown" for sub in subs)


async def test_deleted_session_ends_its_subscriptions(
    manager: ConversationStateManager, hub_client: Any
) -> None:
    hub = make_hub(manager, hub_client)
    hub.start()
    try:
        sub = hub.new_subscription("s1")
        hub.attach(sub, await new_session(manager, "s1"))
        await manager.delete_session("s1")
        assert await asyncio.wait_for(sub.next(), GUARD) is None
        assert sub.reason == "gone"
    finally:
        await hub.close()


async def test_a_slow_subscriber_is_cut_off_not_buffered_forever(
    manager: ConversationStateManager, hub_client: Any
) -> None:
    hub = make_hub(manager, hub_client, max_backlog=10)
    hub.start()
    try:
        slow = hub.new_subscription("s1")
        hub.attach(slow, await new_session(manager, "s1"))
        for i in range(30):
            await manager.append_event("s1", Event(type="message.delta", data={"i": i}))
        while slow.reason is None:
            await asyncio.wait_for(slow._ready.wait(), GUARD)
            slow._ready.clear()
        assert slow.reason == "overflow"
        assert await slow.next() is None
    finally:
        await hub.close()


async def test_session_events_backfills_then_tails_without_gaps_or_duplicates(
    manager: ConversationStateManager, hub_client: Any
) -> None:
    hub = make_hub(manager, hub_client)
    hub.start()
    try:
        await new_session(manager, "s1")
        ids = [
            await manager.append_event("s1", Event(type="message.delta", data={"i": i}))
            for i in range(10)
        ]
        # A first subscriber keeps the tail ahead of the second one's resume point.
        ahead = hub.new_subscription("s1")
        hub.attach(ahead, str(ids[-1]))
        sub = hub.new_subscription("s1")
        stream = session_events(hub, manager, sub, ResumePoint(after=str(ids[4])))
        received = [await asyncio.wait_for(anext(stream), GUARD) for _ in range(5)]
        for i in range(10, 15):
            await manager.append_event("s1", Event(type="message.delta", data={"i": i}))
        received += [await asyncio.wait_for(anext(stream), GUARD) for _ in range(5)]
        values = [int(e.data.split('"i":')[1].rstrip("}")) for e in received]
        assert values == list(range(5, 15))
        assert received[0].id == ids[5] and received[0].retry == 1000
        assert received[0].event == "message.delta"
        await stream.aclose()
        assert hub.stats()["subscriptions"] == 1
    finally:
        await hub.close()


@pytest.mark.cluster
async def test_hub_on_a_cluster(redis_cluster: Any) -> None:
    settings = make_settings(redis_url=redis_cluster.url, redis_cluster=True)
    redis = RedisService.from_settings(settings)
    client = create_redis_client(settings.model_copy(update={"redis_socket_timeout": 40}))
    manager = ConversationStateManager(redis, settings)
    hub = make_hub(manager, client, cluster=True)
    hub.start()
    try:
        subs = []
        for n in range(3):
            sub = hub.new_subscription(f"s{n}")
            hub.attach(sub, await new_session(manager, f"s{n}"))
            subs.append(sub)
        for n, sub in enumerate(subs):
            await manager.append_event(f"s{n}", Event(type="message.delta", data={"n": n}))
            assert (await take(sub, 1))[0].data == {"n": n}
        # One reader per partition, whatever the number of sessions.
        assert hub.stats() == {"sessions": 3, "subscriptions": 3, "readers": 16}
    finally:
        await hub.close()
        await client.aclose()
        await purge_prefix(redis, settings.key_prefix)
        await redis.close()
