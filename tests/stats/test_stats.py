"""GET /api/stats: figures from the rollup and indexes, the 5-minute cache, tenant scoping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from backend.core.auth import create_token
from backend.core.config import Settings
from backend.durability.service import HybridConversationService
from backend.state.service import ConversationStateManager
from backend.stats.keys import stats_cache
from tests.conftest import client_for
from tests.durability.conftest import chat, new_id, triage


async def test_tenant_stats_count_messages_sessions_and_triage_outcomes(
    settings: Settings, manager: ConversationStateManager, hybrid: HybridConversationService
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    ids = [new_id() for _ in range(3)]
    for n, sid in zip((2, 3, 4), ids, strict=True):
        await chat(manager, sid, n, tenant=tenant)
    await triage(manager, ids[0], {"area": "trabalhista", "urgency": "alta"}, tenant)
    await triage(manager, ids[1], {"area": "trabalhista", "urgency": "baixa"}, tenant)
    await triage(manager, ids[2], {"area": "familia", "urgency": "alta"}, tenant)
    await chat(manager, new_id(), 5, tenant="outro-escritorio")  # not counted
    await hybrid.flush_dirty()
    token = create_token(settings, "ana", tenant)

    async for client in client_for(settings):
        response = await client.get(
            "/api/stats",
            params={"tenant": tenant, "days": 7},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
        body = response.json()
        assert body["tenant"] == tenant and body["days"] == 7 and not body["cached"]
        assert body["messages_total"] == 9
        assert len(body["messages_per_day"]) == 7
        today = body["messages_per_day"][-1]
        assert today == {
            "day": datetime.now(UTC).date().isoformat(),
            "messages": 9,
            "active_sessions": 3,
        }
        assert body["active_sessions"] == 3 and body["new_sessions"] == 3
        assert body["triage_by_area"] == {"trabalhista": 2, "familia": 1}
        assert body["triage_by_urgency"] == {"alta": 2, "baixa": 1}
        assert body["average_duration_seconds"] >= 0

        # Cached for STATS_CACHE_TTL: new messages show up only once it expires.
        await chat(manager, ids[0], 1, tenant=tenant)
        await hybrid.flush_dirty()
        again = await client.get("/api/stats", headers={"Authorization": f"Bearer {token}"})
        assert again.json()["cached"] and again.json()["messages_total"] == 9
        fresh = await hybrid.manager.redis.delete(stats_cache(settings.key_prefix, tenant, 7))
        assert fresh == 1
        recomputed = await client.get("/api/stats", headers={"Authorization": f"Bearer {token}"})
        assert recomputed.json()["messages_total"] == 10


async def test_stats_of_another_tenant_are_forbidden(settings: Settings) -> None:
    token = create_token(settings, "ana", "escritorio-1")
    async for client in client_for(settings):
        response = await client.get(
            "/api/stats",
            params={"tenant": "escritorio-2"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
        bad = await client.get(
            "/api/stats", params={"days": 0}, headers={"Authorization": f"Bearer {token}"}
        )
        assert bad.status_code == 422
        assert (await client.get("/api/stats")).status_code == 401
