"""Idempotency-Key on every post that stores something (in-process apps, real Redis).

A retry with the same key gets the first answer (same session, `seq`, `event_id`) and stores
nothing; another body with the key is a 422; duplicates sent at once store once, also when
they reach two different app instances (replicas) sharing the Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from backend.conversations.idempotency import OpenedSessions, fingerprint
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.state.service import ConversationStateManager
from tests.conftest import client_for
from tests.conversations.test_bad_input import snapshot
from tests.sse_helpers import GUARD, bearer, events, text_of

STORY = "Fui demitido sem justa causa e a empresa não pagou minhas verbas rescisórias."


def keyed(key: str | bytes, user: str = "alice") -> dict[str, Any]:
    return {**bearer(user), "Idempotency-Key": key}


@pytest.fixture
async def replica_b(settings: Settings, api: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A second app instance on the same Redis and prefix: another replica."""
    async for client in client_for(settings):
        yield client


async def new_session(api: httpx.AsyncClient, user: str = "alice") -> str:
    response = await api.post("/api/triage", json={}, headers=bearer(user))
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


async def settle(api: httpx.AsyncClient, sid: str, user: str = "alice") -> None:
    """Wait until the session owes no reply (a reply being written changes Redis)."""
    deadline = asyncio.get_running_loop().time() + GUARD
    while (await api.get(f"/api/conversations/sessions/{sid}", headers=bearer(user))).json()[
        "reply_pending"
    ]:
        assert asyncio.get_running_loop().time() < deadline, "hang guard"
        await asyncio.sleep(0.05)


async def user_messages(api: httpx.AsyncClient, sid: str, user: str = "alice") -> list[str]:
    history = await api.get(f"/api/conversations/sessions/{sid}", headers=bearer(user))
    assert history.status_code == 200, history.text
    return [m["content"] for m in history.json()["messages"] if m["role"] == "user"]


async def created_events(manager: ConversationStateManager, sid: str) -> list[dict[str, Any]]:
    entries = await manager.read_events(sid)
    return [e.data["message"] for e in entries if e.type == "message.created"]


@pytest.mark.parametrize("route", ["conversations", "triage"])
async def test_a_retried_post_gets_the_first_answer_and_stores_nothing(
    api: httpx.AsyncClient, manager: ConversationStateManager, route: str
) -> None:
    sid = await new_session(api)
    url = (
        f"/api/conversations/sessions/{sid}/messages"
        if route == "conversations"
        else f"/api/triage/{sid}/messages"
    )
    key = str(uuid.uuid4())
    first = await api.post(url, json={"message": STORY}, headers=keyed(key))
    assert first.status_code == 202, first.text
    again = await api.post(url, json={"message": STORY}, headers=keyed(key))
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert first.json()["message"]["seq"] == 1
    assert await user_messages(api, sid) == [STORY]
    assert [m["seq"] for m in await created_events(manager, sid)] == [1]
    # The same text with a new key is a new message.
    other = await api.post(url, json={"message": STORY}, headers=keyed(str(uuid.uuid4())))
    assert other.status_code == 202 and other.json()["message"]["seq"] > 1
    assert await user_messages(api, sid) == [STORY, STORY]


