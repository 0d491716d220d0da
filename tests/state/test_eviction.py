"""Evicting snapshotted sessions from Redis (backend/state/eviction.py), real Redis."""

from __future__ import annotations

import uuid
from datetime import timedelta

from backend.state import eviction
from backend.state.eviction import SessionEvictor
from backend.state.schemas import ConversationState, OrchestrationState, utcnow
from backend.state.service import ConversationStateManager


async def durable_session(manager: ConversationStateManager, idle_minutes: int = 10) -> str:
    """A session as a read-through restore leaves it: in Redis, not dirty (PostgreSQL has it)."""
    sid = uuid.uuid4().hex
    when = utcnow() - timedelta(minutes=idle_minutes)
    conv = ConversationState(
        session_id=sid, user_id="ana", tenant_id="t1", version=3, created_at=when, updated_at=when
    )
    conv.append_message("user", "Quero revisar meu contrato.", max_history=100)
    conv.updated_at = when
    assert await manager.restore_state("conversation", conv)
    orch = OrchestrationState(session_id=sid, user_id="ana", tenant_id="t1", version=2)
    assert await manager.restore_state("orchestration", orch)
    return sid


async def test_evicts_a_snapshotted_idle_session_completely(
    manager: ConversationStateManager,
) -> None:
    sid = await durable_session(manager)
    assert (await manager.list_active_conversations("t1", "ana")).total == 1
    assert await SessionEvictor(manager).evict(sid) is None
    assert await manager.redis.exists(*manager.keys.session_keys(sid)) == 0
    assert await manager.redis.exists(manager.keys.user_index("t1", "ana")) == 0
    assert await SessionEvictor(manager).evict(sid) == eviction.NOT_FOUND


async def test_never_evicts_unsnapshotted_busy_or_recent_sessions(
    manager: ConversationStateManager,
) -> None:
    dirty = (
        await manager.save_conversation_state(
            ConversationState(session_id=uuid.uuid4().hex, user_id="ana", tenant_id="t1")
        )
    ).session_id
    busy = await durable_session(manager)
    await manager.redis.client.set(manager.keys.lease(busy), "replica-1", ex=30)
    recent = await durable_session(manager, idle_minutes=0)

    evictor = SessionEvictor(manager, min_idle=60)
    assert await evictor.evict(dirty) == eviction.DIRTY
    assert await evictor.evict(busy) == eviction.BUSY
    assert await evictor.evict(recent) == eviction.RECENT
    for sid in (dirty, busy, recent):
        assert await manager.get_conversation_state(sid) is not None

    report = await evictor.evict_all()
    assert report.evicted == []
    assert sorted(report.kept) == sorted(
        [(dirty, eviction.DIRTY), (busy, eviction.BUSY), (recent, eviction.RECENT)]
    )


async def test_a_write_after_the_check_stops_the_eviction(
    manager: ConversationStateManager,
) -> None:
    sid = await durable_session(manager)
    evictor = SessionEvictor(manager)
    # The script is given the versions read before the dirty check (3 and 2); a write since
    # then (version 4) must make it refuse, whatever the dirty set says.
    conv = await manager.get_conversation_state(sid)
    assert conv is not None
    await manager.save_conversation_state(conv)
    keys = [
        manager.keys.conversation(sid),
        manager.keys.orchestration(sid),
        manager.keys.events(sid),
        manager.keys.lease(sid),
    ]
    assert await evictor._script(keys=keys, args=["3", "2"]) == 0
    assert (await manager.get_conversation_state(sid)).version == 4  # type: ignore[union-attr]


async def test_evict_all_takes_only_what_is_safe(manager: ConversationStateManager) -> None:
    safe = [await durable_session(manager) for _ in range(3)]
    unsafe = (
        await manager.save_conversation_state(
            ConversationState(session_id=uuid.uuid4().hex, user_id="bia", tenant_id="t1")
        )
    ).session_id
    report = await SessionEvictor(manager).evict_all()
    assert sorted(report.evicted) == sorted(safe)
    assert report.kept == [(unsafe, eviction.DIRTY)]
    assert await manager.get_conversation_state(unsafe) is not None
