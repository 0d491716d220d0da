"""Replies through store outages, with real servers: a private `redis-server` that fills up
under `maxmemory` + `noeviction` and is then freed, or is stopped for several leases and
started again (its AOF keeps the data), and PostgreSQL behind a loopback port that refuses
connections (nothing listens) and then forwards to the real server.

What a user would notice: a reply caught by an outage arrives once the store answers, exactly
once per message, and the outage never uses up its attempts (GENERATION_MAX_ATTEMPTS is 1 here,
so a single counted interruption would be a final error); a new session chats while
PostgreSQL is down; no session is left owing a reply outside the due set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import create_engine
from backend.core.errors import StoreUnavailable
from backend.core.redis import RedisService
from backend.durability.service import HybridConversationService
from backend.replies import bookkeeping as replies
from backend.state.schemas import ConversationState, Event
from backend.state.service import ConversationStateManager
from backend.wiring import ConversationRuntime
from tests.conftest import client_for, make_settings
from tests.redis_cluster import free_port
from tests.redis_server import RedisServer
from tests.sse_helpers import GUARD, bearer, events

ALICE = Principal(user_id="alice", tenant_id="acme")
STORY = "Fui demitido sem justa causa e a empresa não pagou as verbas rescisórias nem o FGTS."
LATER = "Foi há duas semanas e tenho a carteira de trabalho assinada."


# ------------------------------------------------------------------ private servers


def fill_with_data(server: RedisServer) -> int:
    """Fill memory up to a `maxmemory` just above what is used, until writes are refused.

    The limit is then set 1 MB under what the data takes, so every later write is refused too,
    until `free_data()`. Not just under it: the refused write's own 64 KB buffer, counted
    while it was refused, is freed afterwards, and a limit that close let a write through
    whenever no other client's buffers happened to fill that gap (seen: used 5,920,224 bytes
    against a limit of 5,954,256).
    """
    block = b"x" * 64 * 1024
    n = 0
    with server.client() as admin:
        admin.config_set("maxmemory", server.used_memory() + 4 * 1024 * 1024)
        with contextlib.suppress(redis.exceptions.OutOfMemoryError):
            while True:
                admin.set(f"filler:{n}", block)
                n += 1
        admin.config_set("maxmemory", server.used_memory() - 16 * len(block))
    return n


def free_data(server: RedisServer, fillers: int) -> None:
    with server.client() as admin:
        admin.delete(*[f"filler:{i}" for i in range(fillers)])


class _PostgresDoor:
    """A loopback port in front of the real PostgreSQL: closed (connections refused, as with
    a stopped server) until `open()`, then forwarding every connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.port = free_port()
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for task in (pump(reader, up_writer), pump(up_reader, writer)):
            pipe = asyncio.create_task(task)
            self.pipes.add(pipe)
            pipe.add_done_callback(self.pipes.discard)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for pipe in list(self.pipes):
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, appendonly=True).start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def replicas() -> AsyncIterator[Callable[[Settings], ConversationRuntime]]:
    """Start a replica's conversation runtime (own Redis pool and state manager); all are
    stopped after the test."""
    started: list[tuple[ConversationRuntime, RedisService]] = []

    def start(settings: Settings) -> ConversationRuntime:
        service = RedisService.from_settings(settings)
        manager = ConversationStateManager(service, settings)
        runtime = ConversationRuntime.start(FastAPI(), settings, service, manager)
        started.append((runtime, service))
        return runtime

    try:
        yield start
    finally:
        for runtime, service in started:
            await runtime.stop(5)
            await service.close()


