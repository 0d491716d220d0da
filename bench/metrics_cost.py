"""What the Prometheus metrics cost: replica CPU per chat message with METRICS_ENABLED on/off.

Two replicas of the same code, one with metrics on and one off, each with its own key prefix,
take the same chat load at the same time (so both see the same machine: two shared cores,
Redis, PostgreSQL and the load generator), in a few rounds. The figure is the ratio of their
CPU time per message (on / off): the request middleware, the counters and histograms moved
by a message, and the SSE stream wrapper. Scrapes are measured apart (CPU per `GET /metrics`,
which also reads the backlog gauges): Prometheus scrapes every 15 s or so, not per message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from backend.core.auth import create_token
from bench.common import bench_settings
from bench.replica import BenchReplica, own_database
from bench.sse_chat import conversation, purge

CONVERSATIONS = 50
MESSAGES = 4
ROUNDS = 3
SCRAPES = 20


async def _load(replica: BenchReplica, settings: Any, tag: str, convs: int, msgs: int) -> int:
    """`convs` conversations of `msgs` messages on `replica`; returns the messages answered."""
    samples: list[dict[str, float]] = []
    errors: list[str] = []
    tokens = [create_token(settings, f"cost-{tag}-{i}", "bench") for i in range(convs)]
    await asyncio.gather(*(conversation(replica.port, t, msgs, samples, errors) for t in tokens))
    if errors:
        raise RuntimeError(f"chat failed on the {tag} replica: {errors[0][:200]}")
    return len(samples)


async def _round(
    on: BenchReplica, off: BenchReplica, settings: dict[str, Any], n: int, convs: int, msgs: int
) -> dict[str, float]:
    before = {name: r.cpu_seconds() for name, r in (("on", on), ("off", off))}
    answered = await asyncio.gather(
        _load(on, settings["on"], f"on{n}", convs, msgs),
        _load(off, settings["off"], f"off{n}", convs, msgs),
    )
    cpu = {"on": on.cpu_seconds() - before["on"], "off": off.cpu_seconds() - before["off"]}
    return {
        "messages_on": answered[0],
        "messages_off": answered[1],
        "cpu_ms_on": cpu["on"] * 1000 / max(1, answered[0]),
        "cpu_ms_off": cpu["off"] * 1000 / max(1, answered[1]),
    }


async def _scrape_cost(replica: BenchReplica) -> float:
    """Replica CPU (ms) per GET /metrics."""
    async with httpx.AsyncClient() as client:
        await client.get(f"http://127.0.0.1:{replica.port}/metrics")  # warm-up
        cpu = replica.cpu_seconds()
        for _ in range(SCRAPES):
            response = await client.get(f"http://127.0.0.1:{replica.port}/metrics")
            response.raise_for_status()
        return (replica.cpu_seconds() - cpu) * 1000 / SCRAPES


async def run(
    conversations: int = CONVERSATIONS, messages: int = MESSAGES, rounds: int = ROUNDS
) -> dict[str, Any]:
    base = bench_settings(rate_limit_messages=100_000)
    async with own_database(base) as settings:
        both = {
            "on": settings.model_copy(update={"key_prefix": f"bench-{uuid.uuid4().hex[:8]}"}),
            "off": settings.model_copy(update={"key_prefix": f"bench-{uuid.uuid4().hex[:8]}"}),
        }
        try:
            with (
                BenchReplica(both["on"], rate_limit_messages=100_000) as on,
                BenchReplica(
                    both["off"], rate_limit_messages=100_000, metrics_enabled=False
                ) as off,
            ):
                await _round(on, off, both, 0, 10, 1)  # warm-up: imports, pools, scripts
                started = time.perf_counter()
                rows = [
                    await _round(on, off, both, n + 1, conversations, messages)
                    for n in range(rounds)
                ]
                seconds = time.perf_counter() - started
                scrape_ms = await _scrape_cost(on)
        finally:
            for one in both.values():
                await purge(one)
    total_on = sum(r["cpu_ms_on"] * r["messages_on"] for r in rows)
    total_off = sum(r["cpu_ms_off"] * r["messages_off"] for r in rows)
    per_on = total_on / sum(r["messages_on"] for r in rows)
    per_off = total_off / sum(r["messages_off"] for r in rows)
    return {
        "conversations": conversations,
        "messages": messages,
        "rounds": rows,
        "seconds": seconds,
        "cpu_ms_on": per_on,
        "cpu_ms_off": per_off,
        "ratio": per_on / per_off,
        "scrape_cpu_ms": scrape_ms,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        "Metrics cost: replica CPU per chat message, METRICS_ENABLED on vs off, both replicas "
        f"under the same load at once ({result['conversations']} conversations x "
        f"{result['messages']} messages each, per round)",
        f"{'round':>5} {'msgs on':>7} {'msgs off':>8} {'cpu/msg on':>10} {'cpu/msg off':>11} "
        f"{'ratio':>6}",
    ]
    for n, r in enumerate(result["rounds"], 1):
        lines.append(
            f"{n:>5} {r['messages_on']:>7.0f} {r['messages_off']:>8.0f} "
            f"{r['cpu_ms_on']:>8.2f}ms {r['cpu_ms_off']:>9.2f}ms "
            f"{r['cpu_ms_on'] / r['cpu_ms_off']:>6.3f}"
        )
    overhead = (result["ratio"] - 1) * 100
    lines.append(
        f"  all {result['cpu_ms_on']:>18.2f}ms {result['cpu_ms_off']:>9.2f}ms "
        f"{result['ratio']:>6.3f}  -> overhead {overhead:+.1f}% CPU per message (target <= 5%)"
    )
    lines.append(
        f"  one scrape (GET /metrics, backlog gauges included): {result['scrape_cpu_ms']:.2f} ms "
        "of replica CPU"
    )
    return "\n".join(lines)
