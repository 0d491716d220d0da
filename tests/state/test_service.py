"""ConversationStateManager against real Redis: standalone and a 3-master cluster."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from backend.core.config import Settings
from backend.core.errors import SessionNotFound, VersionConflict
from backend.core.redis import RedisService
from backend.state.schemas import ConversationState, Event, OrchestrationState
from backend.state.service import ConversationStateManager
from tests.conftest import make_settings, purge_prefix

ManagerFactory = Callable[..., "asyncio.Future[ConversationStateManager]"]


@pytest.fixture
async def make_manager(redis_backend: dict[str, Any]) -> AsyncIterator[Any]:
    """Build managers (one shared prefix per test) on the parametrized Redis topology."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    services: list[RedisService] = []

    async def build(**overrides: Any) -> ConversationStateManager:
        settings = make_settings(key_prefix=prefix, **{**redis_backend, **overrides})
        service = RedisService.from_settings(settings)
        services.append(service)
        return ConversationStateManager(service, settings)

    yield build
    if services:
        await purge_prefix(services[0], prefix)
    for service in services:
        await service.close()


def new_conversation(user: str = "ana", tenant: str = "escritorio-1") -> ConversationState:
    return ConversationState(session_id=uuid.uuid4().hex, user_id=user, tenant_id=tenant)


def append(text: str, max_history: int = 100) -> Callable[[ConversationState], Event]:
    def mutate(state: ConversationState) -> Event:
        message = state.append_message("user", text, max_history=max_history)
        return Event(type="message.completed", data={"seq": message.seq, "content": text})

    return mutate


