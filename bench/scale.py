"""N concurrent conversations on two replicas behind nginx: latency, errors and what it costs.

The production shape on one machine: two API replicas (`triage serve`, production settings,
the built-in offline interviewer without pacing), nginx as the loopback balancer (a config
derived from `deploy/nginx.conf`), one Redis (the production `redis/redis.conf`, a private
server), and the load generator in processes of its own (`bench/scale_client.py`). Each
conversation is its own user: it opens its session, keeps its event stream open all the time
and posts a message every uniform(20, 40) s. Conversations open gradually (the ramp), then the
steady state lasts `--minutes` after the last one opened. Messages posted in the steady state
are measured; errors are counted over the whole run.

    python -m bench.scale --conversations 2000,5000,10000 --minutes 3

Per level, a fresh stack (servers, database, Redis) and a table row: p50/p99 from the POST to
`message.created` on the open stream (first event) and to `message.completed` (the reply),
errors by kind, each replica's CPU (100% = one core) and RSS, nginx's and Redis's CPU, Redis
`used_memory` and `connected_clients`, the load generators' CPU, and how busy the whole
machine was (its load average, and the CPU everything on it used, ours and others').
A level passes with p99 to the first event under 100 ms and no error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import uvloop

from bench.common import bench_settings
from bench.replica import ROOT, BenchReplica, cpu_seconds, own_database
from bench.scale_stack import (
    Balancer,
    PrivateRedis,
    machine_busy_seconds,
    run_queue_wait_seconds,
)

TARGET_FIRST_P99_MS = 100.0
BASE_PORT = 7800  # Redis; replicas +1, +2; nginx +10
RAMP_RATE = 50.0  # conversations opened per second
DRAIN_SECONDS = 30.0
SAMPLE_SECONDS = 5.0
FD_LIMIT = 65_536  # wanted; without CAP_SYS_RESOURCE, the hard limit (20,000 here)
# A replica's own log lines at ERROR or above (JSON logs in production).
_LOG_ERROR = re.compile(r'"level(?:name)?": ?"(?:ERROR|CRITICAL)"')
_NGINX_ERROR = re.compile(r"\[(?:error|crit|alert|emerg)\]")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def raise_fd_limit() -> int:
    """Raise this process's descriptor limit (inherited by every server it starts): as root
    past the hard limit, otherwise up to it. Returns the limit in force."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, max(FD_LIMIT, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def run(
    conversations: int,
    minutes: float = 3.0,
    *,
    generators: int = 2,
    ramp_rate: float = RAMP_RATE,
    base_port: int = BASE_PORT,
    logs: Path | None = None,
    replica_settings: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One level on a fresh stack. `logs`: copy the servers' logs there before teardown;
    `replica_settings`: more environment for the replicas (`STREAM_KEYS_PER_READER=50`)."""
    fd_limit = raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="triage-scale-") as tmp:
        directory = Path(tmp)
        with PrivateRedis(base_port, directory) as redis_server:
            base = bench_settings(redis_url=redis_server.url)
            async with own_database(base) as settings:
                with ExitStack() as stack:
                    replicas = [
                        stack.enter_context(
                            BenchReplica(
                                settings,
                                port=base_port + 1 + i,
                                production=True,
                                rate_limit_messages=1_000_000,
                                rate_limit_sessions=1_000_000,
                                **(replica_settings or {}),
                            )
                        )
                        for i in range(2)
                    ]
                    balancer = stack.enter_context(
                        Balancer(base_port + 10, [r.port for r in replicas], directory, fd_limit)
                    )
                    row = await _measure(
                        conversations,
                        minutes,
                        generators,
                        ramp_rate,
                        settings.jwt_secret,
                        redis_server,
                        replicas,
                        balancer,
                        directory,
                    )
                    replica_errors = [
                        line
                        for r in replicas
                        for line in r.log.read_bytes().decode(errors="replace").splitlines()
                        if _LOG_ERROR.search(line)
                    ]
                    nginx_errors = _nginx_errors(balancer)
                    row["replica_log_errors"] = len(replica_errors)
                    row["nginx_errors"] = len(nginx_errors)
                    row["error_lines"] = replica_errors[:1] + nginx_errors[:1]
                    if logs is not None:
                        _keep_logs(logs / str(conversations), replicas, balancer, directory)
    row["fd_limit"] = fd_limit
    row["replica_settings"] = replica_settings or {}
    return row


async def _measure(
    conversations: int,
    minutes: float,
    generators: int,
    ramp_rate: float,
    secret: str,
    redis_server: PrivateRedis,
    replicas: list[BenchReplica],
    balancer: Balancer,
    directory: Path,
) -> dict[str, Any]:
    load_before = os.getloadavg()
    start = time.time() + 3  # the generators import the app and sign their tokens meanwhile
    since = start + conversations / ramp_rate + 2
    until = since + minutes * 60
    outs = [directory / f"generator-{k}.json" for k in range(generators)]
    run_id = secrets.token_hex(4)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.scale_client",
            *("--port", str(balancer.port), "--run", run_id),
            *("--total", str(conversations), "--index", str(k), "--of", str(generators)),
            *("--start", str(start), "--ramp-rate", str(ramp_rate)),
            *("--since", str(since), "--until", str(until)),
            *("--drain", str(DRAIN_SECONDS), "--out", str(outs[k])),
            cwd=ROOT,
            env={**os.environ, "SCALE_JWT_SECRET": secret},
        )
        for k in range(generators)
    ]
    try:
        await _sleep_until(since)
        nginx = balancer.pids()
        pids = {
            **{f"replica{i}": r.pid for i, r in enumerate(replicas)},
            **{f"nginx{i}": pid for i, pid in enumerate(nginx)},
            "redis": redis_server.pid,
            **{f"generator{k}": p.pid for k, p in enumerate(procs)},
        }
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        wait_before = {name: run_queue_wait_seconds(pid) for name, pid in pids.items()}
        machine_before = machine_busy_seconds()
        peak_rss = [0] * len(replicas)
        peak_clients = 0
        while time.time() < until:
            peak_rss = [max(p, r.rss_bytes()) for p, r in zip(peak_rss, replicas, strict=True)]
            peak_clients = max(peak_clients, redis_server.info()["connected_clients"])
            await asyncio.sleep(min(SAMPLE_SECONDS, max(0.0, until - time.time())))
        elapsed = time.time() - since
        cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / elapsed for name, pid in pids.items()}
        wait = {
            name: (run_queue_wait_seconds(pid) - wait_before[name]) / elapsed
            for name, pid in pids.items()
        }
        machine_after = machine_busy_seconds()
        redis_info = redis_server.info()
        rss = [r.rss_bytes() for r in replicas]
        load_during = os.getloadavg()
        for proc in procs:
            await asyncio.wait_for(proc.wait(), DRAIN_SECONDS + 120)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    results = [json.loads(out.read_text()) for out in outs]
    samples = [s for r in results for s in r["samples"]]
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    first = [s[1] for s in samples if s[1] is not None]
    done = [s[2] for s in samples if s[2] is not None]
    posted = [s[0] for s in samples]
    busy = machine_after[0] - machine_before[0]
    ours = sum(cpu.values()) * elapsed
    return {
        "conversations": conversations,
        "sessions_opened": sum(r["sessions_opened"] for r in results),
        "streams_opened": sum(r["streams_opened"] for r in results),
        "messages": len(samples),
        "messages_total": sum(r["messages"] for r in results),
        "steady_seconds": elapsed,
        "errors": dict(errors),
        "first_p50": statistics.median(first) if first else float("nan"),
        "first_p99": percentile(first, 0.99),
        "done_p50": statistics.median(done) if done else float("nan"),
        "done_p99": percentile(done, 0.99),
        "post_p50": statistics.median(posted) if posted else float("nan"),
        "post_p99": percentile(posted, 0.99),
        "replica_cpu": [cpu[f"replica{i}"] for i in range(len(replicas))],
        "replica_run_queue_wait": [wait[f"replica{i}"] for i in range(len(replicas))],
        "redis_run_queue_wait": wait["redis"],
        "replica_ms_per_message": sum(cpu[f"replica{i}"] for i in range(len(replicas)))
        * elapsed
        * 1000
        / max(1, len(samples)),
        "redis_ms_per_message": cpu["redis"] * elapsed * 1000 / max(1, len(samples)),
        "replica_rss_mb": [b / 2**20 for b in rss],
        "replica_peak_rss_mb": [b / 2**20 for b in peak_rss],
        "nginx_cpu": sum(v for k, v in cpu.items() if k.startswith("nginx")),
        "redis_cpu": cpu["redis"],
        "redis_used_memory_mb": redis_info["used_memory"] / 2**20,
        "redis_connected_clients": redis_info["connected_clients"],
        "redis_peak_clients": max(peak_clients, redis_info["connected_clients"]),
        "generator_cpu": [cpu[f"generator{k}"] for k in range(generators)],
        "machine_cpu": busy / elapsed,
        "others_cpu": max(0.0, busy - ours) / elapsed,
        "load_before": load_before,
        "load_during": load_during,
    }


def _keep_logs(
    target: Path, replicas: list[BenchReplica], balancer: Balancer, directory: Path
) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for i, replica in enumerate(replicas):
        shutil.copy(replica.log, target / f"replica{i}.log")
    for path in [*balancer.dir.glob("*.log"), directory / "redis" / "redis.log"]:
        if path.exists():
            shutil.copy(path, target / f"{path.parent.name}-{path.name}")


def _nginx_errors(balancer: Balancer) -> list[str]:
    path = balancer.dir / "error.log"
    if not path.exists():
        return []
    return [
        line for line in path.read_text(errors="replace").splitlines() if _NGINX_ERROR.search(line)
    ]


async def _sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


def passes(row: dict[str, Any]) -> bool:
    return (
        row["first_p99"] < TARGET_FIRST_P99_MS
        and not row["errors"]
        and not row["replica_log_errors"]
        and not row["nginx_errors"]
        and row["streams_opened"] == row["conversations"]
    )


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "N conversations on 2 replicas behind nginx, each with its event stream open, posting "
        "every 20-40 s; ms from the POST",
        f"{'convs':>6} {'msgs':>6} {'errors':>6} {'first p50':>9} {'first p99':>9} "
        f"{'done p50':>8} {'done p99':>8} {'POST p99':>8} {'replicas CPU':>12} "
        f"{'replicas RSS':>13} {'nginx':>5} {'redis':>5} {'redis mem':>9} {'clients':>7} "
        f"{'loadgen':>9} {'machine':>7} {'pass':>4}",
    ]
    for r in rows:
        errors = sum(r["errors"].values()) + r["replica_log_errors"] + r["nginx_errors"]
        lines.append(
            f"{r['conversations']:>6} {r['messages']:>6} {errors:>6} "
            f"{r['first_p50']:>9.1f} {r['first_p99']:>9.1f} "
            f"{r['done_p50']:>8.1f} {r['done_p99']:>8.1f} {r['post_p99']:>8.1f} "
            f"{'/'.join(f'{c:.0%}' for c in r['replica_cpu']):>12} "
            f"{'/'.join(f'{m:.0f}' for m in r['replica_rss_mb']) + ' MB':>13} "
            f"{r['nginx_cpu']:>5.0%} {r['redis_cpu']:>5.0%} "
            f"{r['redis_used_memory_mb']:>6.0f} MB {r['redis_connected_clients']:>7} "
            f"{'/'.join(f'{c:.0%}' for c in r['generator_cpu']):>9} "
            f"{r['machine_cpu']:>7.0%} {'yes' if passes(r) else 'no':>4}"
        )
    for r in rows:
        load = "/".join(f"{v:.2f}" for v in r["load_before"])
        during = "/".join(f"{v:.2f}" for v in r["load_during"])
        lines.append(
            f"  {r['conversations']}: {r['sessions_opened']} sessions and "
            f"{r['streams_opened']} streams opened, "
            f"{r['messages_total']} messages in all ({r['messages']} in "
            f"{r['steady_seconds']:.0f} s of steady state); POST p50 {r['post_p50']:.1f} ms; "
            f"CPU per message: replicas {r['replica_ms_per_message']:.1f} ms, Redis "
            f"{r['redis_ms_per_message']:.2f} ms; "
            f"load average {load} before, {during} at the end; others' CPU on the machine "
            f"{r['others_cpu']:.0%}; waiting for a core (runnable, not running): replicas "
            f"{'/'.join(f'{w:.0%}' for w in r['replica_run_queue_wait'])} of the time, Redis "
            f"{r['redis_run_queue_wait']:.0%}; fd limit {r['fd_limit']}"
        )
        if r.get("replica_settings"):
            lines.append(f"    replica settings: {json.dumps(r['replica_settings'])}")
        kinds = dict(r["errors"])
        if r["replica_log_errors"]:
            kinds["replica log lines at ERROR"] = r["replica_log_errors"]
        if r["nginx_errors"]:
            kinds["nginx error log lines"] = r["nginx_errors"]
        if kinds:
            lines.append(f"    errors: {json.dumps(kinds)}")
        for line in r.get("error_lines", []):
            lines.append(f"    e.g. {line[:300]}")
    best = [r["conversations"] for r in rows if passes(r)]
    lines.append(
        f"largest N with first-event p99 < {TARGET_FIRST_P99_MS:.0f} ms and no error: "
        + (f"{max(best)}" if best else "none of these")
    )
    lines.append(
        "(CPU: 100% = one core, over the steady state; machine: all processes, 200% = both "
        "cores; RSS and Redis at the end of the steady state)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--conversations", default="2000", help="comma-separated levels (2000,5000,10000)"
    )
    parser.add_argument("--minutes", type=float, default=3.0, help="steady state per level")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes")
    parser.add_argument("--ramp-rate", type=float, default=RAMP_RATE, help="opened per second")
    parser.add_argument("--base-port", type=int, default=BASE_PORT)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs here (per level)")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the replicas, e.g. STREAM_KEYS_PER_READER=50 (repeatable)",
    )
    args = parser.parse_args(argv)
    rows = []
    for level in (int(n) for n in args.conversations.split(",")):
        row = uvloop.run(
            run(
                level,
                args.minutes,
                generators=args.generators,
                ramp_rate=args.ramp_rate,
                base_port=args.base_port,
                logs=args.logs,
                replica_settings=dict(item.split("=", 1) for item in args.setting),
            )
        )
        rows.append(row)
        print(report([row]), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    if len(rows) > 1:
        print()
        print(report(rows))


if __name__ == "__main__":
    main()
