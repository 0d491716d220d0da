"""GET /sessions/{id}/events against a real uvicorn server: tail, resume, reload, endings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.state.schemas import ConversationState, Event
from backend.state.service import ConversationStateManager
from tests.sse_helpers import GUARD, Ev, bearer, completed, events, stream


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=GUARD) as c:
        yield c


async def chat_session(client: httpx.AsyncClient, base: str) -> tuple[str, list[Ev]]:
    response, evs = await events(
        client,
        "POST",
        f"{base}/api/agents/chat",
        json={"message": "Comprei uma geladeira que veio com defeito e a loja não troca."},
        headers=bearer(),
        stop=completed,
    )
    assert response.status_code == 200
    return response.headers["x-session-id"], evs


async def test_a_new_stream_gets_new_events_only(live_api: str, client: httpx.AsyncClient) -> None:
    sid, _ = await chat_session(client, live_api)
    url = f"{live_api}/api/conversations/sessions/{sid}/events"
    got: list[Ev] = []

    async def read() -> None:
        async for ev in stream(client, "GET", url, headers=bearer()):
            got.append(ev)
            if ev.event == "message.completed":
                return

    reader = asyncio.create_task(asyncio.wait_for(read(), GUARD))
    await asyncio.sleep(0.3)  # let the stream open; events before it are not replayed
    posted = await client.post(
        f"{live_api}/api/conversations/sessions/{sid}/messages",
        json={"message": "Foi na semana passada."},
        headers=bearer(),
    )
    await reader
    assert got[0].event == "message.created" and got[0].id == posted.json()["event_id"]
    assert got[-1].data["in_reply_to"] == 3


@pytest.mark.parametrize("how", ["header", "query", "both"])
async def test_resume_after_last_event_id(
    live_api: str, client: httpx.AsyncClient, manager: ConversationStateManager, how: str
) -> None:
    sid, evs = await chat_session(client, live_api)
    cut = evs[2]
    url = f"{live_api}/api/conversations/sessions/{sid}/events"
    headers, params = bearer(), {}
    if how in ("header", "both"):
        headers["Last-Event-ID"] = cut.id
    if how in ("query", "both"):
        params["last_event_id"] = evs[0].id if how == "both" else cut.id  # the header wins
    response, rest = await events(
        client, "GET", url, headers=headers, params=params, stop=completed
    )
    assert response.status_code == 200
    assert [(e.id, e.event) for e in rest] == [(e.id, e.event) for e in evs[3:]]


async def test_stream_accepts_the_token_as_a_query_parameter(
    live_api: str, client: httpx.AsyncClient
) -> None:
    sid, evs = await chat_session(client, live_api)
    token = bearer()["Authorization"].split()[1]
    url = f"{live_api}/api/conversations/sessions/{sid}/events"
    response, rest = await events(
        client,
        "GET",
        url,
        params={"access_token": token, "last_event_id": evs[-2].id},
        stop=completed,
    )
    assert response.status_code == 200 and [e.id for e in rest] == [evs[-1].id]
    anonymous = await client.get(url)
    assert anonymous.status_code == 401


async def test_trimmed_history_gets_a_reload_event(
    settings: Settings,
    redis_service: RedisService,
    client: httpx.AsyncClient,
    serve: Callable[[Settings], Awaitable[str]],
) -> None:
    # A short stream: approximate MAXLEN trims whole nodes of 100 entries.
    short = settings.model_copy(update={"stream_maxlen": 10})
    manager = ConversationStateManager(redis_service, short)
    state = ConversationState(session_id="s1", user_id="alice", tenant_id="acme")
    _, first_id = await manager.update_returning_event(
        "s1", lambda s: Event(type="session.created"), create=lambda: state
    )
    for i in range(300):
        await manager.append_event("s1", Event(type="message.delta", data={"i": i}))
    last = (await manager.read_events("s1", count=10_000))[-1].id
    base = await serve(short)
    url = f"{base}/api/conversations/sessions/s1/events"
    got: list[Ev] = []

    async def read() -> None:
        async for ev in stream(client, "GET", url, headers={**bearer(), "Last-Event-ID": first_id}):
            got.append(ev)
            if len(got) == 2:
                return

    task = asyncio.create_task(asyncio.wait_for(read(), GUARD))
    await asyncio.sleep(0.3)
    new_id = await manager.append_event("s1", Event(type="message.delta", data={"i": "new"}))
    await task
    assert got[0].event == "reload" and got[0].id == last
    assert got[0].data["reason"] == "trimmed"
    assert got[0].data["history_url"] == "/api/conversations/sessions/s1"
    assert (got[1].id, got[1].data["i"]) == (new_id, "new")


async def test_lost_stream_gets_a_reload_event_from_the_start(
    live_api: str, client: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    sid, evs = await chat_session(client, live_api)
    await manager.redis.client.delete(manager.keys.events(sid))  # e.g. restored from PostgreSQL
    url = f"{live_api}/api/conversations/sessions/{sid}/events"
    got: list[Ev] = []

    async def read() -> None:
        async for ev in stream(
            client, "GET", url, headers={**bearer(), "Last-Event-ID": evs[-1].id}
        ):
            got.append(ev)
            if len(got) == 2:
                return

    task = asyncio.create_task(asyncio.wait_for(read(), GUARD))
    await asyncio.sleep(0.3)
    new_id = await manager.append_event(sid, Event(type="note", data={}))
    await task
    assert (got[0].event, got[0].id, got[0].data["reason"]) == ("reload", "0-0", "stream_lost")
    assert got[1].id == new_id
    # Resuming from the reload event's id needs no further reload.
    _, again = await events(
        client, "GET", url, headers={**bearer(), "Last-Event-ID": "0-0"}, stop=lambda e: True
    )
    assert again[0].id == new_id


async def test_deleting_the_session_ends_its_streams(
    settings: Settings, serve: Callable[[Settings], Awaitable[str]], client: httpx.AsyncClient
) -> None:
    # The replica checks and sweeps its open streams an hour apart: only the deletion's own
    # notification can end the stream within the guard.
    long = {"stream_check_seconds": 3_600, "stream_sweep_seconds": 3_600}
    live_api = await serve(settings.model_copy(update=long))
    sid, _ = await chat_session(client, live_api)
    url = f"{live_api}/api/conversations/sessions/{sid}/events"
    reader = asyncio.create_task(events(client, "GET", url, headers=bearer()))
    await asyncio.sleep(0.3)
    deleted = await client.delete(f"{live_api}/api/conversations/sessions/{sid}", headers=bearer())
    assert deleted.status_code == 204
    _, got = await asyncio.wait_for(reader, GUARD)  # the stream ends by itself
    assert [(e.event, e.data["code"]) for e in got] == [("error", "session_not_found")]
