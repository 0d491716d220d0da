"""GET /metrics of a replica (in-process app): what moves when a user chats, the token, the
labels (bounded: no session or user ids), and METRICS_ENABLED."""

from __future__ import annotations

import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from backend.core.config import Settings
from backend.core.redis import RedisService
from tests.conftest import client_for
from tests.sse_helpers import bearer, events

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: httpx.AsyncClient, **headers: str) -> Samples:
    response = await api.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_a_chat_message_moves_requests_replies_state_writes_and_the_ack(
    settings: Settings, redis_service: RedisService
) -> None:
    user = f"metrics-{uuid.uuid4().hex[:8]}"
    async for api in client_for(settings):
        before = await scrape(api)
        response, evs = await events(
            api, "POST", "/api/agents/chat", json={"message": "Fui demitido."}, headers=bearer(user)
        )
        assert response.status_code == 200 and evs[-1].event == "message.completed"
        sid = response.headers["x-session-id"]
        missing = await api.get(f"/api/conversations/sessions/{sid}/nothing-here")
        assert missing.status_code == 404
        after = await scrape(api)

    chat = {"route": "/api/agents/chat", "method": "POST", "status": "200"}
    assert moved(before, after, "triage_http_requests_total", **chat) == 1
    assert (
        moved(
            before,
            after,
            "triage_http_request_duration_seconds_count",
            route="/api/agents/chat",
            method="POST",
        )
        == 1
    )
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    assert moved(before, after, "triage_http_requests_total", **unmatched) == 1
    assert moved(before, after, "triage_replies_total", outcome="started") == 1
    assert moved(before, after, "triage_replies_total", outcome="completed") == 1
    assert moved(before, after, "triage_replies_total", outcome="failed") == 0
    assert moved(before, after, "triage_reply_duration_seconds_count") == 1
    # The user's message, the reply's start and the stored reply: three versioned writes.
    assert moved(before, after, "triage_state_writes_total", kind="conversation") == 3
    assert moved(before, after, "triage_message_ack_seconds_count") == 1
    assert moved(before, after, "triage_sse_events_total") == len(evs)
    assert value(after, "triage_sse_streams_open") == value(before, "triage_sse_streams_open")
    # Backlog gauges are read at scrape time: the session waits for a snapshot (no worker).
    assert value(after, "triage_dirty_sessions") >= 1
    assert value(after, "triage_celery_workers") == 0
    assert value(after, "triage_redis_used_memory_bytes") > 0
    assert ("triage_redis_maxmemory_bytes", frozenset()) in after
    assert ("triage_hub_readers", frozenset()) in after
    assert ("triage_redis_connections_in_use", frozenset({("pool", "state")})) in after
    # Labels are bounded: no session, user or tenant id anywhere.
    for name, labels in after:
        for _, label_value in labels:
            assert sid not in label_value and user not in label_value, (name, labels)
            assert "acme" not in label_value, (name, labels)


async def test_rate_limited_posts_are_counted_by_limit(
    settings: Settings, redis_service: RedisService
) -> None:
    limited_settings = settings.model_copy(update={"rate_limit_messages": 1})
    async for api in client_for(limited_settings):
        headers = bearer(f"metrics-{uuid.uuid4().hex[:8]}")
        opened = await api.post("/api/triage", json={}, headers=headers)
        assert opened.status_code == 201, opened.text
        url = f"/api/triage/{opened.json()['session_id']}/messages"
        before = await scrape(api)
        first = await api.post(url, json={"message": "um"}, headers=headers)
        second = await api.post(url, json={"message": "dois"}, headers=headers)
        assert (first.status_code, second.status_code) == (202, 429)
        after = await scrape(api)
    assert moved(before, after, "triage_rate_limited_total", limit="messages") == 1
    limited = {
        "route": "/api/triage/{session_id}/messages",
        "method": "POST",
        "status": "429",
    }
    assert moved(before, after, "triage_http_requests_total", **limited) == 1


async def test_the_metrics_token_is_enforced_and_the_route_is_not_in_openapi(
    settings: Settings, redis_service: RedisService
) -> None:
    token = uuid.uuid4().hex
    async for api in client_for(settings.model_copy(update={"metrics_token": SecretStr(token)})):
        for headers in ({}, {"Authorization": "Bearer wrong"}, bearer()):
            refused = await api.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
            assert refused.headers["www-authenticate"] == "Bearer"
        samples = await scrape(api, Authorization=f"Bearer {token}")
        assert ("triage_dirty_sessions", frozenset()) in samples
        assert "/metrics" not in (await api.get("/openapi.json")).json()["paths"]


async def test_metrics_can_be_turned_off(settings: Settings, redis_service: RedisService) -> None:
    async for api in client_for(settings.model_copy(update={"metrics_enabled": False})):
        assert (await api.get("/metrics")).status_code == 404
