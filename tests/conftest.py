"""Shared fixtures: real Redis and PostgreSQL, isolated per test by key prefix and database.

Tests use their own Redis database index (TEST_REDIS_URL, default db 15) and a fresh key prefix
per test, so they never read or damage other data; every key under the prefix is deleted after
the test. The Redis Cluster fixture starts three masters on free loopback ports and stops them.
PostgreSQL: each test run creates its own database `triage_test_<random>`, applies the Alembic
migrations to it once, and drops it at the end (unless TEST_DATABASE_URL names one to use as is).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic import command
from backend.core.config import Settings
from backend.core.db import create_engine
from backend.core.redis import RedisService
from backend.durability.service import HybridConversationService
from backend.state.service import ConversationStateManager
from tests.redis_cluster import RedisClusterProcess

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_POSTGRES = os.environ.get("TEST_POSTGRES", "postgres@127.0.0.1:5432")
_OWN_TEST_DATABASE = "TEST_DATABASE_URL" not in os.environ
TEST_DATABASE_NAME = f"triage_test_{uuid.uuid4().hex[:10]}"
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", f"postgresql+asyncpg://{TEST_POSTGRES}/{TEST_DATABASE_NAME}"
)
ROOT = Path(__file__).resolve().parent.parent
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
        # The test process builds many apps; frozen objects would never be collected.
        "gc_freeze": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def process_env(settings: Settings, **extra: Any) -> dict[str, str]:
    """The environment a production process of these settings would get."""
    values = {
        "ENVIRONMENT": settings.environment,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "JWT_SECRET": settings.jwt_secret,
        "KEY_PREFIX": settings.key_prefix,
        "ARCHIVE_DIR": settings.archive_dir,
        "DIRTY_FLUSH_INTERVAL": str(settings.dirty_flush_interval),
        "SNAPSHOT_BATCH_SIZE": str(settings.snapshot_batch_size),
        "LOG_LEVEL": "INFO",
        "CELERY_BROKER_URL": settings.celery_broker_url or "",
        "CELERY_BROKER_SENTINEL_MASTER": settings.celery_broker_sentinel_master,
    }
    values.update({k.upper(): str(v) for k, v in extra.items()})
    return {**os.environ, **values}


def migrate(database_url: str) -> None:
    """Apply the Alembic migrations (the same ones `make migrate` runs) to a database."""
    config = Config(str(ROOT / "alembic.ini"), attributes={"configure_logger": False})
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", database_url)
    command.upgrade(config, "head")


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(f"postgresql://{TEST_POSTGRES}/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session", autouse=True)
def test_database() -> Iterator[str]:
    """This run's own PostgreSQL database, migrated once, dropped at the end."""
    if not _OWN_TEST_DATABASE:
        migrate(TEST_DATABASE_URL)
        yield TEST_DATABASE_URL
        return
    asyncio.run(_admin(f'CREATE DATABASE "{TEST_DATABASE_NAME}"'))
    try:
        migrate(TEST_DATABASE_URL)
        yield TEST_DATABASE_URL
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{TEST_DATABASE_NAME}" WITH (FORCE)'))


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


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def hybrid(
    manager: ConversationStateManager, engine: AsyncEngine, settings: Settings
) -> HybridConversationService:
    """The durability layer plugged into the test's state manager (read-through and all)."""
    service = HybridConversationService(manager, engine, settings)
    service.install()
    return service


# --------------------------------------------------------------------------- HTTP


@pytest.fixture
async def api(settings: Settings, redis_service: RedisService) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (ASGITransport) inside its lifespan. Responses are buffered, so use
    it for REST and for finite SSE responses (the chat POST), not for open-ended streams.
    Depends on `redis_service` so the test's keys are purged after the app has stopped."""
    async for client in client_for(settings):
        yield client


async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app built from `settings`, inside its lifespan
    (`async for client in client_for(settings)`)."""
    from backend.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


# The apps `serve` is running, by base URL (a test that reaches into one: its hub, its runtime).
SERVED_APPS: dict[str, Any] = {}


@pytest.fixture
async def serve(redis_service: RedisService) -> AsyncIterator[Callable[[Settings], Awaitable[str]]]:
    """Start the app under uvicorn in this process on a free loopback port (real streaming);
    returns its base URL (the app: `SERVED_APPS[url]`). Every server started is shut down after
    the test."""
    import uvicorn

    from backend.main import create_app
    from tests.redis_cluster import free_port

    running: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(settings: Settings) -> str:
        port = free_port()
        app = create_app(settings)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        running.append((server, task))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        SERVED_APPS[base] = app
        return base

    try:
        yield start
    finally:
        SERVED_APPS.clear()
        for server, _ in running:
            server.should_exit = True
        for _, task in running:
            await asyncio.wait_for(task, 30)


@pytest.fixture
async def live_api(settings: Settings, serve: Callable[[Settings], Awaitable[str]]) -> str:
    """The app with the test's settings, served by uvicorn (see `serve`)."""
    return await serve(settings)
