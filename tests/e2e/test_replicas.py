"""Two real uvicorn replicas on loopback sharing one Redis: resume, concurrency, crash, shutdown.

Replies are paced (OFFLINE_CHUNK_DELAY_MS) so they can be cut in the middle.
"""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from backend.state.service import ConversationStateManager
from tests.e2e.conftest import StartReplicas
from tests.sse_helpers import GUARD, Ev, bearer, completed, events, stream, text_of

pytestmark = pytest.mark.e2e

# uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
GRACEFUL_EXIT = (0, -signal.SIGTERM)
FIRST = (
    "Fui demitido sem justa causa há duas semanas e a empresa não pagou as verbas rescisórias "
    "nem liberou o FGTS. Trabalhei lá por quatro anos com carteira assinada."
)


async def chat_until(
    client: httpx.AsyncClient, base: str, n_deltas: int, message: str = FIRST
) -> tuple[str, list[Ev]]:
    """POST /api/agents/chat and read until `n_deltas` deltas; then disconnect."""
    got: list[Ev] = []
    session_id = ""

    async def read() -> None:
        nonlocal session_id
        async for ev in stream(
            client, "POST", f"{base}/api/agents/chat", json={"message": message}, headers=bearer()
        ):
            got.append(ev)
            session_id = ev.data["session_id"]
            if sum(e.event == "message.delta" for e in got) >= n_deltas:
                return

    await asyncio.wait_for(read(), GUARD)
    return session_id, got


async def wait_settled(client: httpx.AsyncClient, base: str, sid: str) -> dict:
    """Poll the history until no reply is owed (hang guard only)."""
    deadline = asyncio.get_running_loop().time() + GUARD
    while True:
        history = (
            await client.get(f"{base}/api/conversations/sessions/{sid}", headers=bearer())
        ).json()
        if not history["reply_pending"]:
            return history
        assert asyncio.get_running_loop().time() < deadline, history
        await asyncio.sleep(0.1)


async def test_resume_on_another_replica_gets_exactly_the_rest(
    start_replicas: StartReplicas, manager: ConversationStateManager
) -> None:
    a, b = start_replicas(2)
    async with httpx.AsyncClient(timeout=GUARD) as client:
        sid, first_part = await chat_until(client, a.url, n_deltas=3)
        assert first_part[0].event == "message.created"
        cut = first_part[-1]
        assert cut.event == "message.delta"

        response, rest = await events(
            client,
            "GET",
            f"{b.url}/api/conversations/sessions/{sid}/events",
            headers={**bearer(), "Last-Event-ID": cut.id},
            stop=completed,
        )
        assert response.status_code == 200
        # Exactly the stream entries after the cut, up to and including the completed reply.
        stored = await manager.read_events(sid, after=cut.id)
        upto = next(i for i, e in enumerate(stored) if e.type == "message.completed")
        assert [(e.id, e.event) for e in rest] == [(e.id, e.type) for e in stored[: upto + 1]]
        reply_id = cut.data["reply_id"]
        whole = rest[-1].data["message"]["content"]
        assert (text_of(first_part, reply_id) + text_of(rest, reply_id)).strip() == whole
        assert len(whole.split()) > 10  # the reply really was cut in the middle


