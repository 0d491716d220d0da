"""Redis loses its last writes (an AOF cut, as after a power loss with `appendfsync everysec`):
a client waiting for the reply to a message that no longer exists is told so (`reload`,
`stream_lost`) instead of waiting, and so is a client that reconnects with the lost id.

A private `redis-server` with an AOF, stopped, its AOF cut back to what it held before the
message, and started again on the same port, under a replica served by uvicorn.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from backend.core.config import Settings
from tests.conftest import make_settings
from tests.redis_cluster import free_port
from tests.sse_helpers import GUARD, Ev, bearer, events, stream

STORY = "Fui demitido sem justa causa e a empresa não pagou as verbas rescisórias nem o FGTS."
LATER = "Foi há duas semanas e tenho a carteira de trabalho assinada."


class _AofRedis:
    """A `redis-server` of this test alone that writes every command to its AOF at once."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.dir), "--save", ""),
                *("--appendonly", "yes", "--appendfsync", "always"),
                *("--aof-use-rdb-preamble", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + GUARD
        while True:
            try:
                if client.info("persistence")["loading"] == 0:
                    break
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        client.close()

    def aof(self) -> Path:
        (incr,) = self.dir.glob("appendonlydir/*.incr.aof")
        return incr

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[_AofRedis]:
    server = _AofRedis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


async def test_a_client_waiting_for_a_reply_to_a_lost_message_is_told(
    aof_redis: _AofRedis, serve: Callable[[Settings], Awaitable[str]]
) -> None:
    settings = make_settings(redis_url=aof_redis.url, offline_chunk_delay_ms=300)
    base = await serve(settings)
    async with httpx.AsyncClient(base_url=base, timeout=GUARD) as client:
        first, _ = await events(
            client, "POST", "/api/agents/chat", json={"message": STORY}, headers=bearer()
        )
        sid = first.headers["x-session-id"]
        kept = aof_redis.aof().stat().st_size  # all Redis will hold after the cut

        # The next message; its reply streams slowly: the client is waiting for it.
        got: list[Ev] = []
        seen_delta = asyncio.Event()

        async def chat() -> None:
            async for ev in stream(
                client,
                "POST",
                "/api/agents/chat",
                json={"message": LATER, "session_id": sid},
                headers=bearer(),
            ):
                got.append(ev)
                if ev.event == "message.delta":
                    seen_delta.set()

        waiting = asyncio.create_task(chat())
        await asyncio.wait_for(seen_delta.wait(), GUARD)
        lost_id = got[0].id
        assert got[0].event == "message.created"

        # Power loss: Redis comes back without the message and what followed it.
        aof_redis.stop()
        with aof_redis.aof().open("r+b") as aof:
            aof.truncate(kept)
        aof_redis.start()

        # The waiting client is told, and its stream ends (its reply will never come).
        await asyncio.wait_for(waiting, GUARD)
        assert got[-1].event == "reload"
        assert got[-1].data["reason"] == "stream_lost"
        # A client reconnecting with the lost id is told the same.
        async for ev in stream(
            client,
            "GET",
            f"/api/conversations/sessions/{sid}/events",
            headers={**bearer(), "Last-Event-ID": lost_id},
        ):
            assert (ev.event, ev.data["reason"]) == ("reload", "stream_lost")
            break
        # The history shows the message is gone: the client sends it again.
        history = await client.get(f"/api/conversations/sessions/{sid}", headers=bearer())
        assert [m["content"] for m in history.json()["messages"] if m["role"] == "user"] == [STORY]
