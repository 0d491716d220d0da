"""Running the `triage` CLI in tests: as a real subprocess or with Typer's CliRunner.

Settings reach the commands the way they do in production, through environment variables
(REDIS_URL, KEY_PREFIX, ...), built from the per-test `Settings`. Tests here are plain
functions (the commands run their own event loop); `arun` runs a coroutine with a state
manager on the test's prefix for setting data up and checking it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from typer.testing import CliRunner, Result

from backend.cli import app
from backend.core.config import Settings, get_settings
from backend.core.redis import RedisService
from backend.state.service import ConversationStateManager
from tests.conftest import make_settings, purge_prefix
from tests.redis_cluster import free_port

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
