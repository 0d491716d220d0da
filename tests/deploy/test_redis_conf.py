"""redis/redis.conf, loaded by a real private redis-server (never the shared one)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis import exceptions as redis_errors

from backend.core.errors import StoreUnavailable
from backend.core.redis import RedisService
from backend.state.schemas import ConversationState
from backend.state.service import ConversationStateManager
from tests.conftest import make_settings
from tests.redis_cluster import free_port

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "redis" / "redis.conf"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    """redis-server started with the production file (only bind and port changed)."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", str(CONF), "--port", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,  # `dir ./`: the AOF and RDB files land here
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, decode_responses=True, socket_timeout=5)
    try:
        deadline = time.monotonic() + 20  # hang guard
        while True:
            try:
                client.ping()
                break
            except redis_errors.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("redis-server refused the configuration") from None
                time.sleep(0.05)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=20)


def test_production_settings_are_in_force(private_redis: redis.Redis) -> None:
    conf = {k: v for k, v in private_redis.config_get("*").items()}
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "everysec"
    assert conf["save"]  # RDB snapshots as well
    assert conf["maxmemory-policy"] == "noeviction"
    assert int(conf["maxmemory"]) > 0
    assert conf["protected-mode"] == "yes"
    assert int(conf["timeout"]) > 0 and int(conf["tcp-keepalive"]) > 0
    assert conf["requirepass"] == ""  # the password is given at start-up, never in the file


def test_no_secret_in_the_file() -> None:
    directives = [
        line.split()[0].lower()
        for line in CONF.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "requirepass" not in directives and "masterauth" not in directives
    assert not re.search(r"^\s*user\s", CONF.read_text(), re.MULTILINE)


def test_full_memory_refuses_writes_and_evicts_nothing(private_redis: redis.Redis) -> None:
    """Under allkeys-lru (the legacy policy) the queue or unsnapshotted state would vanish."""
    r = private_redis
    r.rpush("celery", *[f'{{"task": "snapshot", "n": {i}}}' for i in range(100)])
    for i in range(50):
        r.set(f"triage:s:{{sess-{i}}}:conv", "x" * 1000, ex=86_400)
    used = int(r.info("memory")["used_memory"])
    r.config_set("maxmemory", used + 256 * 1024)
    written = 0
    with pytest.raises(redis_errors.OutOfMemoryError):
        for i in range(10_000):
            r.set(f"triage:s:{{new-{i}}}:conv", "y" * 1000, ex=86_400)
            written += 1
    assert written > 0
    # Reads still work, and nothing was evicted: the queue and every session are intact.
    assert r.llen("celery") == 100
    assert all(r.exists(f"triage:s:{{sess-{i}}}:conv") for i in range(50))
    assert r.info("stats")["evicted_keys"] == 0


async def test_the_service_answers_a_full_redis_with_store_unavailable(
    private_redis: redis.Redis,
) -> None:
    """A refused write is a typed, retryable StoreUnavailable (HTTP 503), never a 500."""
    port = private_redis.connection_pool.connection_kwargs["port"]
    settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0")
    service = RedisService.from_settings(settings)
    manager = ConversationStateManager(service, settings)
    try:
        private_redis.config_set("maxmemory", int(private_redis.info("memory")["used_memory"]))
        state = ConversationState(session_id="full-1", user_id="ana", tenant_id="t1")
        with pytest.raises(StoreUnavailable) as refused:
            await manager.save_conversation_state(state)
        assert refused.value.status_code == 503
        assert await manager.get_conversation_state("full-1") is None  # reads still work
        # Concurrent writers share round trips (AutoPipeline): each one is refused the same way.
        states = [
            ConversationState(session_id=f"full-{i}", user_id="ana", tenant_id="t1")
            for i in range(2, 12)
        ]
        outcomes = await asyncio.gather(
            *(manager.save_conversation_state(s) for s in states), return_exceptions=True
        )
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    finally:
        await service.close()
