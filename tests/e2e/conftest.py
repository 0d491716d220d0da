from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from backend.core.config import Settings
from backend.core.redis import RedisService
from tests.e2e.replicas import Replica, replica_env

StartReplicas = Callable[..., list[Replica]]


@pytest.fixture
def start_replicas(settings: Settings, redis_service: RedisService) -> Iterator[StartReplicas]:
    """Start N replicas sharing the test's key prefix; all are stopped after the test.

    Depends on `redis_service` so the prefix is purged after the replicas are stopped.
    """
    started: list[Replica] = []

    def start(n: int = 2, log_level: str = "warning", **env: Any) -> list[Replica]:
        replicas = [
            Replica(
                chr(ord("A") + len(started) + i),
                replica_env(settings.key_prefix, **env),
                log_level=log_level,
            )
            for i in range(n)
        ]
        started.extend(replicas)
        for replica in replicas:
            replica.spawn()
        return [replica.wait_ready() for replica in replicas]

    try:
        yield start
    finally:
        for replica in started:
            replica.stop()