# ------------------------------------------------------------------------ checks


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until `check()` holds (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + 2 * GUARD
    while not await check():
        assert time.monotonic() < deadline, f"still waiting: {what}"
        await asyncio.sleep(0.05)


async def all_answered(manager: ConversationStateManager, sids: list[str]) -> bool:
    for sid in sids:
        state = await manager.get_conversation_state(sid)
        if state is None or replies.owes_reply(state):
            return False
    return True


async def assert_answered_once(manager: ConversationStateManager, sid: str) -> None:
    """Every user message answered by exactly one stored reply; no error reached the user."""
    state = await manager.get_conversation_state(sid)
    assert state is not None
    users = [m.seq for m in state.messages if m.role == "user"]
    answers = [int(m.metadata["in_reply_to"]) for m in state.messages if m.role == "assistant"]
    # A reply answers every message stored before it started: strictly increasing, the last
    # one covering the last message, and each message covered by the first reply after it.
    assert answers == sorted(set(answers)) and answers[-1] == users[-1], (users, answers)
    assert state.data["replied_through"] == users[-1]
    entries = await manager.read_events(sid, count=10_000)
    completed = [e.data["reply_id"] for e in entries if e.type == "message.completed"]
    assert len(completed) == len(set(completed)) == len(answers)
    assert [e.data for e in entries if e.type == "error"] == []
    due = await manager.redis.client.zscore(manager.keys.replies_due(), sid)
    assert due is None


# ------------------------------------------------------------------------- tests


async def test_redis_full_under_writes_then_freed_every_message_is_answered_once(
    full_redis: RedisServer, replicas: Callable[[Settings], ConversationRuntime]
) -> None:
    settings = make_settings(
        redis_url=full_redis.url,
        generation_lease_ms=900,
        generation_sweep_seconds=0.1,
        generation_max_attempts=1,
        offline_chunk_delay_ms=15,
        rate_limit_messages=1000,
    )
    a, b = replicas(settings), replicas(settings)
    manager = a.interviewer.manager
    # Replies running on both replicas when Redis fills up.
    running = []
    for i in range(8):
        _, posted = await (a, b)[i % 2].interviewer.start_conversation(ALICE, STORY)
        assert posted is not None
        running.append(posted.session_id)

    async def streaming() -> bool:
        got = [await manager.read_events(sid) for sid in running]
        return all(any(e.type == "message.delta" for e in entries) for entries in got)

    await until(streaming, "every reply streaming")

    # Sessions whose message was stored just before the fill, their reply not yet started.
    def add(state: ConversationState) -> Event:
        return replies.user_message_event(state.append_message("user", STORY, max_history=100))

    stored_only = []
    for _ in range(4):
        opened, _ = await a.interviewer.start_conversation(ALICE, None)
        stored_only.append((await manager.update(opened.session_id, add)).session_id)

    fillers = fill_with_data(full_redis)
    for sid in stored_only:
        a.runner.kick(sid)  # its lease cannot even be taken while Redis is full
    # Redis refuses what is not acknowledged: a new message is a 503, nothing half-written.
    with pytest.raises(StoreUnavailable):
        await a.interviewer.continue_conversation(ALICE, running[0], LATER)
    # Long enough for every lease to have lapsed twice had it not been kept.
    await asyncio.sleep(2 * settings.generation_lease_ms / 1000)
    free_data(full_redis, fillers)

    sessions = running + stored_only
    await until(lambda: all_answered(manager, sessions), "every reply stored")
    # Replies go on as usual afterwards.
    for i, sid in enumerate(sessions):
        await (a, b)[i % 2].interviewer.continue_conversation(ALICE, sid, LATER)
    await until(lambda: all_answered(manager, sessions), "every second reply stored")
    for sid in sessions:
        await assert_answered_once(manager, sid)
    assert await manager.redis.client.zcard(manager.keys.replies_due()) == 0


async def test_redis_down_longer_than_a_lease_the_reply_goes_on_as_its_own(
    full_redis: RedisServer, replicas: Callable[[Settings], ConversationRuntime]
) -> None:
    settings = make_settings(
        redis_url=full_redis.url,
        generation_lease_ms=600,
        generation_sweep_seconds=0.1,
        generation_max_attempts=1,
        offline_chunk_delay_ms=30,
    )
    a = replicas(settings)
    replicas(settings)  # another replica, whose sweep finds the reply when Redis is back
    manager = a.interviewer.manager
    _, posted = await a.interviewer.start_conversation(ALICE, STORY)
    assert posted is not None
    sid = posted.session_id

    async def streaming() -> bool:
        return any(e.type == "message.delta" for e in await manager.read_events(sid))

    await until(streaming, "the reply streaming")
    # Redis is gone for several leases: the generator's lease lapses, and the other replica's
    # sweep finds the reply due with nobody holding it once Redis is back.
    full_redis.stop()
    await asyncio.sleep(4 * settings.generation_lease_ms / 1000)
    full_redis.start()
    await until(lambda: all_answered(manager, [sid]), "the reply after Redis is back")
    await assert_answered_once(manager, sid)
    started = [e for e in await manager.read_events(sid) if e.type == "message.started"]
    assert [e.data["attempt"] for e in started] == [1]


async def test_a_new_session_chats_while_postgresql_is_down(
    settings: Settings, redis_service: RedisService
) -> None:
    closed = free_port()  # nothing listens: every connection is refused
    down = settings.model_copy(
        update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{closed}/triage"}
    )
    async for api in client_for(down):
        assert (await api.get("/health/postgres")).status_code == 503
        response, evs = await events(
            api, "POST", "/api/agents/chat", json={"message": STORY}, headers=bearer()
        )
        assert response.status_code == 200
        assert [e.event for e in evs if e.event != "message.delta"][-1] == "message.completed"
        sid = response.headers["x-session-id"]
        # The next message of that session too, and a triage session.
        response, evs = await events(
            api,
            "POST",
            "/api/agents/chat",
            json={"message": LATER, "session_id": sid},
            headers=bearer(),
        )
        assert evs[-1].event == "message.completed"
        assert evs[-1].data["in_reply_to"] == evs[0].data["message"]["seq"] == 3
        triage = await api.post("/api/triage", json={"message": STORY}, headers=bearer())
        assert triage.status_code == 201
        tid = triage.json()["session_id"]

        async def triage_answered(api: Any = api, tid: str = tid) -> bool:
            status = await api.get(f"/api/triage/{tid}", headers=bearer())
            return bool(status.json()["reply_pending"] is False)

        await until(triage_answered, "the triage session's reply")
        history = (await api.get(f"/api/conversations/sessions/{tid}", headers=bearer())).json()
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"]


async def test_a_reply_that_needs_postgresql_waits_for_it_and_is_not_counted(
    settings: Settings,
    redis_service: RedisService,
    hybrid: HybridConversationService,
    replicas: Callable[[Settings], ConversationRuntime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A session PostgreSQL has a snapshot of, whose orchestration Redis no longer holds: its
    # next reply must read it through PostgreSQL.
    manager = hybrid.manager
    # PostgreSQL is this run's shared test database: a user and session of this test alone.
    sid = uuid.uuid4().hex
    state = ConversationState(session_id=sid, user_id=f"u-{sid[:12]}", tenant_id=f"t-{sid[:12]}")
    state.append_message("user", STORY, max_history=100)
    await manager.save_conversation_state(state, event=Event(type="session.created"))
    await hybrid.snapshot_sessions([sid])
    hot = await manager.get_hot_conversation_state(sid)
    assert hot is not None and hot.durable_seq == 1 and replies.owes_reply(hot)
    assert await manager.get_version(sid, "orchestration") == 0

    url = make_url(settings.database_url)
    door = _PostgresDoor(url.host or "127.0.0.1", url.port or 5432)
    behind = settings.model_copy(
        update={
            "database_url": url.set(host="127.0.0.1", port=door.port).render_as_string(
                hide_password=False
            ),
            "generation_max_attempts": 1,
            "generation_lease_ms": 900,
            "generation_sweep_seconds": 0.1,
        }
    )
    replica = replicas(behind)
    replica_engine = create_engine(behind, pool_size=1)
    HybridConversationService(replica.interviewer.manager, replica_engine, behind).install()
    try:
        caplog.set_level(logging.WARNING, logger="backend.replies")

        async def waited_twice() -> bool:
            return sum("store unavailable" in r.getMessage() for r in caplog.records) >= 2

        replica.runner.kick(sid)
        await until(waited_twice, "the reply waiting for PostgreSQL")
        assert replies.owes_reply(await _hot(manager, sid))
        await door.open()
        await until(lambda: all_answered(manager, [sid]), "the reply after PostgreSQL")
        await assert_answered_once(manager, sid)
        started = [e for e in await manager.read_events(sid) if e.type == "message.started"]
        assert [e.data["attempt"] for e in started] == [1]
    finally:
        await replica.stop(5)
        await replica_engine.dispose()
        await door.close()


async def _hot(manager: ConversationStateManager, sid: str) -> Any:
    state = await manager.get_hot_conversation_state(sid)
    assert state is not None
    return state
