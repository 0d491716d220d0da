"""Shared benchmark plumbing: its own Redis database and key prefix, cleaned up after."""

from __future__ import annotations

import os
import secrets
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from backend.core.config import Settings

BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/triage_test"
)


def bench_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "redis_url": BENCH_REDIS_URL,
        "database_url": BENCH_DATABASE_URL,
        "jwt_secret": secrets.token_urlsafe(48),
        "key_prefix": f"bench-{uuid.uuid4().hex[:8]}",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def timed(fn: Callable[[], Awaitable[int]]) -> float:
    """Run `fn` (which returns how many operations it did); return operations per second."""
    started = time.perf_counter()
    ops = await fn()
    return ops / (time.perf_counter() - started)


def median(values: list[float]) -> float:
    return statistics.median(values)