async def test_concurrent_posts_through_both_replicas_lose_nothing(
    start_replicas: StartReplicas,
) -> None:
    a, b = start_replicas(2, offline_chunk_delay_ms=5)
    async with httpx.AsyncClient(timeout=GUARD) as client:
        started = await client.post(f"{a.url}/api/triage", json={}, headers=bearer())
        assert started.status_code == 201
        sid = started.json()["session_id"]
        texts = [f"Mensagem {i}: o locador quer me despejar." for i in range(12)]

        async def post(i: int) -> httpx.Response:
            base = (a, b)[i % 2].url
            return await client.post(
                f"{base}/api/conversations/sessions/{sid}/messages",
                json={"message": texts[i]},
                headers=bearer(),
            )

        answers = await asyncio.gather(*(post(i) for i in range(len(texts))))
        assert [r.status_code for r in answers] == [202] * len(texts)
        history = await wait_settled(client, b.url, sid)

    users = [m for m in history["messages"] if m["role"] == "user"]
    assert sorted(m["content"] for m in users) == sorted(texts)
    seqs = [m["seq"] for m in history["messages"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert history["messages"][-1]["role"] == "assistant"
    assert history["generating"] is None
    # Every message has been answered by a reply that started after it was stored.
    answered = max(
        m["metadata"]["in_reply_to"] for m in history["messages"] if m["role"] == "assistant"
    )
    assert answered == max(m["seq"] for m in users)


async def test_sigkill_mid_reply_recovers_on_the_other_replica(
    start_replicas: StartReplicas,
) -> None:
    a, b = start_replicas(2, offline_chunk_delay_ms=60)
    async with httpx.AsyncClient(timeout=GUARD) as client:
        sid, first_part = await chat_until(client, a.url, n_deltas=2)
        a.kill()
        dead_reply = first_part[-1].data["reply_id"]

        response, rest = await events(
            client,
            "GET",
            f"{b.url}/api/conversations/sessions/{sid}/events",
            headers={**bearer(), "Last-Event-ID": first_part[-1].id},
            stop=completed,
        )
        assert response.status_code == 200
        error = next(e for e in rest if e.event == "error")
        assert error.data["reply_id"] == dead_reply
        assert error.data["code"] == "generation_interrupted" and error.data["retrying"] is True
        started = [e for e in rest if e.event == "message.started"]
        assert started and started[0].data["reply_id"] != dead_reply
        done = rest[-1]
        assert done.data["reply_id"] == started[0].data["reply_id"]
        assert done.data["in_reply_to"] == first_part[0].data["message"]["seq"]
        history = await wait_settled(client, b.url, sid)
        assert history["messages"][-1]["metadata"]["reply_id"] == done.data["reply_id"]
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"]


async def test_sigterm_lets_the_running_reply_finish(start_replicas: StartReplicas) -> None:
    a, b = start_replicas(2, offline_chunk_delay_ms=40, shutdown_grace_seconds=20)
    async with httpx.AsyncClient(timeout=GUARD) as client:
        sid, first_part = await chat_until(client, a.url, n_deltas=2)
        reply_id = first_part[-1].data["reply_id"]
        terminating = asyncio.get_running_loop().run_in_executor(None, a.terminate)
        response, rest = await events(
            client,
            "GET",
            f"{b.url}/api/conversations/sessions/{sid}/events",
            headers={**bearer(), "Last-Event-ID": first_part[-1].id},
            stop=completed,
        )
        assert await asyncio.wait_for(terminating, GUARD) in GRACEFUL_EXIT
    assert response.status_code == 200
    assert not any(e.event == "error" for e in rest)
    assert rest[-1].data["reply_id"] == reply_id  # finished by A during its grace period


async def test_sigterm_past_the_grace_period_closes_and_hands_over(
    start_replicas: StartReplicas,
) -> None:
    a, b = start_replicas(2, offline_chunk_delay_ms=80, shutdown_grace_seconds=0.2)
    async with httpx.AsyncClient(timeout=GUARD) as client:
        sid, first_part = await chat_until(client, a.url, n_deltas=2)
        reply_id = first_part[-1].data["reply_id"]
        terminating = asyncio.get_running_loop().run_in_executor(None, a.terminate)
        response, rest = await events(
            client,
            "GET",
            f"{b.url}/api/conversations/sessions/{sid}/events",
            headers={**bearer(), "Last-Event-ID": first_part[-1].id},
            stop=completed,
        )
        assert await asyncio.wait_for(terminating, GUARD) in GRACEFUL_EXIT
    assert response.status_code == 200
    error = next(e for e in rest if e.event == "error")
    assert (error.data["reply_id"], error.data["retrying"]) == (reply_id, True)
    assert rest[-1].event == "message.completed" and rest[-1].data["reply_id"] != reply_id


async def test_a_token_in_the_stream_url_stays_out_of_the_access_log(
    start_replicas: StartReplicas,
) -> None:
    # EventSource cannot send headers, so the stream also takes ?access_token=.
    (replica,) = start_replicas(1, log_level="info")
    token = bearer()["Authorization"].removeprefix("Bearer ")
    url = f"{replica.url}/api/conversations/sessions/nenhuma/events"
    async with httpx.AsyncClient(timeout=GUARD) as client:
        answer = await client.get(url, params={"access_token": token, "last_event_id": "0-0"})
    assert answer.status_code == 404  # authenticated; the session is not the user's
    deadline = asyncio.get_running_loop().time() + GUARD
    while "/events?" not in replica.output():
        assert asyncio.get_running_loop().time() < deadline, replica.output()
        await asyncio.sleep(0.05)
    logged = replica.output()
    assert token not in logged
    assert "access_token=[redacted]&last_event_id=0-0" in logged
