"""A post whose answer never arrived, retried with its Idempotency-Key, against real uvicorn.

Between the client and the replica sits a proxy that delivers the request and drops the
answer once the replica starts sending it (`tests/cut_proxy.py`): the write happened, the
client saw only a dropped connection. The retry, straight to the replica, must get the first
answer and store nothing new; the CLI's chat client must do that retry by itself.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from backend.cli.chat import ChatClient
from backend.core.auth import create_token
from backend.core.config import Settings
from tests.cut_proxy import CutProxy
from tests.sse_helpers import GUARD, bearer, events

pytestmark = pytest.mark.e2e
STORY = "Fui demitido sem justa causa e a empresa não pagou minhas verbas rescisórias."


@pytest.fixture
async def proxy(live_api: str) -> AsyncIterator[CutProxy]:
    cut = await CutProxy(int(live_api.rsplit(":", 1)[1])).start()
    try:
        yield cut
    finally:
        await cut.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=GUARD) as http:
        yield http


def keyed(key: str) -> dict[str, str]:
    return {**bearer(), "Idempotency-Key": key}


async def sessions_of_alice(client: httpx.AsyncClient, base: str) -> list[str]:
    page = await client.get(f"{base}/api/conversations/sessions", headers=bearer())
    return [s["session_id"] for s in page.json()["items"]]


async def user_messages(client: httpx.AsyncClient, base: str, sid: str) -> list[dict]:
    history = await client.get(f"{base}/api/conversations/sessions/{sid}", headers=bearer())
    return [m for m in history.json()["messages"] if m["role"] == "user"]


async def test_a_post_whose_answer_was_dropped_is_stored_once(
    live_api: str, proxy: CutProxy, client: httpx.AsyncClient
) -> None:
    opened = await client.post(f"{live_api}/api/triage", json={}, headers=bearer())
    sid = opened.json()["session_id"]
    url = f"/api/conversations/sessions/{sid}/messages"
    key = str(uuid.uuid4())
    with pytest.raises(httpx.TransportError):
        await client.post(proxy.url + url, json={"message": STORY}, headers=keyed(key))
    assert proxy.cut == 1
    (stored,) = await user_messages(client, live_api, sid)  # the write did happen
    retry = await client.post(live_api + url, json={"message": STORY}, headers=keyed(key))
    assert retry.status_code == 202, retry.text
    assert retry.json()["message"] == stored
    assert await user_messages(client, live_api, sid) == [stored]
    # The answer's event id is the stored message.created event: resuming after it works.
    history = await client.get(f"{live_api}/api/conversations/sessions/{sid}", headers=bearer())
    assert history.json()["message_count"] >= 1
    _, evs = await events(
        client,
        "GET",
        f"{live_api}/api/conversations/sessions/{sid}/events",
        headers={**bearer(), "Last-Event-ID": "0-0"},
        stop=lambda e: e.event == "message.created",
    )
    assert evs[-1].id == retry.json()["event_id"]


async def test_a_chat_whose_answer_was_dropped_opens_one_session(
    live_api: str, proxy: CutProxy, client: httpx.AsyncClient
) -> None:
    key = str(uuid.uuid4())
    with pytest.raises(httpx.TransportError):
        await events(
            client,
            "POST",
            f"{proxy.url}/api/agents/chat",
            json={"message": STORY},
            headers=keyed(key),
        )
    assert proxy.cut == 1
    (first_sid,) = await sessions_of_alice(client, live_api)  # stored, but the client never knew
    response, evs = await events(
        client, "POST", f"{live_api}/api/agents/chat", json={"message": STORY}, headers=keyed(key)
    )
    assert response.status_code == 200 and response.headers["x-session-id"] == first_sid
    assert evs[0].event == "message.created" and evs[0].data["message"]["seq"] == 1
    assert evs[-1].event == "message.completed"
    assert await sessions_of_alice(client, live_api) == [first_sid]
    assert [m["content"] for m in await user_messages(client, live_api, first_sid)] == [STORY]


async def test_a_client_that_hangs_up_right_after_sending(
    live_api: str, client: httpx.AsyncClient
) -> None:
    """A raw socket sends the whole request and closes at once; the retry opens no second
    session whether or not the first request got stored."""
    key = str(uuid.uuid4())
    body = json.dumps({"message": STORY}).encode()
    head = (
        f"POST /api/triage HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {bearer()['Authorization']}\r\nIdempotency-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    host, port = live_api.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + body)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    retry = await client.post(f"{live_api}/api/triage", json={"message": STORY}, headers=keyed(key))
    assert retry.status_code == 201, retry.text
    sid = retry.json()["session_id"]
    assert await sessions_of_alice(client, live_api) == [sid]
    assert [m["content"] for m in await user_messages(client, live_api, sid)] == [STORY]


async def test_triage_chat_client_retries_a_dropped_post_with_its_key(
    settings: Settings, live_api: str, proxy: CutProxy, client: httpx.AsyncClient
) -> None:
    token = create_token(settings, "alice", "acme")
    chat = ChatClient([proxy.url, live_api], token, reconnect_timeout=GUARD)
    try:
        reply = await asyncio.wait_for(chat.send(STORY), GUARD)
    finally:
        await chat.aclose()
    assert proxy.cut == 1  # the first post was dropped, the second went to the replica
    assert await sessions_of_alice(client, live_api) == [reply.session_id]
    messages = await user_messages(client, live_api, reply.session_id)
    assert [(m["seq"], m["content"]) for m in messages] == [(reply.seq, STORY)]
    history = await client.get(
        f"{live_api}/api/conversations/sessions/{reply.session_id}", headers=bearer()
    )
    (answer,) = [m for m in history.json()["messages"] if m["role"] == "assistant"]
    assert answer["content"] == reply.text
