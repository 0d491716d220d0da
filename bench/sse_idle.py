"""How many mostly-idle SSE streams one replica holds, and what each costs.

One uvicorn replica. N sessions are created in Redis; a client opens one events stream
(GET /api/conversations/sessions/{id}/events) per session and leaves it idle. Measured:

* memory per stream: the replica's RSS after opening N streams minus its RSS after a warm-up
  of W streams, divided by N - W (the replica's own baseline, imports and pools excluded);
* the Redis connections the replica holds meanwhile (the shared tailer: a few, not N);
* what the open streams cost while idle: the replica's CPU over an idle window
  (`BENCH_IDLE_SECONDS`, 60: one `STREAM_SWEEP_SECONDS`) with N streams open, minus the same
  replica's CPU with none open, per 1,000 streams per minute; and the Redis commands a second
  (INFO commandstats, by command) the Redis servers process meanwhile: they are the bench's
  own (a private redis-server on a single node, at `BENCH_REDIS_PORT` or a free port; a
  throwaway cluster), so every command counted is the replica's;
* that the streams are live: one at a time, an event is appended to a random session and its
  stream must deliver it; the delay from the append is reported (p50/p99).

Run against the single Redis node and against a throwaway 3-master Redis Cluster
(`tests/redis_cluster.py`; its ports from BENCH_CLUSTER_PORTS, e.g. `7100,7101,7102`, else
free ones), side by side. `python -m bench.sse_idle [--streams N] [--topology
single|cluster]` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from redis.asyncio import RedisCluster

from backend.core.auth import create_token
from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.state.schemas import ConversationState, Event
from backend.state.service import ConversationStateManager
from bench.common import BENCH_REDIS_URL, bench_settings
from bench.replica import BenchReplica, free_port, own_database
from bench.scale_stack import PrivateRedis
from bench.sse_chat import percentile, purge
from bench.sse_client import SSEConnection
from tests.redis_cluster import RedisClusterProcess

WARM_UP = 200
BATCH = 100
PROBES = 200
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
BASELINE_SECONDS = 20.0  # the replica's own idle cost, no stream open


async def create_sessions(manager: ConversationStateManager, n: int) -> list[str]:
    ids = [f"idle-{i:06d}" for i in range(n)]

    async def one(sid: str) -> None:
        state = ConversationState(session_id=sid, user_id="idle-user", tenant_id="bench")
        await manager.save_conversation_state(state, event=Event(type="session.created"))

    for start in range(0, n, 200):  # within the client's connection pool
        await asyncio.gather(*(one(sid) for sid in ids[start : start + 200]))
    return ids


async def open_streams(port: int, token: str, ids: list[str]) -> list[SSEConnection]:
    connections: list[SSEConnection] = []
    for start in range(0, len(ids), BATCH):
        batch = await asyncio.gather(
            *(
                SSEConnection.open(
                    "127.0.0.1",
                    port,
                    "GET",
                    f"/api/conversations/sessions/{sid}/events",
                    token=token,
                )
                for sid in ids[start : start + BATCH]
            )
        )
        bad = [c.status for c in batch if c.status != 200]
        if bad:
            raise RuntimeError(f"streams refused: {bad[:5]}")
        connections.extend(batch)
    return connections


async def probe(
    manager: ConversationStateManager, ids: list[str], connections: list[SSEConnection]
) -> tuple[int, list[float]]:
    """One at a time, append an event to a random session and time its delivery."""
    delivered, delays = 0, []
    for i in random.sample(range(len(ids)), PROBES):
        events = connections[i].events()
        waiter = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        started = time.perf_counter()
        await manager.append_event(ids[i], Event(type="bench.probe", data={"i": i}))
        try:
            event = await asyncio.wait_for(waiter, 10)
        except TimeoutError:
            continue
        finally:
            await events.aclose()
        if event.event == "bench.probe":
            delivered += 1
            delays.append((time.perf_counter() - started) * 1000)
    return delivered, delays


async def command_counts(redis: RedisService) -> Counter[str]:
    """Calls so far by command (INFO commandstats), summed over a cluster's nodes."""
    if redis.is_cluster:
        info = await redis.client.execute_command(
            "INFO", "commandstats", target_nodes=RedisCluster.ALL_NODES
        )
        nodes = list(info.values())
    else:
        nodes = [await redis.client.info("commandstats")]
    counts: Counter[str] = Counter()
    for node in nodes:
        for name, stats in node.items():
            counts[name.removeprefix("cmdstat_")] += int(stats["calls"])
    return counts


async def idle_window(
    replica: BenchReplica, redis: RedisService, seconds: float
) -> tuple[float, Counter[str]]:
    """The replica's CPU seconds and the Redis commands by name over `seconds` of idling (the
    bench's own INFO calls left out)."""
    before, cpu = await command_counts(redis), replica.cpu_seconds()
    await asyncio.sleep(seconds)
    used = replica.cpu_seconds() - cpu
    delta = await command_counts(redis) - before
    delta["info"] -= 1 if not redis.is_cluster else 3
    return used, +delta


