"""The reply runner with the real offline interviewer and a real Redis: serialization,
recovery of dead generators, bounded retries, the sweep, shutdown and generator failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.replies import bookkeeping as replies
from backend.state.schemas import ConversationState, Event, StreamEntry
from backend.state.service import ConversationStateManager
from backend.wiring import ConversationRuntime
from tests.redis_cluster import free_port
from tests.sse_helpers import GUARD

ALICE = Principal(user_id="alice", tenant_id="acme")
STORY = "Fui demitido sem justa causa e a empresa não pagou as verbas rescisórias nem o FGTS."

Start = Callable[..., ConversationRuntime]


@pytest.fixture
async def start_runtime(
    settings: Settings, redis_service: RedisService, manager: ConversationStateManager
) -> AsyncIterator[Start]:
    runtimes: list[ConversationRuntime] = []

    def start(**overrides: Any) -> ConversationRuntime:
        runtime = ConversationRuntime.start(
            FastAPI(), settings.model_copy(update=overrides), redis_service, manager
        )
        runtimes.append(runtime)
        return runtime

    try:
        yield start
    finally:
        for runtime in runtimes:
            await runtime.stop(5)


async def settled(manager: ConversationStateManager, sid: str) -> ConversationState:
    deadline = time.monotonic() + GUARD
    while True:
        state = await manager.get_conversation_state(sid)
        assert state is not None
        if not replies.owes_reply(state):
            return state
        assert time.monotonic() < deadline, state.data
        await asyncio.sleep(0.05)


async def wait_for_event(manager: ConversationStateManager, sid: str, type_: str) -> StreamEntry:
    deadline = time.monotonic() + GUARD
    while True:
        for entry in await manager.read_events(sid):
            if entry.type == type_:
                return entry
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def session_with(
    manager: ConversationStateManager, sid: str, *users: str, **data: Any
) -> ConversationState:
    state = ConversationState(session_id=sid, user_id="alice", tenant_id="acme")
    for text in users:
        state.append_message("user", text, max_history=100)
    state.data.update(data)
    return await manager.save_conversation_state(state, event=Event(type="session.created"))


def types(entries: list[StreamEntry]) -> list[str]:
    return [e.type for e in entries if e.type != "message.delta"]


async def test_messages_stored_together_get_one_reply(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    runtime = start_runtime()
    await session_with(manager, "s1", STORY, "Foi há duas semanas.")
    runtime.runner.kick("s1")
    state = await settled(manager, "s1")
    assert [m.role for m in state.messages] == ["user", "user", "assistant"]
    assert state.messages[-1].metadata["in_reply_to"] == 2
    assert types(await manager.read_events("s1")) == [
        "session.created",
        "message.started",
        "triage.updated",
        "message.completed",
    ]


async def test_a_message_posted_during_a_reply_gets_the_next_reply(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    runtime = start_runtime(offline_chunk_delay_ms=30)
    _, posted = await runtime.interviewer.start_conversation(ALICE, STORY)
    assert posted is not None
    sid = posted.session_id
    await wait_for_event(manager, sid, "message.delta")
    second = await runtime.interviewer.continue_conversation(ALICE, sid, "Foi há duas semanas.")
    assert second.message.seq == 2
    state = await settled(manager, sid)
    assert [(m.role, m.metadata.get("in_reply_to")) for m in state.messages] == [
        ("user", None),
        ("user", None),
        ("assistant", 1),
        ("assistant", 2),
    ]
    assert state.data["replied_through"] == max(m.seq for m in state.messages if m.role == "user")


async def test_a_dead_generators_reply_is_closed_and_generated_again(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    runtime = start_runtime()
    dead = {"reply_id": "dead", "in_reply_to": 1, "token": "gone:1", "started_at": None}
    state = await session_with(
        manager, "s1", STORY, generation=dead, attempts={"in_reply_to": 1, "count": 1}
    )
    assert replies.owes_reply(state)
    await runtime.runner.ensure(state)  # a read notices: nobody holds the lease
    state = await settled(manager, "s1")
    entries = await manager.read_events("s1")
    assert types(entries)[:3] == ["session.created", "error", "message.started"]
    error = next(e for e in entries if e.type == "error")
    assert error.data["reply_id"] == "dead" and error.data["retrying"] is True
    assert error.data["code"] == "generation_interrupted"
    restarted = next(e for e in entries if e.type == "message.started")
    assert restarted.data["attempt"] == 2 and restarted.data["in_reply_to"] == 1
    assert [m.role for m in state.messages] == ["user", "assistant"]
    assert "attempts" not in state.data and "generation" not in state.data


async def test_retries_are_bounded(start_runtime: Start, manager: ConversationStateManager) -> None:
    runtime = start_runtime(generation_max_attempts=2)
    dead = {"reply_id": "dead", "in_reply_to": 1, "token": "gone:1", "started_at": None}
    state = await session_with(
        manager, "s1", STORY, generation=dead, attempts={"in_reply_to": 1, "count": 2}
    )
    await runtime.runner.ensure(state)
    state = await settled(manager, "s1")
    entries = await manager.read_events("s1")
    assert types(entries) == ["session.created", "error"]
    assert entries[-1].data["retrying"] is False
    assert [m.role for m in state.messages] == ["user"]
    assert state.data["replied_through"] == 1


async def test_a_held_lease_defers_to_its_holder_and_the_sweep_recovers(
    start_runtime: Start, manager: ConversationStateManager, redis_service: RedisService
) -> None:
    runtime = start_runtime(generation_lease_ms=600, generation_sweep_seconds=0.1)
    await session_with(manager, "s1", STORY)
    # Another replica holds the lease: this one leaves the session to it.
    lease_key = manager.keys.lease("s1")
    assert await redis_service.client.set(lease_key, "other-replica:1", px=60_000)
    runtime.runner.kick("s1")
    for _ in range(int(GUARD * 100)):  # until the job gave up on the lease (hang guard)
        if not runtime.runner.running:
            break
        await asyncio.sleep(0.01)
    assert types(await manager.read_events("s1")) == ["session.created"]
    # That replica dies (its lease is gone, as when it expires); the sweep takes over.
    await redis_service.client.delete(lease_key)
    state = await settled(manager, "s1")
    assert [m.role for m in state.messages] == ["user", "assistant"]
    assert await manager.redis.client.zscore(runtime.runner.due_key, "s1") is None


async def test_shutdown_past_the_grace_closes_the_reply_and_leaves_it_due(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    runtime = start_runtime(offline_chunk_delay_ms=100)
    _, posted = await runtime.interviewer.start_conversation(ALICE, STORY)
    assert posted is not None
    sid = posted.session_id
    started = await wait_for_event(manager, sid, "message.delta")
    before = time.time()
    await runtime.stop(0.1)
    entries = await manager.read_events(sid)
    assert entries[-1].type == "error"
    assert entries[-1].data["reply_id"] == started.data["reply_id"]
    assert entries[-1].data["retrying"] is True
    state = await manager.get_conversation_state(sid)
    assert state is not None and replies.pending_seq(state) == 1
    assert replies.marker(state) is None
    due = await manager.redis.client.zscore(runtime.runner.due_key, sid)
    assert due is not None and due <= time.time() and due >= before - 1
    # Another replica takes it over and answers.
    other = start_runtime(generation_sweep_seconds=0.1)
    state = await settled(manager, sid)
    assert [m.role for m in state.messages] == ["user", "assistant"]
    # Its job ends shortly after the reply's last write (lease release, one last read).
    deadline = time.monotonic() + GUARD
    while other.runner.running:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_a_failing_generator_closes_the_reply_with_an_error(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    # The OpenAI-compatible generator pointed at a port where nothing listens.
    runtime = start_runtime(
        reply_generator="openai",
        llm_api_key=SecretStr("test-key"),
        llm_base_url=f"http://127.0.0.1:{free_port()}/v1",
        llm_timeout_seconds=2,
    )
    await session_with(manager, "s1", STORY)
    runtime.runner.kick("s1")
    state = await settled(manager, "s1")
    entries = await manager.read_events("s1")
    assert types(entries) == ["session.created", "message.started", "triage.updated", "error"]
    assert entries[-1].data["code"] == "generation_failed"
    assert entries[-1].data["retrying"] is False
    assert [m.role for m in state.messages] == ["user"]
    assert state.data["replied_through"] == 1


async def test_a_stored_message_whose_reply_never_started_is_answered_by_the_sweep(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    # The replica that stored the message died before its reply started (no kick, no lease,
    # no read of the session afterwards): the write itself made the session due.
    state = await session_with(manager, "s1")

    def add(current: ConversationState) -> Event:
        message = current.append_message("user", STORY, max_history=100)
        return replies.user_message_event(message)

    await manager.update(state.session_id, add)
    assert await manager.redis.client.zscore(manager.keys.replies_due(), "s1") is not None
    start_runtime(generation_lease_ms=300, generation_sweep_seconds=0.1)
    state = await settled(manager, "s1")
    assert [m.role for m in state.messages] == ["user", "assistant"]
    # The write that stored the reply took the session out of the due set.
    assert await manager.redis.client.zscore(manager.keys.replies_due(), "s1") is None


async def test_an_open_event_stream_starts_a_reply_nobody_generates(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    # A session owing a reply that is in no due set (lost with it, or stored before the writes
    # kept it) and that nobody reads: a client waiting on its event stream is enough.
    await session_with(manager, "s1", STORY)
    await manager.redis.client.zrem(manager.keys.replies_due(), "s1")
    runtime = start_runtime(stream_check_seconds=0.1, generation_sweep_seconds=0.1)
    sub = runtime.hub.new_subscription("s1")
    runtime.hub.attach(sub, "0-0")
    try:
        state = await settled(manager, "s1")
    finally:
        runtime.hub.unsubscribe(sub)
    assert [m.role for m in state.messages] == ["user", "assistant"]


async def test_an_interruption_by_a_shutdown_is_not_counted(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    # One attempt allowed: a reply cut off by its replica's shutdown is still generated again.
    runtime = start_runtime(offline_chunk_delay_ms=100, generation_max_attempts=1)
    _, posted = await runtime.interviewer.start_conversation(ALICE, STORY)
    assert posted is not None
    sid = posted.session_id
    await wait_for_event(manager, sid, "message.delta")
    await runtime.stop(0.1)
    start_runtime(generation_sweep_seconds=0.1, generation_max_attempts=1)
    state = await settled(manager, sid)
    assert [m.role for m in state.messages] == ["user", "assistant"]
    entries = await manager.read_events(sid)
    assert [e.data["retrying"] for e in entries if e.type == "error"] == [True]
    assert [e.data["attempt"] for e in entries if e.type == "message.started"] == [1, 1]


async def test_the_case_analysis_is_recorded_even_when_another_replica_changed_it(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    """A replica writes the analysis together with the reply's start from the orchestration it
    remembers; another replica's write in between is never overwritten: the analysis is
    recorded on top of it, once per reply."""
    runtime = start_runtime()
    _, posted = await runtime.interviewer.start_conversation(ALICE, STORY)
    assert posted is not None
    sid = posted.session_id
    await settled(manager, sid)
    first = await manager.get_orchestration_state(sid)
    assert first is not None and first.version == 1 and "analysis" in first.data

    def elsewhere(state: Any) -> Event:  # another replica's write this one does not know of
        state.data["note"] = "escrito por outra réplica"
        return Event(type="triage.updated", data={"stage": state.stage})

    await manager.update(sid, elsewhere, kind="orchestration")
    await runtime.interviewer.continue_conversation(ALICE, sid, "Foi há duas semanas.")
    await settled(manager, sid)

    orchestration = await manager.get_orchestration_state(sid)
    assert orchestration is not None and orchestration.version == 3
    assert orchestration.data["note"] == "escrito por outra réplica"
    assert orchestration.data["analysis"] != first.data["analysis"]
    events = types(await manager.read_events(sid))
    assert events.count("message.started") == events.count("message.completed") == 2


async def test_the_completing_write_lets_go_of_the_session(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    """The write that stores the last owed reply releases the lease in the same step, so the
    next message, posted on any replica, is answered at once."""
    one, two = start_runtime(), start_runtime()
    _, posted = await one.interviewer.start_conversation(ALICE, STORY)
    assert posted is not None
    sid = posted.session_id
    await settled(manager, sid)
    assert not await one.runner.lease.is_held(sid)
    await two.interviewer.continue_conversation(ALICE, sid, "Foi há duas semanas.")
    state = await settled(manager, sid)
    assert [m.role for m in state.messages] == ["user", "assistant", "user", "assistant"]


async def test_a_reply_leaves_the_users_session_index_alone(
    start_runtime: Start, manager: ConversationStateManager
) -> None:
    """The index keeps the time of the user's message (their sessions are listed by their own
    last message); the listing still shows when the session last changed: its reply."""
    runtime = start_runtime()
    posted_state, posted = await runtime.interviewer.start_conversation(ALICE, STORY)
    assert posted is not None
    sid = posted.session_id
    state = await settled(manager, sid)
    assert state.messages[-1].role == "assistant"
    index = manager.keys.user_index(ALICE.tenant_id, ALICE.user_id)
    score = await manager.redis.client.zscore(index, sid)
    assert score == int(posted_state.updated_at.timestamp() * 1_000_000)
    (listed,) = (await manager.list_active_conversations(ALICE.tenant_id, ALICE.user_id)).items
    assert listed.updated_at == state.updated_at > posted_state.updated_at


async def test_a_reply_longer_than_its_lease_keeps_the_lease_until_it_is_stored(
    start_runtime: Start, manager: ConversationStateManager, redis_service: RedisService
) -> None:
    # The renewal starts one interval (a third of the lease) into the job: a slow reply must
    # still hold its lease long after the lease's first term, and be stored once.
    runtime = start_runtime(
        generation_lease_ms=300, offline_chunk_delay_ms=150, generation_sweep_seconds=0.1
    )
    _, posted = await runtime.interviewer.start_conversation(ALICE, STORY)
    assert posted is not None
    sid = posted.session_id
    await wait_for_event(manager, sid, "message.delta")
    lease_key = manager.keys.lease(sid)
    for _ in range(3):  # three lease terms while the reply goes on
        await asyncio.sleep(0.3)
        if not runtime.runner.running:
            break
        assert await redis_service.client.exists(lease_key)
    state = await settled(manager, sid)
    assert [m.role for m in state.messages] == ["user", "assistant"]
    kinds = types(await manager.read_events(sid))
    assert kinds.count("message.completed") == 1
    assert "error" not in kinds
