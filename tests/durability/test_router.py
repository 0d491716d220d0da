"""The durability routes over HTTP (ASGI transport, the app's real lifespan)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.auth import create_token
from backend.core.config import Settings
from backend.durability.service import HybridConversationService
from backend.state.service import ConversationStateManager
from tests.conftest import client_for
from tests.durability.conftest import chat, drop_hot, new_id, rows
from tests.redis_server import RedisServer

TENANT = "escritorio-1"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(settings):
        yield c


def auth(settings: Settings, user: str = "ana", tenant: str = TENANT) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(settings, user, tenant)}"}


async def test_messages_page_back_through_the_whole_history(
    client: httpx.AsyncClient,
    settings: Settings,
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
) -> None:
    sid = new_id()
    await chat(manager, sid, 130, flush=hybrid)
    url = f"/api/conversations/sessions/{sid}/messages"

    newest = await client.get(url, params={"limit": 50}, headers=auth(settings))
    assert newest.status_code == 200
    body = newest.json()
    assert [m["seq"] for m in body["items"]] == list(range(81, 131))
    assert body["next_before"] == 81 and body["message_count"] == 130

    oldest = await client.get(url, params={"limit": 50, "before": 31}, headers=auth(settings))
    assert [m["seq"] for m in oldest.json()["items"]] == list(range(1, 31))
    assert oldest.json()["next_before"] is None


async def test_messages_of_another_users_session_answer_404_like_a_missing_one(
    client: httpx.AsyncClient, settings: Settings, manager: ConversationStateManager
) -> None:
    sid = new_id()
    await chat(manager, sid, 2)
    url = f"/api/conversations/sessions/{sid}/messages"

    other = await client.get(url, headers=auth(settings, user="bruno"))
    missing = await client.get(
        f"/api/conversations/sessions/{new_id()}/messages", headers=auth(settings)
    )

    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["code"] == missing.json()["error"]["code"] == "session_not_found"
    assert (await client.get(url)).status_code == 401


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"before": 0}, {"limit": "x"}])
async def test_bad_paging_parameters_are_a_4xx(
    client: httpx.AsyncClient, settings: Settings, params: dict[str, object]
) -> None:
    response = await client.get(
        f"/api/conversations/sessions/{new_id()}/messages", params=params, headers=auth(settings)
    )
    assert response.status_code == 422


async def test_purge_route_erases_every_tier_and_only_for_the_owner(
    client: httpx.AsyncClient,
    settings: Settings,
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
) -> None:
    sid = new_id()
    await chat(manager, sid, 3)
    await hybrid.flush_dirty()
    await manager.delete_session(sid)  # DELETE first: inactive, history kept, still purgeable
    url = f"/api/conversations/sessions/{sid}/purge"

    denied = await client.post(url, headers=auth(settings, user="bruno"))
    assert denied.status_code == 404
    assert await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=sid)

    purged = await client.post(url, headers=auth(settings))

    assert purged.status_code == 200
    assert purged.json() == {"session_id": sid, "hot": False, "warm": True, "cold": False}
    assert await rows(engine, "SELECT 1 FROM messages WHERE session_id = :id", id=sid) == []
    assert await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=sid) == []
    assert (await client.post(url, headers=auth(settings))).status_code == 404


async def test_postgres_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/postgres")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["schema_revision"] == "0002"


async def test_celery_health_is_503_when_no_worker_answers(
    settings: Settings, tmp_path: Path
) -> None:
    # A broker of this test alone: workers of other test processes on the shared Redis would
    # answer a ping sent there.
    broker = RedisServer(tmp_path).start()
    try:
        async for client in client_for(
            settings.model_copy(update={"celery_broker_url": broker.url})
        ):
            response = await client.get("/health/celery")
    finally:
        broker.destroy()
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "workers_unavailable" and error["workers"] == []


async def test_session_list_and_delete_all_reach_sessions_only_postgres_holds(
    client: httpx.AsyncClient,
    settings: Settings,
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
) -> None:
    """A session that left Redis (TTL, eviction) is still the user's: listed, and deleted."""
    warm_only, hot = new_id(), new_id()
    await chat(manager, warm_only, 2, user="lia")
    await hybrid.flush_dirty()
    await drop_hot(manager, warm_only)
    await chat(manager, hot, 2, user="lia")

    listed = await client.get("/api/conversations/sessions", headers=auth(settings, user="lia"))
    assert listed.status_code == 200
    assert [s["session_id"] for s in listed.json()["items"]] == [hot, warm_only]
    assert listed.json()["total"] == 2

    deleted = await client.delete("/api/conversations/sessions", headers=auth(settings, user="lia"))
    assert deleted.status_code == 200 and deleted.json()["deleted"] == 2
    after = await client.get("/api/conversations/sessions", headers=auth(settings, user="lia"))
    assert after.json()["items"] == [] and after.json()["total"] == 0
    (row,) = await rows(
        hybrid.engine, "SELECT inactive_at FROM sessions WHERE id = :id", id=warm_only
    )
    assert row.inactive_at is not None  # deleted, history kept
