"""PostgreSQL (warm tier): the async engine of a process, error translation, a health check.

One engine per process: the API's lifespan creates it, a Celery worker creates one per worker
process (workers/context.py). Nothing connects at import time. Connection failures become the
typed `DatabaseUnavailable` (HTTP 503), never a raw driver error or a hang.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
from sqlalchemy import exc as sa_errors
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backend.core.config import Settings
from backend.core.errors import TriageError


class DatabaseUnavailable(TriageError):
    """PostgreSQL could not be reached or answered too slowly."""

    status_code = 503
    code = "database_unavailable"


_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TooManyConnectionsError,
    sa_errors.InterfaceError,
    sa_errors.TimeoutError,
)


@contextmanager
def translate_db_errors() -> Iterator[None]:
    try:
        yield
    except sa_errors.DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc.orig, _UNAVAILABLE):
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {exc.orig}") from exc
        raise
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable(f"PostgreSQL unavailable: {exc}") from exc


def create_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    """Build (without connecting) the pooled engine described by the settings."""
    options: dict[str, Any] = {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
        "pool_pre_ping": True,
        "pool_timeout": 10,
        "connect_args": {"timeout": 5, "command_timeout": 60},
    }
    options.update(overrides)
    return create_async_engine(settings.database_url, **options)


async def ping(engine: AsyncEngine) -> None:
    """One round trip to PostgreSQL; DatabaseUnavailable when it does not answer."""
    with translate_db_errors():
        async with engine.connect() as conn:
            await conn.execute(text("select 1"))


async def health_check(engine: AsyncEngine) -> dict[str, Any]:
    started = time.perf_counter()
    with translate_db_errors():
        async with engine.connect() as conn:
            version = (await conn.execute(text("show server_version"))).scalar_one()
            revision = None
            if (await conn.execute(text("select to_regclass('alembic_version')"))).scalar():
                revision = (
                    await conn.execute(text("select version_num from alembic_version"))
                ).scalar_one_or_none()
    pool = engine.pool
    return {
        "status": "ok",
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "server_version": version,
        "schema_revision": revision,
        "pool": pool.status(),
    }
