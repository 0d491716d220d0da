"""The shared tailer against a real Redis (standalone and cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from backend.core import metrics
from backend.core.config import Settings
from backend.core.redis import RedisService, create_redis_client
from backend.state.eviction import SessionEvictor
from backend.state.keys import stream_partition
from backend.state.notify import NOTIFY_INLINE_BYTES
from backend.state.schemas import ConversationState, Event, OrchestrationState, StreamEntry
from backend.state.service import ConversationStateManager
from backend.streaming.events import ResumePoint, resume_point
from backend.streaming.hub import StreamHub
from backend.streaming.sse import one_at_a_time, session_batches
from backend.streaming.subscription import Reload, Subscription
from tests.conftest import make_settings, purge_prefix
from tests.state.test_eviction import durable_session

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


async def test_a_session_streamed_again_while_a_read_is_out_starts_from_its_own_position(
    manager: ConversationStateManager, hub_client: Any
) -> None:
    # A client leaves and another (or the same, reconnecting from the start) arrives while the
    # reader's XREAD for the old position is still out: what that read returns follows the old
    # position, and must not be handed to the new subscriber, which would skip the entries in
    # between.
    hub = make_hub(manager, hub_client)
    hub.start()
    try:
        await new_session(manager, "s1")
        await manager.append_event("s1", Event(type="message.delta", data={"i": 0}))
        first = hub.new_subscription("s1")
        hub.attach(first, await manager.last_event_id("s1"))
        await asyncio.sleep(0.05)  # the reader blocks on the stream after entry 0
        hub.unsubscribe(first)
        again = hub.new_subscription("s1")
        assert hub.attach(again, "0-0") is False  # a new tail: no back-fill of its own
        await manager.append_event("s1", Event(type="message.delta", data={"i": 1}))
        entries = await take(again, 3)
        assert [e.type for e in entries] == ["session.created", "message.delta", "message.delta"]
        assert [e.data.get("i") for e in entries[1:]] == [0, 1]
    finally:
        await hub.close()


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
        stream = one_at_a_time(session_batches(hub, manager, sub, ResumePoint(after=str(ids[4]))))
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


# ------------------------------------------------- notifications, on both topologies


@pytest.fixture
async def topology(redis_backend: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A state manager on each Redis topology, and a separately named client for the hub (its
    connections are counted on the servers with CLIENT LIST)."""
    settings = make_settings(**redis_backend, stream_partitions=8)
    redis = RedisService.from_settings(settings)
    name = f"hub-{settings.key_prefix}"
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 40}
    options |= {"client_name": name, "retry": Retry(NoBackoff(), 0)}
    hub_client: Any = (
        RedisCluster.from_url(settings.redis_url, **options)
        if settings.redis_cluster
        else Redis.from_url(settings.redis_url, **options)
    )
    try:
        yield {
            "manager": ConversationStateManager(redis, settings),
            "client": hub_client,
            "name": name,
        }
    finally:
        await hub_client.aclose()
        await purge_prefix(redis, settings.key_prefix)
        await redis.close()


async def server_connections(manager: ConversationStateManager, name: str) -> int:
    """Connections named `name` that the Redis servers (every node of a cluster) hold."""
    client: Any = manager.redis.client
    if manager.redis.is_cluster:
        listings = await client.client_list(target_nodes=RedisCluster.ALL_NODES)
        rows = [row for node_rows in listings.values() for row in node_rows]
    else:
        rows = await client.client_list()
    return sum(1 for row in rows if row.get("name") == name)


async def kill_connections(manager: ConversationStateManager, name: str) -> int:
    """CLIENT KILL every connection named `name`, on the server that holds it."""
    client: Any = manager.redis.client
    killed = 0
    if manager.redis.is_cluster:
        listings = await client.client_list(target_nodes=RedisCluster.ALL_NODES)
        for node_name, rows in listings.items():
            node = client.get_node(node_name=node_name)
            for row in rows:
                if row.get("name") == name:
                    await client.client_kill_filter(_id=row["id"], target_nodes=node)
                    killed += 1
    else:
        for row in await client.client_list():
            if row.get("name") == name:
                await client.client_kill_filter(_id=row["id"])
                killed += 1
    return killed


def caught_up() -> float:
    return float(metrics.M.stream_caught_up._value.get())


async def burst(manager: ConversationStateManager, sids: list[str], per_session: int) -> None:
    """`per_session` events to every session, all sessions at once: deltas and state writes."""

    async def one(sid: str) -> None:
        for i in range(per_session):
            if i % 2:
                await manager.update_returning_event(
                    sid, lambda s, i=i: Event(type="session.updated", data={"i": i})
                )
            else:
                await manager.append_event(sid, Event(type="message.delta", data={"i": i}))

    for start in range(0, len(sids), 100):  # within the writer's connection pool
        await asyncio.gather(*(one(sid) for sid in sids[start : start + 100]))


