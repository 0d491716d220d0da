"""Writes tagged with an Idempotency-Key, on standalone Redis and on a 3-master cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.core.redis import RedisService
from backend.state.schemas import ConversationState, Event
from backend.state.service import AlreadyWritten, ConversationStateManager, IdempotentWrite
from tests.conftest import make_settings, purge_prefix


@pytest.fixture
async def managers(redis_backend: dict[str, Any]) -> AsyncIterator[list[ConversationStateManager]]:
    """Two managers with their own clients (two replicas), one prefix, at most 3 records per
    generation so rotation shows."""
    settings = make_settings(idempotency_keys_per_session=3, **redis_backend)
    services = [RedisService.from_settings(settings) for _ in range(2)]
    try:
        yield [ConversationStateManager(s, settings) for s in services]
    finally:
        await purge_prefix(services[0], settings.key_prefix)
        for service in services:
            await service.close()


async def post(
    manager: ConversationStateManager, sid: str, key: str, text: str
) -> tuple[ConversationState, str | None]:
    def add(state: ConversationState) -> Event:
        state.append_message("user", text, max_history=100)
        return Event(type="message.created", data={"seq": state.message_count})

    def create() -> ConversationState:
        return ConversationState(session_id=sid, user_id="ana", tenant_id="acme")

    result: tuple[ConversationState, str | None] = await manager.update_returning_event(
        sid, add, create=create, idempotency=IdempotentWrite(key, {"fp": text})
    )
    return result


async def test_one_write_per_key_even_when_racing(
    managers: list[ConversationStateManager],
) -> None:
    sid = uuid.uuid4().hex
    outcomes = await asyncio.gather(
        *[post(managers[i % 2], sid, "k1", "olá") for i in range(10)], return_exceptions=True
    )
    written = [o for o in outcomes if isinstance(o, tuple)]
    replayed = [o for o in outcomes if isinstance(o, AlreadyWritten)]
    assert len(written) == 1 and len(replayed) == 9, outcomes
    state, event_id = written[0]
    # Every loser gets the winner's record: the script added its event id and version.
    assert all(
        r.record == {"fp": "olá", "event_id": event_id, "version": state.version} for r in replayed
    )
    assert await managers[0].idempotency_record(sid, "k1") == replayed[0].record
    stored = await managers[1].get_conversation_state(sid)
    assert stored is not None and stored.message_count == 1
    assert [e.type for e in await managers[0].read_events(sid)] == ["message.created"]


async def test_records_rotate_out_by_generation_and_expire(
    managers: list[ConversationStateManager],
) -> None:
    manager = managers[0]
    sid = uuid.uuid4().hex
    for i in range(7):
        await post(manager, sid, f"k{i}", f"mensagem {i}")
    found = [await manager.idempotency_record(sid, f"k{i}") is not None for i in range(7)]
    # 3 per generation, two generations: the newest 4 to 6 are kept, never the oldest.
    assert found == [False, False, False, True, True, True, True]
    current, previous = manager.keys.idempotency(sid)
    client = manager.redis.client
    for key in (current, previous):
        assert 0 < await client.ttl(key) <= manager.settings.conversation_ttl
    # A write without a key leaves the records alone.
    await manager.update(sid, lambda s: Event(type="touch"))
    assert await manager.idempotency_record(sid, "k6") is not None
