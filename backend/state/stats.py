"""Counts over the whole hot tier, for operators (`triage stats`, `triage monitor`).

SCAN-based and read from each session's flat meta (never its document): fine for ops, not for
every request.
"""

from __future__ import annotations

from typing import Any

from backend.core.redis import translate_errors
from backend.state.store import StateStore

_CHUNK = 500


async def system_stats(manager: StateStore) -> dict[str, Any]:
    keys, redis = manager.keys, manager.redis
    conv_ids = [
        keys.session_id_from_key(k) async for k in redis.scan_keys(keys.conversation_pattern())
    ]
    orch_count = 0
    async for _ in redis.scan_keys(keys.orchestration_pattern()):
        orch_count += 1
    by_status: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    users: set[tuple[str, str]] = set()
    hot_messages = 0
    for start in range(0, len(conv_ids), _CHUNK):
        for meta in await manager.session_metas(conv_ids[start : start + _CHUNK]):
            if meta is None:
                continue
            by_status[meta["status"]] = by_status.get(meta["status"], 0) + 1
            by_kind[meta["kind"]] = by_kind.get(meta["kind"], 0) + 1
            hot_messages += meta["message_count"]
            users.add((meta["tenant_id"], meta["user_id"]))
    dirty, lag = await manager.dirty.backlog()
    with translate_errors():
        refused = int(await redis.client.hlen(keys.refused()))
    health = await redis.health_check()
    return {
        "conversations": len(conv_ids),
        "orchestrations": orch_count,
        "conversations_by_status": by_status,
        "conversations_by_kind": by_kind,
        "users": len(users),
        "messages_total": hot_messages,
        "dirty_sessions": dirty,
        "snapshot_lag_seconds": lag,
        # Kept dirty because PostgreSQL refused them (backend/state/refused.py).
        "refused_sessions": refused,
        "redis_used_memory": health["used_memory"],
        "redis_used_memory_human": health["used_memory_human"],
    }
