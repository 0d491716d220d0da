"""Fixtures of the fault tests: private servers and real worker / beat processes, each stopped
after the test (also on failure). The helpers themselves are in tests/faults/servers.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.config import Settings
from backend.core.db import create_engine
from tests.conftest import TEST_DATABASE_URL, client_for, make_settings, process_env
from tests.faults.servers import CeleryProcess, PostgresCluster
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

StartCelery = Callable[..., CeleryProcess]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """Broker and hot state on one private server, appendonly (fsync always) as in
    production, so a restart keeps what was written."""
    server = RedisServer(appendonly=True).start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().create()
    try:
        yield cluster
    finally:
        cluster.destroy()


def fault_settings(redis: RedisServer, tmp_path: Path, database_url: str | None = None) -> Settings:
    return make_settings(
        redis_url=redis.url,
        database_url=database_url or TEST_DATABASE_URL,
        archive_dir=str(tmp_path / "archive"),
        dirty_flush_interval=0.5,
        snapshot_batch_size=50,
        rate_limit_messages=10_000,
        # Fail fast against a stopped server instead of retrying inside a request.
        redis_retries=0,
    )


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    return fault_settings(redis_server, tmp_path)


@pytest.fixture
def start_celery(settings: Settings, tmp_path: Path) -> Iterator[StartCelery]:
    """`start_celery("worker" | "beat", **env)`: a `triage worker` (waited for until ready)
    or `triage beat` with the test's settings; every one is stopped after the test."""
    started: list[CeleryProcess] = []

    def start(kind: str, ready: bool = True, **extra: Any) -> CeleryProcess:
        env = process_env(settings, **extra)
        log = tmp_path / f"{kind}{len(started)}.log"
        if kind == "worker":
            process = CeleryProcess.worker(f"w{len(started)}", env, log)
        else:
            process = CeleryProcess.beat(env, log)
        started.append(process)
        if ready:
            process.wait_for_line("ready." if kind == "worker" else "beat: Starting")
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this process (its lifespan, reply runtime and all) on the private servers."""
    async for client in client_for(settings):
        yield client


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, pool_size=1, max_overflow=1)
    try:
        yield engine
    finally:
        await engine.dispose()
