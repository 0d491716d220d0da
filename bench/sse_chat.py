"""Chat latency on one replica: POST /api/agents/chat to the first SSE event and to the reply.

One uvicorn replica (uvloop, httptools) with the built-in offline interviewer (no pacing).
N conversations run at once, each its own user; each sends its next message 2 s after its last
reply ended (first messages spread over the first 2 s, as real arrivals are). Per message:

* first event: time from sending the POST to the first SSE event (`message.created`, sent as
  soon as the message is stored: the client's acknowledgement with its resume id);
* first delta: to the first `message.delta` of the reply;
* completed: to `message.completed`.

Reported as p50 and p99 over every message of the run, with the replica's CPU time per message,
its CPU use over the run and the client's (100% = one core). The client is a raw asyncio
HTTP/1.1 client in this process; client, server and Redis share the machine's two cores.

The same load then runs against the floor (`bench/floor_app.py`: a minimal FastAPI +
sse-starlette app that writes one versioned document and streams the same five events per
message), started the same way; the report gives the replica's CPU per message over the
floor's, measured side by side in one run.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

from backend.core.auth import create_token
from bench.common import bench_settings
from bench.replica import BenchReplica, own_database
from bench.sse_client import SSEConnection

THINK_SECONDS = 2.0
MESSAGES = {1: 15, 50: 6, 200: 6}
TEXTS = [
    "Fui demitido sem justa causa e a empresa não pagou as verbas rescisórias nem o FGTS.",
    "Foi há duas semanas; trabalhei lá quatro anos com carteira assinada.",
    "A empresa é a Metalúrgica Silva Ltda, em Contagem.",
    "Não tenho audiência marcada, mas o prazo para a homologação já passou.",
    "Tenho a carteira de trabalho, os holerites e o termo de rescisão.",
    "Quero receber o que me devem e saber se cabe indenização.",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def conversation(
    port: int, token: str, messages: int, samples: list[dict[str, float]], errors: list[str]
) -> None:
    await asyncio.sleep(random.uniform(0, THINK_SECONDS))
    session_id: str | None = None
    for turn in range(messages):
        body: dict[str, Any] = {"message": TEXTS[turn % len(TEXTS)]}
        if session_id:
            body["session_id"] = session_id
        started = time.perf_counter()
        conn = await SSEConnection.open(
            "127.0.0.1", port, "POST", "/api/agents/chat", token=token, body=body
        )
        try:
            if conn.status != 200:
                errors.append(f"HTTP {conn.status}: {(await conn.read_body())[:200]!r}")
                return
            session_id = conn.headers["x-session-id"]
            sample: dict[str, float] = {}
            async for event in conn.events():
                now = (time.perf_counter() - started) * 1000
                sample.setdefault("first_event", now)
                if event.event == "message.delta":
                    sample.setdefault("first_delta", now)
                elif event.event == "message.completed":
                    sample["completed"] = now
                    break
                elif event.event == "error":
                    errors.append(event.data)
                    break
            if "completed" in sample:
                samples.append(sample)
        finally:
            conn.close()
        await asyncio.sleep(THINK_SECONDS)


async def run_level(replica: BenchReplica, settings: Any, concurrency: int) -> dict[str, Any]:
    samples: list[dict[str, float]] = []
    errors: list[str] = []
    tokens = [
        create_token(settings, f"bench-{concurrency}-{i}", "bench") for i in range(concurrency)
    ]
    started, cpu, own = time.perf_counter(), replica.cpu_seconds(), time.process_time()
    await asyncio.gather(
        *(
            conversation(replica.port, token, MESSAGES[concurrency], samples, errors)
            for token in tokens
        )
    )
    elapsed = time.perf_counter() - started
    cpu, own = replica.cpu_seconds() - cpu, time.process_time() - own
    row: dict[str, Any] = {
        "concurrency": concurrency,
        "messages": len(samples),
        "errors": len(errors),
        "seconds": elapsed,
        "cpu_ms_per_message": cpu * 1000 / max(1, len(samples)),
        "cpu_busy": cpu / elapsed,
        "client_busy": own / elapsed,
    }
    for key in ("first_event", "first_delta", "completed"):
        values = [s[key] for s in samples if key in s]
        row[f"{key}_p50"] = statistics.median(values)
        row[f"{key}_p99"] = percentile(values, 0.99)
    if errors:
        row["first_error"] = errors[0]
    return row


async def run(
    levels: tuple[int, ...] = (1, 50, 200), floor_levels: tuple[int, ...] = (200,)
) -> list[dict[str, Any]]:
    rows = []
    async with own_database(bench_settings(rate_limit_messages=100_000)) as settings:
        with BenchReplica(settings, rate_limit_messages=100_000) as replica:
            await run_level(replica, settings, 1)  # warm-up: imports, pools, scripts
            for concurrency in levels:
                rows.append(await run_level(replica, settings, concurrency))
        floor = BenchReplica(
            settings,
            app="bench.floor_app:app",
            floor_redis_url=settings.redis_url,
            floor_prefix=f"{settings.key_prefix}:floor",
        )
        with floor:
            await run_level(floor, settings, 1)
            for concurrency in floor_levels:
                row = await run_level(floor, settings, concurrency)
                rows.append({**row, "floor": True})
        await purge(settings)
    return rows


async def purge(settings: Any) -> None:
    from backend.core.redis import RedisService

    redis = RedisService.from_settings(settings)
    try:
        keys = [k async for k in redis.scan_keys(f"{settings.key_prefix}:*")]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
    finally:
        await redis.close()


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "Chat over SSE, one replica, offline interviewer: POST -> first SSE event / first delta "
        f"/ completed reply (ms); next message {THINK_SECONDS:.0f} s after each reply",
        f"{'convs':>5} {'msgs':>5} {'errors':>6} {'first p50':>9} {'first p99':>9} "
        f"{'delta p50':>9} {'delta p99':>9} {'done p50':>8} {'done p99':>8} "
        f"{'cpu/msg':>7} {'cpu busy':>8} {'client':>6}",
    ]
    for r in rows:
        lines.append(
            f"{r['concurrency']:>5} {r['messages']:>5} {r['errors']:>6} "
            if not r.get("floor")
            else f"{r['concurrency']:>5} {r['messages']:>5} {'floor':>6} "
        )
        lines[-1] += (
            f"{r['first_event_p50']:>9.1f} {r['first_event_p99']:>9.1f} "
            f"{r['first_delta_p50']:>9.1f} {r['first_delta_p99']:>9.1f} "
            f"{r['completed_p50']:>8.1f} {r['completed_p99']:>8.1f} "
            f"{r['cpu_ms_per_message']:>5.1f}ms {r['cpu_busy']:>8.0%} {r['client_busy']:>6.0%}"
        )
        if r.get("first_error"):
            lines.append(f"      first error: {r['first_error'][:200]}")
    project = {r["concurrency"]: r for r in rows if not r.get("floor")}
    for r in rows:
        if r.get("floor") and r["concurrency"] in project:
            ratio = project[r["concurrency"]]["cpu_ms_per_message"] / r["cpu_ms_per_message"]
            lines.append(
                f"CPU per message at {r['concurrency']} conversations, replica / floor "
                f"(bench/floor_app.py): {ratio:.2f}"
            )
    return "\n".join(lines)
