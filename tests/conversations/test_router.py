"""The session routes: list, history, info, post, delete (in-process app)."""

from __future__ import annotations

import asyncio

import httpx

from backend.state.service import ConversationStateManager
from tests.sse_helpers import GUARD, bearer, events


async def chat(api: httpx.AsyncClient, message: str, user: str = "alice", **body: str) -> str:
    response, evs = await events(
        api, "POST", "/api/agents/chat", json={"message": message, **body}, headers=bearer(user)
    )
    assert response.status_code == 200 and evs[-1].event == "message.completed"
    return response.headers["x-session-id"]


async def settled(api: httpx.AsyncClient, sid: str, user: str = "alice") -> dict:
    deadline = asyncio.get_running_loop().time() + GUARD
    while True:
        history = (await api.get(f"/api/conversations/sessions/{sid}", headers=bearer(user))).json()
        if not history["reply_pending"]:
            return history
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)


async def test_sessions_newest_first_paginated_and_scoped_to_the_user(
    api: httpx.AsyncClient,
) -> None:
    ids = [await chat(api, f"Problema número {i} com meu contrato de aluguel.") for i in range(3)]
    await chat(api, "Sou outro usuário.", user="bob")
    page = (await api.get("/api/conversations/sessions", headers=bearer())).json()
    assert [s["session_id"] for s in page["items"]] == ids[::-1]
    assert page["total"] == 3 and (page["offset"], page["limit"]) == (0, 20)
    first = page["items"][0]
    assert first["title"].startswith("Problema número 2") and first["message_count"] == 2
    second_page = (
        await api.get("/api/conversations/sessions?offset=1&limit=1", headers=bearer())
    ).json()
    assert [s["session_id"] for s in second_page["items"]] == [ids[1]]
    # Continuing the oldest session moves it to the top.
    await chat(api, "Mais um detalhe.", session_id=ids[0])
    page = (await api.get("/api/conversations/sessions", headers=bearer())).json()
    assert page["items"][0]["session_id"] == ids[0]


async def test_post_message_history_and_info(
    api: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    started = await api.post("/api/triage", json={}, headers=bearer())
    sid = started.json()["session_id"]
    posted = await api.post(
        f"/api/conversations/sessions/{sid}/messages",
        json={"message": "  Meu plano de saúde negou uma cirurgia.  "},
        headers=bearer(),
    )
    assert posted.status_code == 202
    body = posted.json()
    assert body["message"]["content"] == "Meu plano de saúde negou uma cirurgia."
    assert body["message"]["seq"] == 1 and body["session_id"] == sid
    assert body["events_url"].endswith(f"/events?last_event_id={body['event_id']}")
    stored = await manager.read_events(sid)
    assert any(e.id == body["event_id"] and e.type == "message.created" for e in stored)

    history = await settled(api, sid)
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    assert history["kind"] == "triage" and history["truncated"] is False
    info = (await api.get(f"/api/conversations/sessions/{sid}/info", headers=bearer())).json()
    assert info["message_count"] == 2 and info["messages_in_window"] == 2
    assert info["version"] == history["version"] and info["status"] == "active"
    assert 0 < info["expires_in_seconds"] <= 86_400
    assert info["stage"] in ("interviewing", "triaged")
    assert info["reply_pending"] is False and info["generating"] is None
    assert info["last_event_id"] == (await manager.read_events(sid))[-1].id
    assert info["created_at"] <= info["updated_at"]


async def test_delete_one_and_all(
    api: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    a = await chat(api, "Primeira conversa sobre um problema de consumo.")
    b = await chat(api, "Segunda conversa sobre um problema de consumo.")
    theirs = await chat(api, "A conversa do Bob.", user="bob")
    deleted = await api.delete(f"/api/conversations/sessions/{a}", headers=bearer())
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await api.get(f"/api/conversations/sessions/{a}", headers=bearer())).status_code == 404
    assert await manager.get_conversation_state(a) is None
    assert await manager.read_events(a) == []
    again = await api.delete(f"/api/conversations/sessions/{a}", headers=bearer())
    assert again.status_code == 404

    everything = await api.delete("/api/conversations/sessions", headers=bearer())
    assert everything.json() == {"deleted": 1, "not_durable": []}
    assert await manager.get_conversation_state(b) is None
    listing = (await api.get("/api/conversations/sessions", headers=bearer())).json()
    assert listing == {"items": [], "total": 0, "offset": 0, "limit": 20}
    assert await manager.get_conversation_state(theirs) is not None  # Bob's is untouched