async def stored_after(manager: ConversationStateManager, sid: str, after: str) -> list[str]:
    return [e.id for e in await manager.read_events(sid, after=after, count=10_000)]


async def test_many_sessions_stream_over_a_bounded_number_of_connections(
    topology: dict[str, Any],
) -> None:
    """300 sessions streamed by one hub, a burst of writes to all of them: every subscriber
    gets exactly its session's events, in order, and the hub's Redis connections are those
    of its partition readers plus a couple per node, not one per session."""
    manager, client = topology["manager"], topology["client"]
    hub = make_hub(manager, client)
    hub.start()
    try:
        sids = [f"m{n}" for n in range(300)]
        starts = await asyncio.gather(*(new_session(manager, sid) for sid in sids))
        subs = {sid: hub.new_subscription(sid) for sid in sids}
        for sid, start in zip(sids, starts, strict=True):
            assert not hub.attach(subs[sid], start)
        await burst(manager, sids, 4)
        for sid, start in zip(sids, starts, strict=True):
            want = await stored_after(manager, sid, start)
            assert len(want) == 4
            assert [e.id for e in await take(subs[sid], 4)] == want
        nodes = 3 if manager.redis.is_cluster else 1
        readers = 8 if manager.redis.is_cluster else 1
        assert hub.stats() == {"sessions": 300, "subscriptions": 300, "readers": readers}
        # The readers' blocking reads, the fetcher's and the checker's pipelines (one
        # connection per node each), and on a cluster the client's own (its start-up
        # discovery, the readers' first reads of their partitions' ends, all at once).
        connections = await server_connections(manager, topology["name"])
        assert 0 < connections <= readers + 5 * nodes
    finally:
        await hub.close()


async def test_resume_on_another_replica_and_reload_when_trimmed(
    topology: dict[str, Any],
) -> None:
    manager, client = topology["manager"], topology["client"]
    first, second = make_hub(manager, client), make_hub(manager, client)
    first.start()
    second.start()
    try:
        start = await new_session(manager, "r1")
        sub = first.new_subscription("r1")
        first.attach(sub, start)
        await burst(manager, ["r1"], 6)
        seen = await take(sub, 6)
        # The client drops after the third event and reconnects to the other replica.
        resumed = second.new_subscription("r1")
        point = await resume_point(manager, "r1", seen[2].id)
        stream = one_at_a_time(session_batches(second, manager, resumed, point))
        got = [await asyncio.wait_for(anext(stream), GUARD) for _ in range(3)]
        await burst(manager, ["r1"], 2)
        got += [await asyncio.wait_for(anext(stream), GUARD) for _ in range(2)]
        assert [e.id for e in got] == await stored_after(manager, "r1", seen[2].id)
        await stream.aclose()
        # Far more events than the stream keeps: a resume from the start is told to reload.
        trimmed = manager.settings.model_copy(update={"stream_maxlen": 10})
        small = ConversationStateManager(manager.redis, trimmed)
        for i in range(300):
            await small.append_event("r1", Event(type="message.delta", data={"i": i}))
        point = await resume_point(manager, "r1", seen[0].id)
        assert point.reload and point.reason == "trimmed"
        late = second.new_subscription("r1")
        stream = one_at_a_time(session_batches(second, manager, late, point))
        event = await asyncio.wait_for(anext(stream), GUARD)
        assert event.event == "reload" and event.id == point.after
        await small.append_event("r1", Event(type="message.delta", data={"i": "next"}))
        event = await asyncio.wait_for(anext(stream), GUARD)
        assert event.event == "message.delta" and '"next"' in event.data
        await stream.aclose()
    finally:
        await first.close()
        await second.close()


async def test_an_event_whose_notification_was_lost_is_caught_up(
    topology: dict[str, Any],
) -> None:
    """A writer that died between its write and its notification (appended here by hand, with
    no notification): the stream still gets the event, from the sweep."""
    manager, client = topology["manager"], topology["client"]
    hub = make_hub(manager, client, sweep_seconds=0.5)
    hub.start()
    try:
        sub = hub.new_subscription("l1")
        hub.attach(sub, await new_session(manager, "l1"))
        await asyncio.sleep(0.3)  # the tail's first read is done
        before = caught_up()
        lost = await manager.redis.client.xadd(
            manager.keys.events("l1"), {"type": "message.delta", "version": 1, "data": "{}"}
        )
        assert [e.id for e in await take(sub, 1)] == [lost]
        assert caught_up() == before + 1
        # Notified events go on arriving as before.
        await manager.append_event("l1", Event(type="message.delta", data={"i": 1}))
        assert (await take(sub, 1))[0].data == {"i": 1}
    finally:
        await hub.close()


