from __future__ import annotations

from typing import Any

import httpx
import pytest

from backend.conversations.keys import ConversationKeys
from backend.conversations.ratelimit import MessageRateLimiter, RateLimited
from backend.core.config import Settings
from backend.core.redis import RedisService
from tests.conftest import client_for
from tests.sse_helpers import bearer, events


def keyed(key: str) -> dict[str, Any]:
    return {**bearer(), "Idempotency-Key": key}


async def test_limit_per_user_with_retry_after(
    settings: Settings, redis_service: RedisService
) -> None:
    settings = settings.model_copy(
        update={"rate_limit_messages": 3, "rate_limit_window_seconds": 30}
    )
    limiter = MessageRateLimiter(redis_service, settings)
    for _ in range(3):
        await limiter.hit("t1", "alice")
    with pytest.raises(RateLimited) as caught:
        await limiter.hit("t1", "alice")
    assert caught.value.status_code == 429
    assert 1 <= caught.value.details["retry_after"] <= 30
    # Another user, or the same user id in another tenant, has their own budget.
    await limiter.hit("t1", "bob")
    await limiter.hit("t2", "alice")
    key = ConversationKeys(settings.key_prefix).message_rate("t1", "alice")
    assert 0 < await redis_service.client.pttl(key) <= 30_000


async def test_opening_sessions_is_limited_per_user(
    settings: Settings, redis_service: RedisService
) -> None:
    settings = settings.model_copy(
        update={"rate_limit_sessions": 3, "rate_limit_sessions_window_seconds": 600}
    )
    async for api in client_for(settings):
        opened = [
            await api.post("/api/triage", json={}, headers=keyed("k1")),
            await api.post("/api/triage", json={"message": "Olá"}, headers=bearer()),
        ]
        chat, _ = await events(api, "POST", "/api/agents/chat", json={"message": "Oi"})
        assert chat.status_code == 401  # (no token: not counted)
        chat, _ = await events(
            api, "POST", "/api/agents/chat", json={"message": "Oi"}, headers=bearer()
        )
        assert [r.status_code for r in opened] + [chat.status_code] == [201, 201, 200]
        # The fourth session, by either route, is refused and nothing is stored.
        for refused in [
            await api.post("/api/triage", json={}, headers=bearer()),
            (
                await events(
                    api, "POST", "/api/agents/chat", json={"message": "Oi"}, headers=bearer()
                )
            )[0],
        ]:
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["retry-after"]) <= 600
            error = refused.json()["error"]
            assert error["code"] == "rate_limited" and "new sessions" in error["message"]
        sessions = await api.get("/api/conversations/sessions", headers=bearer())
        assert sessions.json()["total"] == 3
        # A retry of a session already opened is an answer, not a new session.
        again = await api.post("/api/triage", json={}, headers=keyed("k1"))
        assert again.status_code == 201
        assert again.json()["session_id"] == opened[0].json()["session_id"]
        # Messages into existing sessions go on; another user has their own budget.
        sid = opened[0].json()["session_id"]
        posted = await api.post(
            f"/api/triage/{sid}/messages", json={"message": "Mais um detalhe."}, headers=bearer()
        )
        assert posted.status_code == 202
        assert (await api.post("/api/triage", json={}, headers=bearer("bob"))).status_code == 201


async def test_dev_tokens_are_limited_per_client_address(
    settings: Settings, redis_service: RedisService
) -> None:
    from backend.main import create_app

    settings = settings.model_copy(
        update={
            "environment": "development",
            "rate_limit_dev_tokens": 2,
            "rate_limit_dev_tokens_window_seconds": 60,
        }
    )
    app = create_app(settings)
    body = {"user": "maria", "tenant": "acme"}
    async with app.router.lifespan_context(app):

        def client_at(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 50000))
            return httpx.AsyncClient(transport=transport, base_url="http://test")

        async with client_at("10.0.0.1") as one, client_at("10.0.0.2") as two:
            assert [
                (await one.post("/api/dev/token", json=body)).status_code for _ in range(2)
            ] == [
                200,
                200,
            ]
            refused = await one.post("/api/dev/token", json=body)
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert refused.json()["error"]["code"] == "rate_limited"
            assert "access_token" not in refused.text
            assert (await two.post("/api/dev/token", json=body)).status_code == 200
