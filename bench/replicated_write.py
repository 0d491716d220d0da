"""The state write cycle with STATE_WRITE_REPLICAS=1 against 0, on the same master.

The bench starts its own Redis: a single master with one replica, then a 3-master cluster with
one replica per master (free loopback ports). On each, two managers (their own pools, one with
the setting, one without) run the write cycle of bench/state_write.py (read, versioned write)
interleaved round by round, so the ratio is measured side by side. With the setting each write
is followed by WAIT 1 on its connection: the price is the replica's acknowledgement, a round
trip master -> replica -> master per write (on loopback here; add the network's in production).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from backend.core.redis import RedisService
from backend.state.service import ConversationStateManager
from bench.common import bench_settings, median, timed
from bench.state_write import manager_cycles, sample_state
from tests.redis_cluster import RedisClusterProcess
from tests.redis_server import RedisServer

ROUNDS = 7
CYCLES_PER_WORKER = {1: 400, 50: 20}
MESSAGES = 20


async def measure(
    plain: ConversationStateManager,
    waiting: ConversationStateManager,
    concurrency: int,
    cycles: int,
) -> dict[str, Any]:
    sessions = [uuid.uuid4().hex for _ in range(concurrency)]
    for sid in sessions:
        await plain.save_conversation_state(sample_state(sid, MESSAGES))

    def cycles_of(manager: ConversationStateManager):  # type: ignore[no-untyped-def]
        async def run() -> int:
            return sum(
                await asyncio.gather(*(manager_cycles(manager, s, cycles) for s in sessions))
            )

        return run

    await cycles_of(plain)()  # warm-up: connections in the pools, scripts cached
    await cycles_of(waiting)()
    plain_rates, waiting_rates = [], []
    for _ in range(ROUNDS):
        plain_rates.append(await timed(cycles_of(plain)))
        waiting_rates.append(await timed(cycles_of(waiting)))
    zero, one = median(plain_rates), median(waiting_rates)
    return {"concurrency": concurrency, "plain_ops": zero, "waiting_ops": one, "ratio": one / zero}


async def _compare(topology: str, url: str, cluster: bool) -> list[dict[str, Any]]:
    settings = bench_settings(redis_url=url, redis_cluster=cluster)
    services = [RedisService.from_settings(settings) for _ in range(2)]
    plain = ConversationStateManager(services[0], settings)
    waiting_settings = settings.model_copy(update={"state_write_replicas": 1})
    waiting = ConversationStateManager(services[1], waiting_settings)
    await plain.load_scripts()
    try:
        rows = []
        for concurrency, cycles in CYCLES_PER_WORKER.items():
            rows.append(
                {"topology": topology, **await measure(plain, waiting, concurrency, cycles)}
            )
        return rows
    finally:
        for service in services:
            await service.close()


async def run() -> list[dict[str, Any]]:
    master = RedisServer().start()
    replica = RedisServer(extra_args=("--replicaof", "127.0.0.1", str(master.port))).start()
    try:
        replica.wait_replicating()
        rows = await _compare("master + replica", master.url, cluster=False)
    finally:
        replica.destroy()
        master.destroy()
    nodes = RedisClusterProcess(replicas=1).start()
    try:
        rows += await _compare("cluster 3+3", nodes.url, cluster=True)
    finally:
        nodes.stop()
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "State write cycle, STATE_WRITE_REPLICAS=1 vs 0 (same master, own pools, median of "
        f"{ROUNDS} interleaved rounds, {MESSAGES} messages)",
        f"{'topology':>16} {'concurrency':>11} {'0: cycles/s':>11} {'1: cycles/s':>11} "
        f"{'ratio':>6}",
    ]
    for r in rows:
        lines.append(
            f"{r['topology']:>16} {r['concurrency']:>11} {r['plain_ops']:>11.0f} "
            f"{r['waiting_ops']:>11.0f} {r['ratio']:>6.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import uvloop

    print(report(uvloop.run(run())))
