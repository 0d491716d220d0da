"""One API replica for the benchmarks: a real uvicorn process (uvloop + httptools), with its
own PostgreSQL database (created, migrated, dropped) since the app reads through to it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from alembic.config import Config

from alembic import command
from backend.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def own_database(settings: Settings) -> AsyncIterator[Settings]:
    """`settings` pointing at a fresh, migrated database (`triage_bench_<random>`), dropped
    after: the shared test database may be reset by test runs at any moment."""
    base, _, _ = settings.database_url.rpartition("/")
    name = f"triage_bench_{uuid.uuid4().hex[:8]}"
    server = "postgresql://" + base.split("://", 1)[1]

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(f"{server}/postgres")
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    url = f"{base}/{name}"
    config = Config(str(ROOT / "alembic.ini"), attributes={"configure_logger": False})
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", url)
    await admin(f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(command.upgrade, config, "head")
        yield settings.model_copy(update={"database_url": url})
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, 30 s to exit, then SIGKILL: a bench's server process, stopped for good."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class BenchReplica:
    """`production`: run it as the compose file does (`triage serve --proxy-headers`, uvicorn's
    defaults and access log, `ENVIRONMENT=production`, the app logging at INFO) instead of a
    bare uvicorn at WARNING. `port`: a given port instead of a free one. `app`: the ASGI app
    uvicorn runs (the floor app of bench/floor_app.py)."""

    def __init__(
        self,
        settings: Settings,
        *,
        app: str = "backend.main:app",
        port: int | None = None,
        production: bool = False,
        **env: Any,
    ) -> None:
        self.app = app
        self.port = port or free_port()
        self.production = production
        self.env = {
            "ENVIRONMENT": settings.environment,
            "REDIS_URL": settings.redis_url,
            "DATABASE_URL": settings.database_url,
            "JWT_SECRET": settings.jwt_secret,
            "KEY_PREFIX": settings.key_prefix,
            "LOG_LEVEL": "WARNING",
        }
        if production:
            self.env.update(ENVIRONMENT="production", LOG_LEVEL="INFO", FORWARDED_ALLOW_IPS="*")
        self.env.update({k.upper(): str(v) for k, v in env.items()})
        fd, name = tempfile.mkstemp(prefix="triage-bench-", suffix=".log")
        os.close(fd)
        self.log = Path(name)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BenchReplica:
        log = self.log.open("wb")
        self.proc = subprocess.Popen(
            self._command(),
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()  # the child has its own descriptor
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bench replica did not start: {self.output()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health/ready").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)

    def _command(self) -> list[str]:
        address = ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.production:
            return [
                str(Path(sys.executable).with_name("triage")),
                "serve",
                *address,
                "--proxy-headers",
            ]
        return [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            *address,
            "--log-level",
            "warning",
            "--backlog",
            "4096",
        ]

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        stop(self.proc)
        self.log.unlink(missing_ok=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the replica has used so far."""
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def redis_connections(self, redis_port: int) -> int:
        """TCP connections this process holds to Redis (sockets of the pid, remote port)."""
        inodes = set()
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[2].split(":")[1], 16) == redis_port and parts[9] in inodes:
                    count += 1
        return count
