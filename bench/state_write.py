"""The state manager's write cycle against plain GET + SET of the same JSON document.

Both sides run in one process, on the same connection pool, interleaved round by round, so
the ratio is measured side by side. Manager cycle: read the state (HMGET + decode), then the
versioned write (one EVALSHA on a single node: version check, document, TTLs, stream event,
user index, dirty mark). Raw cycle: GET the document, SET it back. Target: ratio >= 0.7 at
concurrency 1 and 50.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from backend.core.redis import RedisService
from backend.state.schemas import ConversationState, Event, encode_state
from backend.state.service import ConversationStateManager
from bench.common import bench_settings, median, timed

ROUNDS = 9
CYCLES_PER_WORKER = {1: 1000, 50: 40}
EVENT = Event(type="state.updated", data={})


def sample_state(session_id: str, messages: int) -> ConversationState:
    state = ConversationState(session_id=session_id, user_id="bench-user", tenant_id="bench")
    for i in range(messages):
        role = "user" if i % 2 == 0 else "assistant"
        text = (
            f"Mensagem {i}: fui demitido e não recebi as verbas rescisórias nem o FGTS; "
            "tenho audiência marcada em duas semanas."
        )
        state.append_message(role, text, max_history=100)
    return state


async def manager_cycles(manager: ConversationStateManager, session_id: str, cycles: int) -> int:
    for _ in range(cycles):
        state = await manager.get_conversation_state(session_id)
        assert state is not None
        await manager.save_conversation_state(state, event=EVENT)
    return cycles


async def raw_cycles(redis: RedisService, key: str, cycles: int) -> int:
    for _ in range(cycles):
        value = await redis.client.get(key)
        await redis.client.set(key, value)
    return cycles


async def measure(
    manager: ConversationStateManager, concurrency: int, cycles: int, messages: int
) -> dict[str, Any]:
    redis, prefix = manager.redis, manager.keys.prefix
    sessions = [uuid.uuid4().hex for _ in range(concurrency)]
    raw_keys = [f"{prefix}:raw:{sid}" for sid in sessions]
    doc = encode_state(sample_state("x", messages))
    for sid, key in zip(sessions, raw_keys, strict=True):
        await manager.save_conversation_state(sample_state(sid, messages))
        await redis.client.set(key, doc)

    async def all_manager() -> int:
        return sum(await asyncio.gather(*(manager_cycles(manager, s, cycles) for s in sessions)))

    async def all_raw() -> int:
        return sum(await asyncio.gather(*(raw_cycles(redis, k, cycles) for k in raw_keys)))

    await all_raw()  # warm-up: connections in the pool, scripts cached
    await all_manager()
    raw_rates, mgr_rates = [], []
    for _ in range(ROUNDS):
        raw_rates.append(await timed(all_raw))
        mgr_rates.append(await timed(all_manager))
    raw, mgr = median(raw_rates), median(mgr_rates)
    return {
        "concurrency": concurrency,
        "messages": messages,
        "raw_ops": raw,
        "manager_ops": mgr,
        "ratio": mgr / raw,
    }


async def run(messages: int = 20) -> list[dict[str, Any]]:
    settings = bench_settings()
    redis = RedisService.from_settings(settings)
    manager = ConversationStateManager(redis, settings)
    await manager.load_scripts()
    try:
        return [
            await measure(manager, concurrency, cycles, messages)
            for concurrency, cycles in CYCLES_PER_WORKER.items()
        ]
    finally:
        keys = [k async for k in redis.scan_keys(f"{settings.key_prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.close()


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "State write cycle vs plain GET+SET (same pool, same JSON document, median of "
        f"{ROUNDS} interleaved rounds)",
        f"{'concurrency':>11} {'messages':>8} {'GET+SET/s':>10} {'manager/s':>10} {'ratio':>6}",
    ]
    for r in rows:
        lines.append(
            f"{r['concurrency']:>11} {r['messages']:>8} {r['raw_ops']:>10.0f} "
            f"{r['manager_ops']:>10.0f} {r['ratio']:>6.2f}"
        )
    return "\n".join(lines)