async def test_a_session_owing_a_reply_is_re_read_at_each_check(
    topology: dict[str, Any],
) -> None:
    """A client waits for a reply: its stream does not wait for the sweep (an hour here) to
    get an event whose notification was lost, the next check re-reads it."""
    manager, client = topology["manager"], topology["client"]
    hub = make_hub(manager, client)
    hub.start()
    try:
        sub = hub.new_subscription("o1")
        hub.attach(sub, await new_session(manager, "o1"))

        def ask(state: ConversationState) -> Event:
            state.append_message("user", "Fui demitido sem justa causa.", max_history=100)
            return Event(type="message.created")

        await manager.update_returning_event("o1", ask)
        assert (await take(sub, 1))[0].type == "message.created"
        lost = await manager.redis.client.xadd(
            manager.keys.events("o1"), {"type": "message.delta", "version": 2, "data": "{}"}
        )
        assert [e.id for e in await take(sub, 1)] == [lost]
    finally:
        await hub.close()


async def test_a_killed_reader_connection_recovers_without_losing_events(
    topology: dict[str, Any],
) -> None:
    manager, client = topology["manager"], topology["client"]
    hub = make_hub(manager, client)
    hub.start()
    try:
        sids = [f"k{n}" for n in range(20)]
        starts = await asyncio.gather(*(new_session(manager, sid) for sid in sids))
        subs = {sid: hub.new_subscription(sid) for sid in sids}
        for sid, start in zip(sids, starts, strict=True):
            hub.attach(subs[sid], start)
        await burst(manager, sids, 2)
        for sid in sids:
            await take(subs[sid], 2)
        # Every connection of the hub dies (its blocked readers included), then more events
        # are written while the readers reconnect.
        assert await kill_connections(manager, topology["name"]) > 0
        await burst(manager, sids, 3)
        for sid, start in zip(sids, starts, strict=True):
            got = await take(subs[sid], 3)
            assert [e.id for e in got] == (await stored_after(manager, sid, start))[2:]
        assert await server_connections(manager, topology["name"]) > 0
    finally:
        await hub.close()


async def monitored(manager: ConversationStateManager, seconds: float) -> list[str]:
    """The commands every Redis server (each node of a cluster) runs for `seconds` (MONITOR),
    as text, of this test's keys only (its prefix: other tests share the server)."""
    if manager.redis.is_cluster:
        nodes = manager.redis.client.get_nodes()
        servers = [Redis(host=n.host, port=n.port, decode_responses=True) for n in nodes]
    else:
        servers = [Redis.from_url(manager.settings.redis_url, decode_responses=True)]
    seen: list[str] = []

    async def watch(server: Redis) -> None:
        async with server.monitor() as monitor:
            while True:
                command = (await monitor.next_command())["command"]
                if manager.keys.prefix in command:
                    seen.append(command)

    watchers = [asyncio.create_task(watch(server)) for server in servers]
    try:
        await asyncio.sleep(seconds)
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for server in servers:
            await server.aclose()
    return seen


async def owe_a_reply(manager: ConversationStateManager, sid: str) -> None:
    def ask(state: ConversationState) -> Event:
        state.append_message("user", "Fui demitido sem justa causa.", max_history=100)
        return Event(type="message.created")

    await manager.update_returning_event(sid, ask)


async def test_an_idle_stream_costs_no_command_between_sweeps(
    topology: dict[str, Any],
) -> None:
    """Ten idle streams and one whose session owes a reply, checked every 0.2 s (sweep: an
    hour): the checks look at the owing session each time and at the idle ones never."""
    manager, client = topology["manager"], topology["client"]
    hub = make_hub(manager, client)
    hub.start()
    try:
        idle = [f"i{n}" for n in range(10)]
        for sid in [*idle, "o1"]:
            hub.attach(hub.new_subscription(sid), await new_session(manager, sid))
        await owe_a_reply(manager, "o1")
        await asyncio.sleep(0.6)  # the first reads, and the first checks of the new tails
        seen = await monitored(manager, 1.5)
        assert [c for c in seen if any(f"{{{sid}}}" in c for sid in idle)] == []
        owing = [c for c in seen if "{o1}:conv" in c]
        assert len(owing) >= 3, seen  # checked at each check (about 7), not only at the sweep
    finally:
        await hub.close()


