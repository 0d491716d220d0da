"""Running the `triage` CLI in tests: as a real subprocess or with Typer's CliRunner.

Settings reach the commands the way they do in production, through environment variables
(REDIS_URL, KEY_PREFIX, ...), built from the per-test `Settings`. Tests here are plain
functions (the commands run their own event loop); `arun` runs a coroutine with a state
manager on the test's prefix for setting data up and checking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from typer.testing import CliRunner, Result

from backend.cli import app
from backend.cli.hybrid import open_hybrid
from backend.core.config import Settings, get_settings
from backend.core.redis import RedisService
from backend.durability import repository
from backend.durability.service import HybridConversationService
from backend.state.schemas import ConversationState
from backend.state.service import ConversationStateManager
from tests.conftest import TEST_POSTGRES, _admin, make_settings, migrate, purge_prefix
from tests.redis_cluster import free_port
from tests.redis_server import RedisServer

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
TRIAGE = Path(sys.executable).with_name("triage")


def env_for(settings: Settings) -> dict[str, str]:
    return {
        "ENVIRONMENT": settings.environment,
        "REDIS_URL": settings.redis_url,
        "REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "KEY_PREFIX": settings.key_prefix,
        "JWT_SECRET": settings.jwt_secret,
        "DATABASE_URL": settings.database_url,
        "REDIS_RETRIES": str(settings.redis_retries),
        "REDIS_CONNECT_TIMEOUT": str(settings.redis_connect_timeout),
        "CELERY_QUEUE": settings.celery_queue,
        "ARCHIVE_DIR": settings.archive_dir,
        "DIRTY_FLUSH_INTERVAL": str(settings.dirty_flush_interval),
        "ARCHIVE_INACTIVE_SESSIONS_DAYS": str(settings.archive_inactive_sessions_days),
    }


def run_process(
    args: list[str | Path],
    settings: Settings,
    *,
    input: str | None = None,
    timeout: float = 60,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run a program with the test's settings in its environment (the timeout is a hang guard)."""
    return subprocess.run(
        [str(a) for a in args],
        env={**os.environ, **env_for(settings), "COLUMNS": "200", **env},
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def triage(
    *args: str | Path, settings: Settings, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return run_process([TRIAGE, *args], settings, **kwargs)


def invoke(settings: Settings, *args: str, input: str | None = None, **env: str) -> Result:
    """Run a command in-process with Typer's CliRunner (settings from the environment)."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(
            app, list(args), env={**env_for(settings), "COLUMNS": "200", **env}, input=input
        )
    finally:
        get_settings.cache_clear()


def arun(settings: Settings, fn: Callable[[ConversationStateManager], Awaitable[T]]) -> T:
    """Run `fn(manager)` on a fresh event loop and Redis pool for the test's prefix."""

    async def main() -> T:
        redis = RedisService.from_settings(settings)
        try:
            return await fn(ConversationStateManager(redis, settings))
        finally:
            await redis.close()

    return asyncio.run(main())


def hybrid_run(settings: Settings, fn: Callable[[HybridConversationService], Awaitable[T]]) -> T:
    """Like `arun`, with the durability layer (PostgreSQL, read-through restore) installed."""

    async def main() -> T:
        async with open_hybrid(settings) as hybrid:
            return await fn(hybrid)

    return asyncio.run(main())


def hot_keys(settings: Settings) -> list[str]:
    async def scan(manager: ConversationStateManager) -> list[str]:
        return sorted([k async for k in manager.redis.scan_keys(f"{settings.key_prefix}:*")])

    return arun(settings, scan)


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def ops_settings() -> Iterator[Settings]:
    """Settings with a fresh key prefix; every key under it is deleted afterwards."""
    settings = make_settings()
    yield settings

    async def purge(manager: ConversationStateManager) -> None:
        await purge_prefix(manager.redis, settings.key_prefix)

    arun(settings, purge)


@contextmanager
def serving(settings: Settings, *args: str, port: int | None = None) -> Iterator[str]:
    """A real `triage serve` process on a free port; yields its base URL, always stops it.

    Its output goes to a temporary file, shown if it fails to come up.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [str(TRIAGE), "serve", "--port", str(port), "--log-level", "warning", *args],
            env={**os.environ, **env_for(settings)},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait_until_live(url, proc, log)
            yield url
        finally:
            stop_process(proc)


def stop_process(proc: subprocess.Popen[str], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_live(url: str, proc: subprocess.Popen[str], log: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout  # a hang guard, not a timed assertion
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"server exited with {proc.returncode}: {log.read()}")
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    log.seek(0)
    raise AssertionError(f"server did not come up: {log.read()}")


def new_session(settings: Settings, text: str = "Fui demitido sem justa causa.") -> str:
    async def write(manager: ConversationStateManager) -> str:
        state = ConversationState(session_id=uuid.uuid4().hex, user_id="ana", tenant_id="t1")
        state.append_message("user", text, max_history=100)
        return (await manager.save_conversation_state(state)).session_id

    return arun(settings, write)


def dirty_count(settings: Settings) -> int:
    async def count(manager: ConversationStateManager) -> int:
        return int(await manager.redis.client.zcard(manager.keys.dirty()))

    return arun(settings, count)


def warm_version(settings: Settings, sid: str) -> int | None:
    async def read(hybrid: HybridConversationService) -> int | None:
        async with hybrid.engine.connect() as conn:
            stored = await repository.get_session(conn, sid)
        return None if stored is None else stored.version

    return hybrid_run(settings, read)


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout  # hang guard
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


class Background:
    """A long-running `triage` process (worker, beat) in its own process group, logged to a
    file; `stop()` ends the whole group (pool children included)."""

    def __init__(self, settings: Settings, log: Path, *args: str, **env: str) -> None:
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [str(TRIAGE), *args],
            env={**os.environ, **env_for(settings), **env},
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout  # hang guard
        while text not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the log:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the group (a warm shutdown), SIGKILL it if it hangs; the exit status."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # pool children outliving their parent
        self._out.close()
        return self.proc.returncode


@pytest.fixture
def background(tmp_path: Path) -> Iterator[Callable[..., Background]]:
    """Start `triage` processes that are stopped after the test, also on failure."""
    started: list[Background] = []

    def start(settings: Settings, *args: str, **env: str) -> Background:
        process = Background(settings, tmp_path / f"process{len(started)}.log", *args, **env)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.proc.returncode is None:
                process.stop()


@pytest.fixture
def broker_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings on a private redis-server (Celery broker and hot state), stopped afterwards,
    so worker and queue tests never share queues or control messages with anyone."""
    server = RedisServer(tmp_path).start()
    try:
        yield make_settings(
            redis_url=server.url, archive_dir=str(tmp_path / "archive"), dirty_flush_interval=0.5
        )
    finally:
        server.destroy()


@contextmanager
def own_database() -> Iterator[str]:
    """A migrated PostgreSQL database of its own, dropped afterwards: for commands that sweep
    the whole database (archive), which must not touch other tests' rows."""
    name = f"triage_test_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+asyncpg://{TEST_POSTGRES}/{name}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
