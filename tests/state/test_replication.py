"""STATE_WRITE_REPLICAS on a single master with one replica (private servers): a write is
acknowledged only once the replica holds it; short of that the client gets 503
state_not_replicated, and its retry with the same Idempotency-Key stores the message once."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from backend.core import metrics
from backend.core.config import Settings
from backend.state.keys import Keys
from tests.conftest import client_for, make_settings
from tests.faults.chat import Chat
from tests.redis_server import RedisServer


@pytest.fixture
def servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    master = RedisServer().start()
    replica = RedisServer(extra_args=("--replicaof", "127.0.0.1", str(master.port))).start()
    try:
        yield master, replica.wait_replicating()
    finally:
        assert replica.proc is not None
        os.kill(replica.proc.pid, signal.SIGCONT)
        replica.destroy()
        master.destroy()


@pytest.fixture
def settings(servers: tuple[RedisServer, RedisServer], tmp_path: Path) -> Settings:
    return make_settings(
        redis_url=servers[0].url,
        archive_dir=str(tmp_path / "archive"),
        state_write_replicas=1,
        state_write_replicas_timeout_ms=200,
    )


@pytest.fixture
async def chat(settings: Settings) -> AsyncIterator[Chat]:
    async for client in client_for(settings):
        yield Chat(client, settings)


async def post(chat: Chat, session_id: str, message: str, key: str) -> httpx.Response:
    return await chat.client.post(
        f"/api/conversations/sessions/{session_id}/messages",
        json={"message": message},
        headers={**chat.headers, "Idempotency-Key": key},
    )


async def test_an_acknowledged_message_is_on_the_replica(
    chat: Chat, servers: tuple[RedisServer, RedisServer], settings: Settings
) -> None:
    session_id = await chat.start()
    response = await post(chat, session_id, "segunda", uuid.uuid4().hex)
    assert response.status_code == 202, response.text
    version = response.json()["version"]
    with servers[1].client() as replica:
        stored = replica.hget(Keys(settings.key_prefix).conversation(session_id), "version")
    # Read from the replica right after the 202, with no wait: it was there before the answer.
    assert stored is not None and int(stored) >= version


async def test_a_write_the_replica_does_not_confirm_is_refused_then_stored_once(
    chat: Chat, servers: tuple[RedisServer, RedisServer]
) -> None:
    session_id = await chat.start()
    await chat.assert_answered_once()
    replica = servers[1].proc
    assert replica is not None
    refused_before = metrics.M.not_replicated._value.get()

    os.kill(replica.pid, signal.SIGSTOP)  # connected, but confirms nothing
    key = uuid.uuid4().hex
    for _ in range(2):  # the retry is answered from the stored write: not confirmed either
        response = await post(chat, session_id, "durante a pausa", key)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "state_not_replicated"
        assert response.headers["Retry-After"] == "1"
    assert metrics.M.not_replicated._value.get() >= refused_before + 2

    os.kill(replica.pid, signal.SIGCONT)
    response = await post(chat, session_id, "durante a pausa", key)
    assert response.status_code == 202, response.text
    chat.acked[session_id].append("durante a pausa")
    await chat.assert_api_has_each_once()
    # The reply writes were refused too while the replica was paused; the session still gets
    # its one reply once it is back.
    await chat.assert_answered_once()


async def test_replies_under_load_with_the_setting(chat: Chat) -> None:
    """Every write waits, the reply runner's too: a chat works as without the setting."""
    sessions = [await chat.start() for _ in range(3)]
    for _ in range(3):
        statuses = await asyncio.gather(*(chat.post(sid) for sid in sessions))
        assert statuses == [202] * len(sessions)
    await chat.assert_api_has_each_once()
    await chat.assert_answered_once()
