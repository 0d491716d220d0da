"""What one chat message costs in Redis: round trips from the replica and commands run.

One uvicorn replica (offline interviewer, no pacing) against a private `redis-server` of its
own, so nothing else pollutes the counts. Conversations of six messages run one after the
other (concurrency 1, the next message as soon as the reply completed). Per message:

* client calls: the commands the replica sent (an EVALSHA counts once), from `MONITOR`, which
  marks the commands a script runs with `lua` instead of the client's address;
* server commands: every command Redis ran, those inside scripts included, from the delta of
  `INFO commandstats` (a count that does not move with machine noise).

The replica's background loops (reply sweep, stream checks, idle XREADs) are included: they
are part of what a replica costs Redis, and at this pace they add well under one call per
message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from backend.core.auth import create_token
from bench.common import bench_settings
from bench.replica import BenchReplica, own_database
from bench.sse_chat import TEXTS
from bench.sse_client import SSEConnection

CONVERSATIONS = 5
MESSAGES = len(TEXTS)  # per conversation
# Commands of the measurement itself, not of the replica.
_OWN = {"info", "monitor", "ping", "hello"}


@contextlib.contextmanager
def private_redis() -> Iterator[int]:
    """A throwaway redis-server on a free port (BENCH_PRIVATE_REDIS_PORT to pin it)."""
    port = int(os.environ.get("BENCH_PRIVATE_REDIS_PORT") or 0) or _free_port()
    directory = Path(tempfile.mkdtemp(prefix="triage-bench-redis-"))
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    args += ["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("private redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Monitor:
    """Counts the commands clients send (not those scripts run) from a MONITOR feed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client_calls: Counter[str] = Counter()
        self.script_calls: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Monitor:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"MONITOR\r\n")
        await reader.readline()  # +OK
        self._writer = writer
        self._task = asyncio.create_task(self._read(reader))
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            # +1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" ... / [0 lua] "HSET" ...
            head, _, rest = line.decode("utf-8", "replace").partition("] ")
            name = rest.split(" ", 1)[0].strip().strip('"').lower()
            (self.script_calls if head.endswith(" lua") else self.client_calls)[name] += 1

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.2)  # let the feed catch up
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._writer.close()


def commandstats(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return Counter({name: n for name, n in calls.items() if name not in _OWN})


async def converse(port: int, token: str, messages: int) -> list[int]:
    """One conversation, each message as soon as the previous reply completed; returns the
    number of SSE events each message's stream carried."""
    session_id: str | None = None
    counts = []
    for turn in range(messages):
        body: dict[str, Any] = {"message": TEXTS[turn % len(TEXTS)]}
        if session_id:
            body["session_id"] = session_id
        conn = await SSEConnection.open(
            "127.0.0.1", port, "POST", "/api/agents/chat", token=token, body=body
        )
        try:
            if conn.status != 200:
                raise RuntimeError(f"HTTP {conn.status}: {(await conn.read_body())[:200]!r}")
            session_id = conn.headers["x-session-id"]
            events = 0
            async for event in conn.events():
                events += 1
                if event.event in ("message.completed", "error"):
                    break
            counts.append(events)
        finally:
            conn.close()
    return counts


async def run() -> dict[str, Any]:
    with private_redis() as port:
        url = f"redis://127.0.0.1:{port}/0"
        base = bench_settings(redis_url=url, rate_limit_messages=100_000)
        async with own_database(base) as settings:
            with BenchReplica(settings, rate_limit_messages=100_000) as replica:
                await converse(replica.port, create_token(settings, "warm", "bench"), 2)
                await asyncio.sleep(0.5)  # the warm-up reply's bookkeeping
                client = redis.Redis(port=port, decode_responses=True)
                before = commandstats(client)
                events: list[int] = []
                async with Monitor(port) as monitor:
                    for i in range(CONVERSATIONS):
                        token = create_token(settings, f"cost-{i}", "bench")
                        events += await converse(replica.port, token, MESSAGES)
                    await asyncio.sleep(0.3)  # the last reply's bookkeeping
                server = commandstats(client) - before
                client.close()
    messages = CONVERSATIONS * MESSAGES
    return {
        "messages": messages,
        "events_per_message": sum(events) / messages,
        "client": monitor.client_calls,
        "server": server,
    }


def report(row: dict[str, Any]) -> str:
    n = row["messages"]
    client: Counter[str] = row["client"]
    server: Counter[str] = row["server"]

    def per(counter: Counter[str]) -> str:
        return ", ".join(f"{name.upper()} {calls / n:.1f}" for name, calls in counter.most_common())

    return "\n".join(
        [
            f"Redis cost of one chat message (concurrency 1, offline interviewer, {n} messages "
            f"in conversations of {MESSAGES}; {row['events_per_message']:.1f} SSE events each)",
            f"  client calls per message:   {sum(client.values()) / n:5.1f}  ({per(client)})",
            f"  server commands per message: {sum(server.values()) / n:5.1f}  ({per(server)})",
        ]
    )


if __name__ == "__main__":
    import uvloop

    print(report(uvloop.run(run())))
