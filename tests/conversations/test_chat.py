"""POST /api/agents/chat: a message in, the reply out as SSE (in-process app)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from backend.conversations.chat import reply_filters
from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.state.schemas import StreamEntry
from backend.state.service import ConversationStateManager
from backend.streaming.events import parse_stream_id
from tests.sse_helpers import GUARD, bearer, events, text_of

FIRST = "Fui demitido sem justa causa e a empresa não pagou minhas verbas rescisórias."


async def test_chat_starts_a_session_and_streams_the_reply(
    api: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    response, evs = await events(
        api, "POST", "/api/agents/chat", json={"message": f"  {FIRST}  "}, headers=bearer()
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    sid = response.headers["x-session-id"]
    assert [e.event for e in evs[:2]] == ["message.created", "message.started"]
    assert evs[-1].event == "message.completed"
    assert {e.event for e in evs} <= {
        "message.created",
        "message.started",
        "triage.updated",
        "message.delta",
        "message.completed",
    }
    assert all(e.data["session_id"] == sid for e in evs)
    created = evs[0].data["message"]
    assert (created["seq"], created["role"], created["content"]) == (1, "user", FIRST)
    # Every event id is the Redis Stream entry id, strictly increasing.
    ids = [parse_stream_id(e.id) for e in evs]
    assert ids == sorted(set(ids))
    stored = await manager.read_events(sid)
    assert [(e.id, e.type) for e in stored] == [(e.id, e.event) for e in evs]
    # The deltas add up to the stored reply.
    done = evs[-1].data
    assert done["in_reply_to"] == 1 and done["message"]["role"] == "assistant"
    assert text_of(evs, done["reply_id"]).strip() == done["message"]["content"]
    state = await manager.get_conversation_state(sid)
    assert state is not None and [m.role for m in state.messages] == ["user", "assistant"]
    assert state.messages[1].content == done["message"]["content"]
    assert state.user_id == "alice" and state.tenant_id == "acme"


async def test_chat_continues_a_session(api: httpx.AsyncClient) -> None:
    first, _ = await events(
        api, "POST", "/api/agents/chat", json={"message": FIRST}, headers=bearer()
    )
    sid = first.headers["x-session-id"]
    again, evs = await events(
        api,
        "POST",
        "/api/agents/chat",
        json={"message": "Foi há duas semanas, trabalhei lá quatro anos.", "session_id": sid},
        headers=bearer(),
    )
    assert again.headers["x-session-id"] == sid
    assert evs[0].data["message"]["seq"] == 3
    assert evs[-1].event == "message.completed" and evs[-1].data["in_reply_to"] == 3
    history = (await api.get(f"/api/conversations/sessions/{sid}", headers=bearer())).json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"] * 2
    assert history["last_event_id"] == evs[-1].id
    assert history["reply_pending"] is False and history["generating"] is None


def _entry(type_: str, in_reply_to: int | None, **data: object) -> StreamEntry:
    payload = dict(data)
    if in_reply_to is not None:
        payload["in_reply_to"] = in_reply_to
    return StreamEntry(id="1-0", type=type_, version=1, data=payload)


def test_the_chat_stream_of_a_message_ends_with_the_reply_that_answers_it() -> None:
    ends, skip = reply_filters(5)
    # An earlier reply, still running when message 5 arrived, is skipped and does not end it.
    assert skip(_entry("message.delta", 3)) and not ends(_entry("message.completed", 3))
    # A reply that started after message 5 (answering it, maybe with later ones) ends it.
    assert not skip(_entry("message.delta", 5)) and ends(_entry("message.completed", 6))
    # An interrupted attempt that will be retried does not end it; a final error does.
    assert not ends(_entry("error", 5, retrying=True)) and ends(_entry("error", 5, retrying=False))
    # Everything else passes through.
    assert not skip(_entry("triage.updated", None)) and not skip(_entry("message.created", None))


async def test_events_stored_by_one_write_reach_the_client_in_one_write(
    settings: Settings, redis_service: RedisService
) -> None:
    # What a client's socket receives, write by write (each ASGI body message is one write):
    # the events one state write stored are read together and sent together, so a chat
    # message costs the replica three writes to its client, not one per event.
    from backend.main import create_app

    app = create_app(settings)
    body = json.dumps({"message": FIRST}).encode()
    token = bearer()["Authorization"].encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/agents/chat",
        "raw_path": b"/api/agents/chat",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"authorization", token),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
    }
    received = [{"type": "http.request", "body": body, "more_body": False}]
    done = asyncio.Event()
    writes: list[list[str]] = []

    async def receive() -> dict[str, Any]:
        if received:
            return received.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunk = message["body"].decode()
            writes.append([line[7:] for line in chunk.splitlines() if line.startswith("event: ")])
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app(scope, receive, send), GUARD)
    kinds = [kind for write in writes for kind in write]
    assert kinds[0] == "message.created" and kinds[-1] == "message.completed"
    assert writes[0] == ["message.created"]  # the acknowledgement goes out at once
    # The reply's start (with the case analysis) and its end are one write each.
    assert ["message.started", "triage.updated"] in [w[:2] for w in writes]
    assert writes[-1][-2:] == ["message.delta", "message.completed"]
    assert len(writes) < len(kinds)
