"""Shared fixtures: real Redis and PostgreSQL, isolated per test by key prefix and database.

Tests use their own Redis database index (TEST_REDIS_URL, default db 15) and a fresh key prefix
per test, so they never read or damage other data; every key under the prefix is deleted after
the test. The Redis Cluster fixture starts three masters on free loopback ports and stops them.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.state.service import ConversationStateManager
from tests.redis_cluster import RedisClusterProcess

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/triage_test"
)
TEST_JWT_SECRET = secrets.token_urlsafe(48)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "redis_url": TEST_REDIS_URL,
        "database_url": TEST_DATABASE_URL,
        "jwt_secret": TEST_JWT_SECRET,
        "key_prefix": f"test-{uuid.uuid4().hex[:12]}",
        "redis_socket_timeout": 3.0,
        "redis_connect_timeout": 1.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcess]:
    cluster = RedisClusterProcess().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["standalone", "cluster"])
def redis_backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides for each Redis topology; tests using it run on both."""
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return {"redis_url": cluster.url, "redis_cluster": True}
    return {}


@pytest.fixture
def settings() -> Settings:
    return make_settings()


async def purge_prefix(redis: RedisService, prefix: str) -> None:
    keys = [k async for k in redis.scan_keys(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def redis_service(settings: Settings) -> AsyncIterator[RedisService]:
    service = RedisService.from_settings(settings)
    try:
        yield service
    finally:
        await purge_prefix(service, settings.key_prefix)
        await service.close()


@pytest.fixture
async def manager(settings: Settings, redis_service: RedisService) -> ConversationStateManager:
    return ConversationStateManager(redis_service, settings)