async def test_the_same_key_with_another_body_is_refused(
    api: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    sid = await new_session(api)
    url = f"/api/conversations/sessions/{sid}/messages"
    assert (await api.post(url, json={"message": STORY}, headers=keyed("k-1"))).status_code == 202
    opened = await api.post("/api/triage", json={"message": STORY}, headers=keyed("k-2"))
    assert opened.status_code == 201
    await settle(api, sid)
    await settle(api, opened.json()["session_id"])
    before = await snapshot(manager.redis, manager.keys.prefix)

    async def refused(response: httpx.Response) -> None:
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "idempotency_key_reused" and "Idempotency-Key" in error["message"]

    await refused(await api.post(url, json={"message": "Outra coisa."}, headers=keyed("k-1")))
    triage_url = f"/api/triage/{sid}/messages"
    await refused(await api.post(triage_url, json={"message": "Outra."}, headers=keyed("k-1")))
    # A key that opened a session: another first message, none, or another kind of session.
    await refused(await api.post("/api/triage", json={"message": "Outra."}, headers=keyed("k-2")))
    await refused(await api.post("/api/triage", json={}, headers=keyed("k-2")))
    chat, _ = await events(
        api, "POST", "/api/agents/chat", json={"message": STORY}, headers=keyed("k-2")
    )
    await refused(chat)
    assert await snapshot(manager.redis, manager.keys.prefix) == before


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "chave com\ttab", "chave-ção".encode()],
)
async def test_a_malformed_key_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, manager: ConversationStateManager, key: str | bytes
) -> None:
    sid = await new_session(api)
    before = await snapshot(manager.redis, manager.keys.prefix)
    for method, url, body in [
        ("POST", f"/api/conversations/sessions/{sid}/messages", {"message": STORY}),
        ("POST", f"/api/triage/{sid}/messages", {"message": STORY}),
        ("POST", "/api/triage", {"message": STORY}),
        ("POST", "/api/agents/chat", {"message": STORY}),
    ]:
        response = await api.request(method, url, json=body, headers=keyed(key))
        assert response.status_code == 422, (url, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and "idempotency-key" in error["message"].lower()
    assert await snapshot(manager.redis, manager.keys.prefix) == before


async def test_concurrent_duplicates_on_two_replicas_store_once(
    api: httpx.AsyncClient, replica_b: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    sid = await new_session(api)
    url = f"/api/conversations/sessions/{sid}/messages"
    key = str(uuid.uuid4())
    answers = await asyncio.gather(
        *[
            client.post(url, json={"message": STORY}, headers=keyed(key))
            for _ in range(8)
            for client in (api, replica_b)
        ]
    )
    assert {a.status_code for a in answers} == {202}
    assert len({(a.json()["message"]["seq"], a.json()["event_id"]) for a in answers}) == 1
    assert await user_messages(api, sid) == [STORY]
    assert len(await created_events(manager, sid)) == 1


@pytest.mark.parametrize("body", [{}, {"message": STORY}])
async def test_opening_a_triage_session_twice_with_a_key_opens_one(
    api: httpx.AsyncClient,
    replica_b: httpx.AsyncClient,
    manager: ConversationStateManager,
    body: dict[str, str],
) -> None:
    key = str(uuid.uuid4())
    answers = await asyncio.gather(
        *[
            client.post("/api/triage", json=body, headers=keyed(key))
            for _ in range(5)
            for client in (api, replica_b)
        ]
    )
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    sids = {a.json()["session_id"] for a in answers}
    assert len(sids) == 1
    (sid,) = sids
    if body:
        assert (
            len(
                {
                    (a.json()["message"]["message"]["seq"], a.json()["message"]["event_id"])
                    for a in answers
                }
            )
            == 1
        )
        assert await user_messages(api, sid) == [STORY]
    else:
        assert all(a.json()["message"] is None for a in answers)
    sessions = (await api.get("/api/conversations/sessions", headers=bearer())).json()
    assert [s["session_id"] for s in sessions["items"]] == [sid]
    # A later retry (sequential) still answers with that session; another user's same key is
    # theirs alone.
    again = await api.post("/api/triage", json=body, headers=keyed(key))
    assert again.status_code == 201 and again.json()["session_id"] == sid
    bob = await api.post("/api/triage", json=body, headers=keyed(key, user="bob"))
    assert bob.status_code == 201 and bob.json()["session_id"] != sid


async def test_a_retried_chat_streams_the_same_reply_of_the_same_session(
    api: httpx.AsyncClient, replica_b: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    key = str(uuid.uuid4())
    first, first_events = await events(
        api, "POST", "/api/agents/chat", json={"message": STORY}, headers=keyed(key)
    )
    assert first.status_code == 200 and first_events[-1].event == "message.completed"
    sid = first.headers["x-session-id"]
    again, again_events = await events(
        replica_b, "POST", "/api/agents/chat", json={"message": STORY}, headers=keyed(key)
    )
    assert again.status_code == 200 and again.headers["x-session-id"] == sid
    assert [(e.event, e.id) for e in again_events] == [(e.event, e.id) for e in first_events]
    reply_id = first_events[-1].data["reply_id"]
    assert text_of(again_events, reply_id) == first_events[-1].data["message"]["content"]
    assert await user_messages(api, sid) == [STORY]
    # Continuing that session with a key: the same, on the session given in the body.
    body = {"message": "Foi há duas semanas.", "session_id": sid}
    key2 = str(uuid.uuid4())
    second = [
        await events(client, "POST", "/api/agents/chat", json=body, headers=keyed(key2))
        for client in (replica_b, api)
    ]
    assert [r.status_code for r, _ in second] == [200, 200]
    created = [evs[0] for _, evs in second]
    assert created[0].event == "message.created" and created[0] == created[1]
    assert created[0].data["message"]["seq"] == 3
    assert await user_messages(api, sid) == [STORY, "Foi há duas semanas."]


async def test_a_retry_after_delete_gets_no_second_session(
    api: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    key = str(uuid.uuid4())
    opened = await api.post("/api/triage", json={}, headers=keyed(key))
    sid = opened.json()["session_id"]
    deleted = await api.delete(f"/api/conversations/sessions/{sid}", headers=bearer())
    assert deleted.status_code == 204
    retry = await api.post("/api/triage", json={}, headers=keyed(key))
    assert retry.status_code == 404 and retry.json()["error"]["code"] == "session_not_found"
    assert (await api.get("/api/conversations/sessions", headers=bearer())).json()["total"] == 0
    # DELETE kept the key's record (that is what answers the retry); erasure takes it too.
    records = manager.keys.idempotency(sid)
    assert await manager.redis.client.exists(*records) == 1
    purge = await api.post(f"/api/conversations/sessions/{sid}/purge", headers=bearer())
    assert purge.status_code == 200, purge.text
    assert await manager.redis.client.exists(*records) == 0
    # After erasure the key is a new request: a new session, never the erased id again.
    after = await api.post("/api/triage", json={}, headers=keyed(key))
    assert after.status_code == 201 and after.json()["session_id"] != sid


async def test_a_retry_finishes_an_opening_that_died_between_its_two_steps(
    api: httpx.AsyncClient, manager: ConversationStateManager, settings: Settings
) -> None:
    """The key was mapped to a session id (step one), then the replica died before writing
    the session (step two): the retry writes that very session, once."""
    key = str(uuid.uuid4())
    opened = OpenedSessions(manager.redis, settings.key_prefix, settings.conversation_ttl)
    fp = fingerprint("open:triage", None, STORY)
    sid = await opened.claim(Principal(user_id="alice", tenant_id="acme"), key, fp)
    assert await manager.get_conversation_state(sid) is None
    retries = await asyncio.gather(
        *[api.post("/api/triage", json={"message": STORY}, headers=keyed(key)) for _ in range(3)]
    )
    assert [r.status_code for r in retries] == [201, 201, 201]
    assert {r.json()["session_id"] for r in retries} == {sid}
    assert await user_messages(api, sid) == [STORY]
    sessions = (await api.get("/api/conversations/sessions", headers=bearer())).json()
    assert [s["session_id"] for s in sessions["items"]] == [sid]


async def test_a_key_whose_record_is_gone_never_adds_to_the_session_it_opened(
    api: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    key = str(uuid.uuid4())
    opened = await api.post("/api/triage", json={"message": STORY}, headers=keyed(key))
    sid = opened.json()["session_id"]
    await settle(api, sid)
    await manager.redis.delete(*manager.keys.idempotency(sid))  # rotated out, or expired
    retry = await api.post("/api/triage", json={"message": STORY}, headers=keyed(key))
    assert retry.status_code == 422
    assert retry.json()["error"]["code"] == "idempotency_key_expired"
    assert await user_messages(api, sid) == [STORY]
