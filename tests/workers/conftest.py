"""Real Celery worker processes against a private Redis and this run's PostgreSQL database.

Each test gets its own `redis-server` on a free loopback port (broker and hot state, so a test
may FLUSHALL it; for the tests parametrized with `broker`, hot state only, the broker being
behind a private Redis Sentinel group, tests/redis_sentinel.py), and workers started as
`celery -A workers.app:celery_app worker` subprocesses configured through the environment, as
in production. Everything a test starts
is stopped in teardown, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.core.config import Settings
from backend.core.redis import RedisService
from tests.conftest import make_settings, process_env
from tests.redis_sentinel import MASTER_NAME, SentinelGroup
from tests.redis_server import RedisServer

CELERY = str(Path(sys.executable).with_name("celery"))


class WorkerProcess:
    """A `celery worker` (optionally with embedded beat) in its own process group."""

    def __init__(self, env: dict[str, str], log: Path, *, beat: bool) -> None:
        self.name = f"w{uuid.uuid4().hex[:8]}@test"
        args = [
            CELERY,
            "-A",
            "workers.app:celery_app",
            "worker",
            "--concurrency=1",
            "--pool=prefork",
            "-n",
            self.name,
            "--loglevel=INFO",
            "--without-mingle",
            "--without-gossip",
        ]
        if beat:
            args += ["-B", "-s", str(log.with_suffix(".beat"))]
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while b"ready." not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole worker (main process, pool children, beat): a lost machine."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            self.kill()  # children may outlive a dead main process
        self._out.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[SentinelGroup]:
    """One broker behind Sentinel for the tests that run on it (emptied before each)."""
    group = SentinelGroup().start()
    try:
        yield group
    finally:
        group.destroy()


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings of the Celery broker: by default the private server (broker and hot state on
    one Redis); `@pytest.mark.parametrize("broker", ["redis", "sentinel"], indirect=True)`
    runs a test on a broker of its own behind Sentinel as well."""
    if getattr(request, "param", "redis") == "redis":
        return {}
    group: SentinelGroup = request.getfixturevalue("sentinel_group")
    with group.master().client() as client:
        client.flushall()  # the group's own private servers: what a previous test queued
    return {"celery_broker_url": group.url, "celery_broker_sentinel_master": MASTER_NAME}


@pytest.fixture
def settings(private_redis: RedisServer, broker: dict[str, Any], tmp_path: Path) -> Settings:
    return make_settings(
        redis_url=private_redis.url,
        archive_dir=str(tmp_path / "archive"),
        dirty_flush_interval=0.5,
        snapshot_batch_size=50,
        **broker,
    )


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*, beat: bool = True, **extra: Any) -> WorkerProcess:
        log = tmp_path / f"worker{len(started)}.log"
        worker = WorkerProcess(process_env(settings, **extra), log, beat=beat)
        started.append(worker)
        worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture
async def redis_service(settings: Settings) -> AsyncIterator[RedisService]:
    # The private server is thrown away after the test: nothing to clean key by key.
    service = RedisService.from_settings(settings)
    try:
        yield service
    finally:
        await service.close()
