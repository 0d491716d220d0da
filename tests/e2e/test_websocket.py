"""The WebSocket transport against two real uvicorn replicas: resume after a kill, client_id.

Replies are paced (OFFLINE_CHUNK_DELAY_MS) so they can be cut in the middle.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from backend.state.service import ConversationStateManager
from tests.conversations.ws_helpers import (
    as_events,
    closed_with,
    message,
    read_until,
    recv,
    send,
    socket,
    ws_url,
)
from tests.e2e.conftest import StartReplicas
from tests.e2e.test_replicas import FIRST, wait_settled
from tests.sse_helpers import GUARD, bearer

pytestmark = pytest.mark.e2e


def _is(kind: str):  # type: ignore[no-untyped-def]
    return lambda f: f["type"] == "event" and f["event"] == kind


async def test_killed_replica_the_client_resumes_on_the_other_with_exactly_the_rest(
    start_replicas: StartReplicas, manager: ConversationStateManager
) -> None:
    a, b = start_replicas(2, offline_chunk_delay_ms=60)
    async with socket(ws_url(a.url), bearer()) as ws:
        await send(ws, message(FIRST, "first-try"))
        ack = await recv(ws)
        assert ack["type"] == "ack" and ack["seq"] == 1
        deltas = 0

        def two_deltas(frame: dict) -> bool:
            nonlocal deltas
            deltas += _is("message.delta")(frame)
            return deltas >= 2

        first_part = as_events(await read_until(ws, two_deltas))
        a.kill()
    sid, cut = ack["session_id"], first_part[-1]
    assert first_part[0].event == "message.created" and first_part[0].id == ack["event_id"]

    async with socket(ws_url(b.url, sid), {**bearer(), "Last-Event-ID": cut.id}) as ws:
        rest = as_events(await read_until(ws, _is("message.completed")))

    stored = await manager.read_events(sid, after=cut.id)
    upto = next(i for i, e in enumerate(stored) if e.type == "message.completed")
    assert [(e.id, e.event) for e in rest] == [(e.id, e.type) for e in stored[: upto + 1]]
    # The same JSON as the SSE route's `data`.
    assert rest[-1].data["session_id"] == sid and rest[-1].data["in_reply_to"] == 1
    async with httpx.AsyncClient(timeout=GUARD) as client:
        history = await wait_settled(client, b.url, sid)
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]


async def test_a_frame_resent_with_its_client_id_is_stored_once(
    start_replicas: StartReplicas,
) -> None:
    a, b = start_replicas(2, offline_chunk_delay_ms=1)
    async with socket(ws_url(a.url), bearer()) as ws:
        await send(ws, message("Meu chefe não paga horas extras.", "c-1"))
        opened = await recv(ws)
        await send(ws, message("Trabalho doze horas por dia.", "c-2"))
        first = await read_until(ws, lambda f: f["type"] == "ack")
    sid, ack = opened["session_id"], first[-1]
    assert (ack["seq"], ack["replayed"]) == (2, False)

    # The socket dropped before the client saw the ack: it resends to another replica.
    async with socket(ws_url(b.url, sid), bearer()) as ws:
        await send(ws, message("Trabalho doze horas por dia.", "c-2"))
        again = await read_until(ws, lambda f: f["type"] == "ack")
        await send(ws, message("Outra coisa.", "c-2"))  # same id, another text
        reused = await read_until(ws, lambda f: f["type"] == "error")
    assert again[-1]["replayed"] is True
    assert (again[-1]["seq"], again[-1]["event_id"]) == (ack["seq"], ack["event_id"])
    assert reused[-1]["error"]["code"] == "idempotency_key_reused"
    assert reused[-1]["client_id"] == "c-2"

    async with httpx.AsyncClient(timeout=GUARD) as client:
        history = await wait_settled(client, b.url, sid)
    users = [m["content"] for m in history["messages"] if m["role"] == "user"]
    assert users == ["Meu chefe não paga horas extras.", "Trabalho doze horas por dia."]


async def test_shutdown_closes_with_going_away_and_the_client_resumes(
    start_replicas: StartReplicas,
) -> None:
    # On SIGTERM the replica ends its streams itself (close reason "shutdown"), before uvicorn
    # would drop the sockets with 1012 Service Restart.
    a, b = start_replicas(2)
    async with socket(ws_url(a.url), bearer()) as ws:
        await send(ws, message("Quero saber dos meus direitos."))
        ack = await recv(ws)
        terminating = asyncio.get_running_loop().run_in_executor(None, a.terminate)
        code, seen = await closed_with(ws)
        await asyncio.wait_for(terminating, GUARD)
    assert code == 1001
    last = as_events(seen)[-1].id if as_events(seen) else ack["event_id"]
    async with socket(ws_url(b.url, ack["session_id"]), {**bearer(), "Last-Event-ID": last}) as ws:
        rest = as_events(await read_until(ws, _is("message.completed")))
    assert rest[-1].data["in_reply_to"] == ack["seq"]