async def test_state_survives_a_new_client_and_a_new_process(make_manager: Any) -> None:
    writer = await make_manager()
    state = new_conversation()
    state.append_message("user", "Fui demitido sem justa causa", max_history=100)
    saved = await writer.save_conversation_state(state)
    await writer.redis.close()

    reader = await make_manager()
    loaded = await reader.get_conversation_state(state.session_id)
    assert loaded is not None
    assert loaded.version == saved.version == 1
    assert loaded.messages[0].content == "Fui demitido sem justa causa"

    # A separate Python process (a restarted replica) sees the same state and can move it on.
    settings = reader.settings
    script = (
        "import asyncio, sys\n"
        "from backend.core.redis import RedisService\n"
        "from backend.state.service import ConversationStateManager\n"
        "from backend.state.schemas import encode_state\n"
        "from tests.conftest import make_settings\n"
        "async def main():\n"
        f"    s = make_settings(key_prefix={settings.key_prefix!r},"
        f" redis_url={settings.redis_url!r}, redis_cluster={settings.redis_cluster!r})\n"
        "    r = RedisService.from_settings(s)\n"
        "    m = ConversationStateManager(r, s)\n"
        "    st = await m.update(sys.argv[1], lambda st: st.append_message("
        "'assistant', 'Quando foi a demissão?', max_history=100) and None)\n"
        "    print(encode_state(st).decode())\n"
        "    await r.close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(  # noqa: ASYNC221 - the test waits on purpose
        [sys.executable, "-c", script, state.session_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    from_child = json.loads(done.stdout)
    assert from_child["version"] == 2
    after = await reader.get_conversation_state(state.session_id)
    assert after is not None and after.version == 2
    assert [m.content for m in after.messages] == [
        "Fui demitido sem justa causa",
        "Quando foi a demissão?",
    ]


async def test_many_sessions_side_by_side_and_stats(make_manager: Any) -> None:
    manager = await make_manager()
    users = {"ana": 7, "bruno": 4, "carla": 1}
    created: dict[str, list[str]] = {}
    for user, count in users.items():
        for i in range(count):
            state = new_conversation(user=user)
            for j in range(i + 1):
                state.append_message("user", f"mensagem {j}", max_history=100)
            await manager.save_conversation_state(state)
            created.setdefault(user, []).append(state.session_id)
    orchestrated = created["ana"][:3]
    for sid in orchestrated:
        await manager.save_orchestration_state(
            OrchestrationState(
                session_id=sid,
                user_id="ana",
                tenant_id="escritorio-1",
                stage="triaged",
                triage_result={"area": "trabalhista"},
            )
        )

    stats = await manager.get_system_stats()
    assert stats["conversations"] == 12
    assert stats["orchestrations"] == 3
    assert stats["users"] == 3
    assert stats["messages_total"] == sum(sum(range(1, n + 1)) for n in users.values())
    assert stats["conversations_by_status"] == {"active": 12}
    assert stats["dirty_sessions"] == 12

    # Each user sees only their sessions, newest first, paginated.
    first = await manager.list_active_conversations("escritorio-1", "ana", offset=0, limit=5)
    second = await manager.list_active_conversations("escritorio-1", "ana", offset=5, limit=5)
    assert first.total == 7
    listed = [s.session_id for s in first.items + second.items]
    assert listed == list(reversed(created["ana"]))
    assert (await manager.list_active_conversations("outro", "ana")).total == 0
    assert [
        s.session_id
        for s in (await manager.list_active_conversations("escritorio-1", "carla")).items
    ] == created["carla"]

    orch = await manager.get_orchestration_state(orchestrated[0])
    assert orch is not None and orch.triage_result == {"area": "trabalhista"}


async def test_concurrent_writers_lose_nothing(make_manager: Any) -> None:
    writers, updates = 20, 50
    manager = await make_manager(max_conversation_history=writers * updates)
    state = await manager.save_conversation_state(new_conversation())
    sid = state.session_id

    async def writer(w: int) -> None:
        for u in range(updates):
            await manager.update(sid, append(f"w{w}-u{u}", max_history=writers * updates))

    await asyncio.gather(*(writer(w) for w in range(writers)))

    final = await manager.get_conversation_state(sid)
    assert final is not None
    assert final.version == 1 + writers * updates
    assert final.message_count == writers * updates
    assert [m.seq for m in final.messages] == list(range(1, writers * updates + 1))
    contents = [m.content for m in final.messages]
    assert len(set(contents)) == writers * updates
    for w in range(writers):
        mine = [c for c in contents if c.startswith(f"w{w}-")]
        assert mine == [f"w{w}-u{u}" for u in range(updates)]

    # Every write appended exactly one event, in version order.
    events = await manager.read_events(sid, count=5000)
    completed = [e for e in events if e.type == "message.completed"]
    assert [e.version for e in completed] == list(range(2, writers * updates + 2))


async def test_a_stale_write_is_refused(make_manager: Any) -> None:
    manager = await make_manager()
    state = await manager.save_conversation_state(new_conversation())
    stale = copy.deepcopy(state)
    state.append_message("user", "primeira", max_history=100)
    await manager.save_conversation_state(state)
    stale.append_message("user", "perdida", max_history=100)
    with pytest.raises(VersionConflict) as info:
        await manager.save_conversation_state(stale)
    assert (info.value.expected, info.value.actual) == (1, 2)
    stored = await manager.get_conversation_state(state.session_id)
    assert stored is not None and [m.content for m in stored.messages] == ["primeira"]


async def test_update_gives_up_after_bounded_attempts(make_manager: Any) -> None:
    manager = await make_manager(state_write_max_attempts=3)
    state = await manager.save_conversation_state(new_conversation())
    other = await make_manager(state_write_max_attempts=3)
    calls = 0

    async def meddle(s: ConversationState) -> None:
        # Another writer sneaks in between every read and write.
        nonlocal calls
        calls += 1
        await other.update(s.session_id, append(f"intruso {calls}"))

    with pytest.raises(VersionConflict):
        await manager.update(state.session_id, meddle)
    assert calls == 3
    with pytest.raises(SessionNotFound):
        await manager.update(uuid.uuid4().hex, append("nada"))


async def test_hot_window_keeps_the_last_messages_and_sequence_keeps_counting(
    make_manager: Any,
) -> None:
    manager = await make_manager(max_conversation_history=100)
    state = await manager.save_conversation_state(new_conversation())
    sid = state.session_id
    for i in range(130):
        await manager.update(sid, append(f"m{i}", max_history=100))
    # Nothing is snapshotted yet: the window keeps every message PostgreSQL lacks.
    unsnapshotted = await manager.get_conversation_state(sid)
    assert unsnapshotted is not None and len(unsnapshotted.messages) == 130

    await manager.mark_durable({sid: 130})  # what the snapshot worker records
    await manager.update(sid, append("m130", max_history=100))
    final = await manager.get_conversation_state(sid)
    assert final is not None
    assert len(final.messages) == 100
    assert final.message_count == 131
    assert final.messages[0].seq == 32 and final.messages[-1].seq == 131
    assert final.messages[-1].content == "m130"


async def test_unsnapshotted_messages_stay_hot_up_to_a_hard_cap(make_manager: Any) -> None:
    manager = await make_manager(max_conversation_history=5)
    sid = (await manager.save_conversation_state(new_conversation())).session_id
    for i in range(12):
        await manager.update(sid, append(f"m{i}", max_history=5))
    await manager.mark_durable({sid: 4})  # the worker got the first four
    await manager.mark_durable({sid: 2})  # a late, older report never lowers it
    await manager.update(sid, append("m12", max_history=5))
    state = await manager.get_conversation_state(sid)
    assert state is not None
    # Only durable messages (seq <= 4) left the window; 5..13 are all still there.
    assert [m.seq for m in state.messages] == list(range(5, 14))

    # Workers down for long: memory wins at 10x the window, never more.
    for i in range(13, 70):
        await manager.update(sid, append(f"m{i}", max_history=5))
    state = await manager.get_conversation_state(sid)
    assert state is not None and len(state.messages) == 50
    assert state.messages[-1].seq == 70


async def test_ttl_is_set_on_every_key_and_slides(make_manager: Any) -> None:
    # TTLs of 100 s and 150 s: a write refreshes them when the last refresh is over 1 s old.
    manager = await make_manager(conversation_ttl=150, orchestration_ttl=100)
    redis = manager.redis
    keys = manager.keys
    state = await manager.save_conversation_state(new_conversation())
    sid = state.session_id
    await manager.save_orchestration_state(
        OrchestrationState(session_id=sid, user_id=state.user_id, tenant_id=state.tenant_id)
    )
    await manager.append_event(sid, Event(type="message.delta", data={"text": "Olá"}))
    index = keys.user_index(state.tenant_id, state.user_id)
    session_keys = [keys.conversation(sid), keys.orchestration(sid), keys.events(sid)]
    for key in [*session_keys, index]:
        ttl = await redis.get_ttl(key)
        assert ttl is not None and 0 < ttl <= 150, key

    # Time passes (simulated by shortening the TTLs, and by waiting out the refresh interval);
    # the next write slides all of them back.
    for key in [*session_keys, index]:
        assert await redis.client.expire(key, 5)
    await asyncio.sleep(1.6)
    await manager.update(sid, append("de novo"))
    assert 140 <= (await redis.get_ttl(keys.conversation(sid)) or 0) <= 150
    assert 90 <= (await redis.get_ttl(keys.orchestration(sid)) or 0) <= 100
    assert 140 <= (await redis.get_ttl(keys.events(sid)) or 0) <= 150
    assert 140 <= (await redis.get_ttl(index) or 0) <= 150


async def test_ttl_refresh_is_paid_once_per_interval(make_manager: Any) -> None:
    """Writes in quick succession refresh the sliding TTLs once, not on every write (within 1%
    of the TTL, so a key still lives at least 99% of its TTL after the last write)."""
    manager = await make_manager(conversation_ttl=1000, orchestration_ttl=1000)
    redis = manager.redis
    keys = manager.keys
    state = await manager.save_conversation_state(new_conversation())
    sid = state.session_id
    await manager.update(sid, append("primeira"))
    index = keys.user_index(state.tenant_id, state.user_id)
    # (On a cluster the user's index, in another slot, is refreshed by its own script.)
    for key in (keys.conversation(sid), keys.events(sid)):
        assert await redis.client.expire(key, 500)
    await manager.update(sid, append("logo depois"))
    for key in (keys.conversation(sid), keys.events(sid)):
        assert 490 <= (await redis.get_ttl(key) or 0) <= 500, key

    # A stream lost on its own (or an index emptied) is created again with its TTL.
    await redis.client.delete(keys.events(sid), index)
    await manager.update(sid, append("e mais uma"))
    assert 990 <= (await redis.get_ttl(keys.events(sid)) or 0) <= 1000
    assert 990 <= (await redis.get_ttl(index) or 0) <= 1000


async def test_a_delta_keeps_the_streams_ttl_and_gives_a_lost_stream_one(
    make_manager: Any,
) -> None:
    """A delta (an event without a state write) leaves the stream's TTL to the state writes,
    which slide it with the state's; a stream lost on its own gets its TTL back from it."""
    manager = await make_manager(conversation_ttl=1000, orchestration_ttl=1000)
    redis, keys = manager.redis, manager.keys
    state = await manager.save_conversation_state(new_conversation())
    sid = state.session_id
    await manager.append_event(sid, Event(type="message.delta", data={"text": "a"}))
    assert 990 <= (await redis.get_ttl(keys.events(sid)) or 0) <= 1000
    assert await redis.client.expire(keys.events(sid), 500)
    await manager.append_event(sid, Event(type="message.delta", data={"text": "b"}))
    assert 490 <= (await redis.get_ttl(keys.events(sid)) or 0) <= 500

    await redis.client.delete(keys.events(sid))
    assert await manager.append_event(sid, Event(type="message.delta", data={"text": "c"}))
    assert 990 <= (await redis.get_ttl(keys.events(sid)) or 0) <= 1000
    assert [e.data for e in await manager.read_events(sid)] == [{"text": "c"}]


async def test_nothing_outlives_the_state(make_manager: Any) -> None:
    manager = await make_manager(conversation_ttl=1, orchestration_ttl=1)
    state = await manager.save_conversation_state(new_conversation())
    sid = state.session_id
    await manager.save_orchestration_state(
        OrchestrationState(session_id=sid, user_id=state.user_id, tenant_id=state.tenant_id)
    )
    await manager.append_event(sid, Event(type="message.delta", data={"text": "x"}))
    await asyncio.sleep(2.2)
    assert await manager.get_conversation_state(sid) is None
    assert await manager.redis.exists(*manager.keys.session_keys(sid)) == 0
    assert await manager.redis.exists(manager.keys.user_index(state.tenant_id, state.user_id)) == 0
    # An event for a session whose state is gone is refused rather than resurrecting a stream.
    assert await manager.append_event(sid, Event(type="message.delta", data={})) is None
    assert await manager.redis.exists(manager.keys.events(sid)) == 0
    assert (await manager.list_active_conversations(state.tenant_id, state.user_id)).total == 0


async def test_restore_never_brings_back_an_older_version(make_manager: Any) -> None:
    manager = await make_manager()
    state = await manager.save_conversation_state(new_conversation())
    for i in range(3):
        state = await manager.update(state.session_id, append(f"m{i}"))
    assert state.version == 4
    old = state.copy(version=2, messages=state.messages[:1])
    assert await manager.restore_state("conversation", old) is False
    assert (await manager.get_conversation_state(state.session_id)).version == 4  # type: ignore[union-attr]

    await manager.delete_session(state.session_id)
    assert await manager.restore_state("conversation", state) is True
    restored = await manager.get_conversation_state(state.session_id)
    assert restored is not None and restored.version == 4
    assert [m.content for m in restored.messages] == ["m0", "m1", "m2"]
    # Writes carry on from the restored version.
    assert (await manager.update(state.session_id, append("m3"))).version == 5


async def test_migrate_memory_to_redis_is_idempotent(make_manager: Any) -> None:
    manager = await make_manager()
    conversations = {
        "legacy-1": {
            "user_id": "ana",
            "tenant_id": "escritorio-1",
            "created_at": "2026-10-01T12:00:00Z",
            "conversation_history": [
                {"role": "user", "content": "Meu voo foi cancelado", "timestamp": 1759320000},
                {"role": "bot", "content": "Quando era o voo?"},
            ],
            "collected_info": {"area": "consumidor"},
        },
        "legacy-2": {"tenant_id": "escritorio-1"},  # no user: invalid
    }
    orchestrations = {
        "legacy-1": {"user_id": "ana", "tenant_id": "escritorio-1", "current_step": "collecting"}
    }
    report = await manager.migrate_memory_to_redis(conversations, orchestrations)
    assert report.migrated == 2 and report.skipped == 0
    assert [name for name, _ in report.invalid] == ["conversation:legacy-2"]
    assert "user_id" in report.invalid[0][1]

    state = await manager.get_conversation_state("legacy-1")
    assert state is not None and state.version == 1
    assert [m.role for m in state.messages] == ["user", "assistant"]
    assert state.data["collected_info"] == {"area": "consumidor"}

    # Second run: nothing changes. A session that moved on is never overwritten.
    await manager.update("legacy-1", append("nova mensagem"))
    again = await manager.migrate_memory_to_redis(conversations, orchestrations)
    assert again.migrated == 0 and again.skipped == 2
    assert (await manager.get_conversation_state("legacy-1")).version == 2  # type: ignore[union-attr]


async def test_rebuild_indexes_from_the_sessions(make_manager: Any) -> None:
    manager = await make_manager()
    ids = [
        (await manager.save_conversation_state(new_conversation(user="ana"))).session_id
        for _ in range(3)
    ]
    await manager.redis.delete(manager.keys.user_index("escritorio-1", "ana"), manager.keys.dirty())
    assert (await manager.list_active_conversations("escritorio-1", "ana")).total == 0
    assert await manager.rebuild_indexes() == 3
    page = await manager.list_active_conversations("escritorio-1", "ana")
    assert sorted(s.session_id for s in page.items) == sorted(ids)
    assert (await manager.get_system_stats())["dirty_sessions"] == 3


async def test_a_new_session_drops_index_entries_older_than_the_ttl(make_manager: Any) -> None:
    manager = await make_manager()
    index = manager.keys.user_index("escritorio-1", "ana")
    kept = await manager.save_conversation_state(new_conversation())
    # Entries whose state expired long ago (scores are last updates, in microseconds).
    ttl_us = manager.settings.conversation_ttl * 1_000_000
    old = int(kept.updated_at.timestamp() * 1_000_000) - 2 * ttl_us
    await manager.redis.client.zadd(index, {"expirada-1": old, "expirada-2": old + 1})
    assert await manager.redis.client.zcard(index) == 3

    new = await manager.save_conversation_state(new_conversation())
    members = set(await manager.redis.client.zrange(index, 0, -1))
    assert members == {kept.session_id, new.session_id}


async def test_a_write_that_leaves_the_index_alone_keeps_the_listing_order(
    make_manager: Any,
) -> None:
    """The reply runner's writes leave the user's index alone: a user's sessions are listed by
    their own last message, and each shows when it last changed (its reply included)."""
    manager = await make_manager()
    first = await manager.save_conversation_state(new_conversation())
    second = await manager.save_conversation_state(new_conversation())

    def reply(state: ConversationState) -> None:
        state.append_message("assistant", "Entendi. Quando foi a demissão?", max_history=100)

    replied, _ = await manager.update_returning_event(first.session_id, reply, index=False)
    page = await manager.list_active_conversations("escritorio-1", "ana")
    assert [s.session_id for s in page.items] == [second.session_id, first.session_id]
    assert page.items[1].updated_at == replied.updated_at > page.items[0].updated_at
    assert page.items[1].message_count == 1 and page.items[1].version == 2

    # The user's own next write moves the session up again.
    await manager.update(first.session_id, append("Foi há duas semanas."))
    page = await manager.list_active_conversations("escritorio-1", "ana")
    assert [s.session_id for s in page.items] == [first.session_id, second.session_id]


async def test_lost_scripts_are_reloaded(make_manager: Any) -> None:
    manager = await make_manager()
    state = await manager.save_conversation_state(new_conversation())
    # What a Redis restart does to the script cache.
    await manager.redis.client.script_flush()
    state = await manager.update(state.session_id, append("depois do restart"))
    assert state.version == 2
    assert await manager.append_event(state.session_id, Event(type="message.delta")) is not None


async def test_lost_scripts_are_reloaded_under_concurrent_writes(make_manager: Any) -> None:
    # Concurrent writers share pipelines (AutoPipeline): each refused write is sent again once
    # the scripts are back, and none is applied twice.
    manager = await make_manager()
    states = [await manager.save_conversation_state(new_conversation()) for _ in range(20)]
    await manager.redis.client.script_flush()
    updated = await asyncio.gather(
        *(manager.update(s.session_id, append("depois do restart")) for s in states)
    )
    assert [u.version for u in updated] == [2] * 20
    for s in states:
        stored = await manager.get_conversation_state(s.session_id)
        assert stored is not None and [m.content for m in stored.messages] == ["depois do restart"]


def test_settings_fixture_is_isolated(settings: Settings) -> None:
    assert settings.key_prefix.startswith("test-")
    assert settings.redis_url.endswith("/15")


async def test_the_replies_due_set_follows_the_writes(make_manager: Any) -> None:
    """A session is due from the write that leaves it owing a reply to the one that answers it;
    a write that loses its version check moves nothing; the set can be rebuilt."""
    manager = await make_manager()
    due = manager.keys.replies_due()
    opened = await manager.save_conversation_state(new_conversation())
    sid = opened.session_id
    assert await manager.redis.client.zscore(due, sid) is None  # owes nothing yet
    asked = await manager.update(sid, append("Fui demitido sem justa causa"))
    assert await manager.redis.client.zscore(due, sid) is not None

    def answered(state: ConversationState) -> Event:
        state.data["replied_through"] = state.message_count
        return Event(type="message.completed", data={})

    # Stale (written from the state before the message): refused, the session stays due.
    with pytest.raises(VersionConflict):
        await manager.save_conversation_state(opened.with_version(opened.version))
    stale = asked.with_version(asked.version)
    answered(stale)
    await manager.update(sid, append("Foi há duas semanas"))
    with pytest.raises(VersionConflict):
        await manager.save_conversation_state(stale)
    assert await manager.redis.client.zscore(due, sid) is not None
    await manager.update(sid, answered)
    assert await manager.redis.client.zscore(due, sid) is None
    # Lost with Redis's cross-session keys: rebuilt from the sessions.
    await manager.update(sid, append("E a empresa não pagou o FGTS"))
    await manager.redis.delete(due)
    assert await manager.rebuild_indexes() == 1
    assert await manager.redis.client.zscore(due, sid) is not None