async def test_a_deleted_purged_or_evicted_sessions_idle_stream_ends_at_once(
    topology: dict[str, Any],
) -> None:
    """Checks and sweeps an hour apart: only the `gone` notification that goes with the
    session's deletion can end its streams within the guard."""
    manager, client = topology["manager"], topology["client"]
    hub = make_hub(manager, client, check_seconds=3_600)
    hub.start()
    try:
        deleted, purged = hub.new_subscription("g1"), hub.new_subscription("g2")
        hub.attach(deleted, await new_session(manager, "g1"))
        hub.attach(purged, await new_session(manager, "g2"))
        evicted_sid = await durable_session(manager)
        evicted = hub.new_subscription(evicted_sid)
        hub.attach(evicted, "0-0")
        kept = hub.new_subscription("g3")
        hub.attach(kept, await new_session(manager, "g3"))
        await asyncio.sleep(0.3)  # the first reads are done
        await manager.delete_session("g1")
        await manager.purge_hot("g2")
        assert await SessionEvictor(manager).evict(evicted_sid) is None
        for sub in (deleted, purged, evicted):
            assert await asyncio.wait_for(sub.next(), GUARD) is None
            assert sub.reason == "gone"
        assert kept.reason is None
    finally:
        await hub.close()


async def test_an_expired_sessions_stream_ends_at_the_sweep(topology: dict[str, Any]) -> None:
    """A session whose keys expire (no notification) still ends its streams: at the sweep."""
    manager, client = topology["manager"], topology["client"]
    hub = make_hub(manager, client, check_seconds=3_600, sweep_seconds=0.5)
    hub.start()
    try:
        sub = hub.new_subscription("x1")
        hub.attach(sub, await new_session(manager, "x1"))
        await asyncio.sleep(0.3)
        await manager.redis.client.delete(*manager.keys.session_keys("x1"))  # as a TTL does
        assert await asyncio.wait_for(sub.next(), GUARD) is None
        assert sub.reason == "gone"
    finally:
        await hub.close()


# ------------------------------------------- events carried by their notifications


def tail_reads(source: str) -> float:
    return float(metrics.M.stream_tail_reads.labels(source)._value.get())


def lost_notifications(manager: ConversationStateManager, sid: str) -> ConversationStateManager:
    """A writer whose notifications of `sid` never reach a hub of 8 partitions (they go to a
    partition it does not read): the writes happen in full, their notifications are lost, as
    when a cluster writer dies between its script and its notification."""
    partitions = 1024
    assert stream_partition(sid, partitions) >= 8
    lossy = manager.settings.model_copy(update={"stream_partitions": partitions})
    return ConversationStateManager(manager.redis, lossy)


async def test_a_burst_arrives_from_its_notifications_once_and_in_order(
    topology: dict[str, Any],
) -> None:
    """A tail that keeps up reads no session stream: every write's events come with its
    notification, to every subscriber, exactly once and in order."""
    manager, client = topology["manager"], topology["client"]
    hub = make_hub(manager, client)
    hub.start()
    try:
        sids = [f"b{n}" for n in range(20)]
        starts = await asyncio.gather(*(new_session(manager, sid) for sid in sids))
        subs = {sid: [hub.new_subscription(sid) for _ in range(2)] for sid in sids}
        for sid, start in zip(sids, starts, strict=True):
            for sub in subs[sid]:
                hub.attach(sub, start)
        # A first event each: the new tails' first reads are behind us.
        await burst(manager, sids, 1)
        for sid in sids:
            for sub in subs[sid]:
                await take(sub, 1)
        reads, carried = tail_reads("stream"), tail_reads("notification")
        await burst(manager, sids, 10)
        for sid, start in zip(sids, starts, strict=True):
            want = await stored_after(manager, sid, start)
            assert len(want) == 11
            for sub in subs[sid]:
                assert [e.id for e in await take(sub, 10)] == want[1:]
        assert tail_reads("stream") == reads
        assert tail_reads("notification") > carried
        # Nothing was passed on twice: the next event is the next thing each one gets.
        await manager.append_event("b0", Event(type="message.delta", data={"i": "last"}))
        for sub in subs["b0"]:
            assert [e.data for e in await take(sub, 1)] == [{"i": "last"}]
    finally:
        await hub.close()