async def run(
    streams: int = 5_000, topologies: tuple[str, ...] = ("single node", "cluster")
) -> list[dict[str, Any]]:
    rows = []
    for topology in topologies:
        async with own_database(bench_settings()) as settings:
            if topology == "single node":
                port = int(os.environ.get("BENCH_REDIS_PORT") or free_port())
                with (
                    tempfile.TemporaryDirectory(prefix="sse-idle-") as directory,
                    PrivateRedis(port, Path(directory)) as server,
                ):
                    private = settings.model_copy(update={"redis_url": server.url})
                    rows.append(await _run(private, streams, [port]))
            else:
                ports = os.environ.get("BENCH_CLUSTER_PORTS")
                cluster = RedisClusterProcess(
                    ports=[int(p) for p in ports.split(",")] if ports else None
                ).start()
                try:
                    on_cluster = settings.model_copy(
                        update={"redis_url": cluster.url, "redis_cluster": True}
                    )
                    rows.append(await _run(on_cluster, streams, cluster.ports))
                finally:
                    cluster.stop()
        rows[-1]["topology"] = topology
    return rows


async def _run(settings: Settings, streams: int, redis_ports: list[int]) -> dict[str, Any]:
    redis = RedisService.from_settings(settings)
    manager = ConversationStateManager(redis, settings)
    token = create_token(settings, "idle-user", "bench")
    connections: list[SSEConnection] = []
    # The Celery broker is a standalone Redis even when the state is on a cluster.
    env = {"redis_cluster": True, "celery_broker_url": BENCH_REDIS_URL}
    try:
        ids = await create_sessions(manager, streams)
        with BenchReplica(settings, **(env if settings.redis_cluster else {})) as replica:
            await asyncio.sleep(2)
            base_cpu, base_commands = await idle_window(replica, redis, BASELINE_SECONDS)
            connections += await open_streams(replica.port, token, ids[:WARM_UP])
            await asyncio.sleep(2)
            rss_warm = replica.rss_bytes()
            started = time.perf_counter()
            connections += await open_streams(replica.port, token, ids[WARM_UP:])
            open_seconds = time.perf_counter() - started
            await asyncio.sleep(3)
            rss_full = replica.rss_bytes()
            redis_connections = sum(replica.redis_connections(port) for port in redis_ports)
            idle_cpu, idle_commands = await idle_window(replica, redis, IDLE_SECONDS)
            delivered, delays = await probe(manager, ids, connections)
            for connection in connections:
                connection.close()
    finally:
        if not settings.redis_cluster:  # a cluster is thrown away whole
            await purge(settings)
        await redis.close()
    per_stream = (rss_full - rss_warm) / (streams - WARM_UP)
    # CPU the open streams add, per 1,000 streams per minute of idling.
    stream_cpu = idle_cpu / IDLE_SECONDS - base_cpu / BASELINE_SECONDS
    return {
        "streams": streams,
        "partitions": settings.stream_partitions,
        "open_seconds": open_seconds,
        "rss_warm_mb": rss_warm / 2**20,
        "rss_full_mb": rss_full / 2**20,
        "per_stream_kb": per_stream / 1024,
        "redis_connections": redis_connections,
        "idle_seconds": IDLE_SECONDS,
        "idle_cpu_ms_per_min": idle_cpu / IDLE_SECONDS * 60_000,
        "base_cpu_ms_per_min": base_cpu / BASELINE_SECONDS * 60_000,
        "cpu_ms_per_1000_per_min": stream_cpu * 60_000 / (streams / 1000),
        "idle_commands_per_s": idle_commands.total() / IDLE_SECONDS,
        "base_commands_per_s": base_commands.total() / BASELINE_SECONDS,
        "top_commands": [(name, n / IDLE_SECONDS) for name, n in idle_commands.most_common(4)],
        "probes": PROBES,
        "delivered": delivered,
        "probe_p50_ms": statistics.median(delays) if delays else float("nan"),
        "probe_p99_ms": percentile(delays, 0.99) if delays else float("nan"),
    }


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "Idle SSE streams on one replica (events endpoint, one stream per session; "
        f"{rows[0]['partitions']} notification partitions)"
    ]
    for row in rows:
        lines += [
            f"  {row['topology']}: {row['streams']} streams open (opened "
            f"{row['streams'] - WARM_UP} in {row['open_seconds']:.1f} s after a warm-up of "
            f"{WARM_UP})",
            f"    replica RSS: {row['rss_warm_mb']:.1f} MB after warm-up -> "
            f"{row['rss_full_mb']:.1f} MB with all streams open",
            f"    memory per stream: {row['per_stream_kb']:.1f} KB",
            f"    Redis connections held by the replica: {row['redis_connections']}",
            f"    idle for {row['idle_seconds']:.0f} s: replica CPU "
            f"{row['idle_cpu_ms_per_min']:.0f} ms/min ({row['base_cpu_ms_per_min']:.0f} with no "
            f"stream open): {row['cpu_ms_per_1000_per_min']:.0f} ms CPU per 1,000 open streams "
            "per minute",
            f"    Redis commands per second, all streams idle: {row['idle_commands_per_s']:.1f} "
            f"({row['base_commands_per_s']:.1f} with no stream open; "
            + ", ".join(f"{name} {rate:.1f}" for name, rate in row["top_commands"])
            + ")",
            f"    live check: {row['delivered']}/{row['probes']} probe events delivered, "
            f"append -> delivery p50 {row['probe_p50_ms']:.1f} ms, "
            f"p99 {row['probe_p99_ms']:.1f} ms",
        ]
    return "\n".join(lines)


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=5_000)
    parser.add_argument("--topology", action="append", choices=("single", "cluster"))
    args = parser.parse_args()
    names = {"single": "single node", "cluster": "cluster"}
    topologies = tuple(names[t] for t in args.topology or ("single", "cluster"))
    print(report(uvloop.run(run(args.streams, topologies))))


if __name__ == "__main__":
    main()
