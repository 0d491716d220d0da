"""Redis loses its last writes (an AOF cut, as after a power loss with `appendfsync everysec`):
a client waiting for the reply to a message that no longer exists is told so (`reload`,
`stream_lost`) instead of waiting, and so is a client that reconnects with the lost id.

A private `redis-server` with an AOF, stopped, its AOF cut back to what it held before the
message, and started again on the same port, under a replica served by uvicorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from backend.core.config import Settings
from tests.conftest import make_settings
from tests.redis_server import RedisServer
from tests.sse_helpers import GUARD, Ev, bearer, events, stream

STORY = "Fui demitido sem justa causa e a empresa não pagou as verbas rescisórias nem o FGTS."
LATER = "Foi há duas semanas e tenho a carteira de trabalho assinada."


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """Every command in a plain AOF (no RDB preamble), so the test can cut it back."""
    server = RedisServer(tmp_path, appendonly=True, extra_args=("--aof-use-rdb-preamble", "no"))
    server.start()
    try:
        yield server
    finally:
        server.destroy()


async def test_a_client_waiting_for_a_reply_to_a_lost_message_is_told(
    aof_redis: RedisServer, serve: Callable[[Settings], Awaitable[str]]
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