async def test_events_a_notification_cannot_vouch_for_are_read_from_the_stream(
    topology: dict[str, Any],
) -> None:
    """A tail created behind the stream's end, events whose notification was lost, a write
    of the orchestration whose notification was lost, an event too large to carry: each time
    the tail's cursor is not where the next notification's events follow, and it reads the
    session's stream instead, with no gap and no duplicate."""
    manager, client = topology["manager"], topology["client"]
    hub = make_hub(manager, client)
    hub.start()
    try:
        sid = "g1"
        start = await new_session(manager, sid)
        ids = [
            await manager.append_event(sid, Event(type="message.delta", data={"i": i}))
            for i in range(3)
        ]
        # Created after these writes were notified, at the first of them.
        sub = hub.new_subscription(sid)
        assert not hub.attach(sub, str(ids[0]))
        assert [e.id for e in await take(sub, 2)] == ids[1:]
        # (Which read fetched what is not asserted: on a cluster a partition's reader may still
        # be starting, and its first catch-up read may be the one that finds these.)
        lossy = lost_notifications(manager, sid)
        await lossy.append_event(sid, Event(type="message.delta", data={"i": "lost"}))
        await manager.append_event(sid, Event(type="message.delta", data={"i": 3}))
        assert [e.data["i"] for e in await take(sub, 2)] == ["lost", 3]

        def analyse(state: OrchestrationState) -> Event:
            return Event(type="triage.updated", data={"lost": True})

        orchestration = OrchestrationState(session_id=sid, user_id="u", tenant_id="t")
        await lossy.update_returning_event(
            sid, analyse, kind="orchestration", create=lambda: orchestration
        )
        await manager.append_event(sid, Event(type="message.delta", data={"i": 4}))
        got = await take(sub, 2)
        assert [e.type for e in got] == ["triage.updated", "message.delta"]
        large = "x" * (NOTIFY_INLINE_BYTES + 1)
        await manager.append_event(sid, Event(type="message.delta", data={"i": large}))
        await manager.append_event(sid, Event(type="message.delta", data={"i": 5}))
        got += await take(sub, 2)
        assert [e.data.get("i") for e in got[1:]] == [4, large, 5]
        # A notification that names no event (an older writer's; a deleted session's) still
        # has the stream read.
        await lossy.append_event(sid, Event(type="message.delta", data={"i": "lost again"}))
        partition = stream_partition(sid, manager.settings.stream_partitions)
        await manager.redis.client.xadd(manager.keys.notify(partition), {"s": sid})
        got += await take(sub, 1)
        assert got[-1].data == {"i": "lost again"}
        assert [e.id for e in got] == (await stored_after(manager, sid, start))[5:]
    finally:
        await hub.close()


async def test_a_stream_started_at_the_last_notified_event_reads_nothing_to_start(
    topology: dict[str, Any],
) -> None:
    """A chat POST's stream starts at the event its write has just appended, whose
    notification the hub has usually read already: the new tail does not read the session's
    stream, and still gets what follows. Started anywhere else, it reads."""
    manager, client = topology["manager"], topology["client"]
    hub = make_hub(manager, client)
    hub.start()
    try:
        sid = "n1"
        # A session of the same partition, streamed: once its event arrives, the hub has read
        # the notifications written before it in that partition.
        probe = next(f"p{n}" for n in range(100) if same_partition(manager, f"p{n}", sid))
        probe_sub = hub.new_subscription(probe)
        hub.attach(probe_sub, await new_session(manager, probe))
        await manager.append_event(probe, Event(type="message.delta"))
        await take(probe_sub, 1)  # the reader of that partition is reading it
        await new_session(manager, sid)
        ids = [
            await manager.append_event(sid, Event(type="message.delta", data={"i": i}))
            for i in range(2)
        ]
        await manager.append_event(probe, Event(type="message.delta"))
        await take(probe_sub, 1)
        reads = tail_reads("stream")
        sub = hub.new_subscription(sid)
        assert not hub.attach(sub, str(ids[-1]))
        await manager.append_event(sid, Event(type="message.delta", data={"i": 2}))
        assert [e.data for e in await take(sub, 1)] == [{"i": 2}]
        assert tail_reads("stream") == reads
        # Another client, elsewhere (a new tail on another replica, behind): it reads.
        other = make_hub(manager, client)
        other.start()
        try:
            behind = other.new_subscription(sid)
            assert not other.attach(behind, str(ids[0]))
            got = await take(behind, 2)
            assert [e.data for e in got] == [{"i": 1}, {"i": 2}]
            assert tail_reads("stream") > reads
        finally:
            await other.close()
    finally:
        await hub.close()


def same_partition(manager: ConversationStateManager, a: str, b: str) -> bool:
    partitions = manager.settings.stream_partitions
    return stream_partition(a, partitions) == stream_partition(b, partitions)
