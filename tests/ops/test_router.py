"""GET /api/ops/overview: operators see live figures; everyone else sees no such route."""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from backend.core.auth import create_token
from backend.core.config import Settings
from tests.conftest import client_for
from tests.sse_helpers import bearer, events

URL = "/api/ops/overview"
MESSAGE = "Fui demitido sem justa causa e a empresa não pagou minhas verbas rescisórias."


def ops_bearer(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(settings, 'ops.ana', 'ops', role='ops')}"}


async def overview(api: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    response = await api.get(URL, headers=ops_bearer(settings))
    assert response.status_code == 200, response.text
    return response.json()


async def test_figures_move_after_chat_messages(api: httpx.AsyncClient, settings: Settings) -> None:
    before = await overview(api, settings)
    assert len(before["replicas"]) == 1  # this app, from its own heartbeat
    assert before["dirty_sessions"] == 0 and before["refused_sessions"] == 0
    assert before["redis_used_memory_bytes"] > 0 and before["redis_maxmemory_bytes"] >= 0
    assert before["queue"] == settings.celery_queue

    for _ in range(2):
        response, evs = await events(
            api, "POST", "/api/agents/chat", json={"message": MESSAGE}, headers=bearer()
        )
        assert response.status_code == 200 and evs[-1].event == "message.completed"

    after = await overview(api, settings)
    assert after["replies_started"] - before["replies_started"] == 2
    assert after["replies_completed"] - before["replies_completed"] == 2
    assert after["replies_failed"] == before["replies_failed"]
    assert after["streams_open"] == 0  # both chat streams ended with their replies
    assert after["first_event_p99_seconds"] is not None
    assert after["replicas"][0]["first_event_p99_seconds"] is not None
    # No worker runs here: both new sessions wait for their snapshot.
    assert after["dirty_sessions"] == 2
    assert after["dirty_oldest_age_seconds"] >= 0
    # The broker (Redis) answers: the queue is read (workers of other tests may answer a ping).
    assert after["queue_depth"] is not None and isinstance(after["workers"], list)


async def test_every_replica_is_listed_until_it_stops(
    settings: Settings, api: httpx.AsyncClient
) -> None:
    async for other in client_for(settings):
        seen_here = await overview(api, settings)
        seen_there = await overview(other, settings)
        assert len(seen_here["replicas"]) == 2
        assert len({r["replica_id"] for r in seen_here["replicas"]}) == 2
        ids = [r["replica_id"] for r in seen_there["replicas"]]
        assert ids == [r["replica_id"] for r in seen_here["replicas"]]
    # The stopped replica took its heartbeat with it: it is gone at once, not after the TTL.
    assert len((await overview(api, settings))["replicas"]) == 1


async def test_anyone_but_an_operator_gets_the_missing_route_404(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    missing = await api.get("/api/ops/nothing-here")
    assert missing.status_code == 404
    expected = {"error": {**missing.json()["error"], "message": f"no route matches GET {URL}"}}
    forged = jwt.encode(
        {"sub": "x", "tenant": "t", "role": "ops", "exp": 4_000_000_000},
        "not-the-secret-of-this-service-but-long-enough",
    )
    user_token = create_token(settings, "alice", "acme", role="user")
    for headers in (
        {},
        bearer(),  # a user's token
        {"Authorization": f"Bearer {user_token}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": "Basic b3BzOm9wcw=="},
    ):
        response = await api.get(URL, headers=headers)
        assert response.status_code == 404, headers
        assert response.json() == expected
    schema = (await api.get("/openapi.json")).json()
    assert not any(path.startswith("/api/ops") for path in schema["paths"])
