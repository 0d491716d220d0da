"""The Celery broker's connection: a plain Redis URL, or Redis Sentinel in front of a master
and its replicas (`CELERY_BROKER_URL=sentinel://...;sentinel://...`).

Why Sentinel is handled here and nowhere else: kombu's Redis transport speaks Sentinel itself
(it asks the sentinels for the current master on every new connection), so the workers, beat's
task publishing, `/health/celery`, the operations page and `triage monitor` only need the
transport options below. The beat lock is the one thing that talks to the broker's Redis with
a plain redis-py client; `BrokerRedis` gives it one that resolves the master the same way
(redis-py's `SentinelConnectionPool` asks again after a failover, and drops a connection to an
old master that was demoted to a replica).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from kombu.utils.url import url_to_parts
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from backend.core.config import Settings


@dataclass(frozen=True)
class SentinelBroker:
    sentinels: list[tuple[str, int]]
    master: str
    db: int
    username: str | None
    password: str | None
    # How the sentinels themselves are reached: timeouts and their own password.
    sentinel_kwargs: dict[str, Any]


_SENTINEL_PORT = 26379


def sentinel_broker(settings: Settings) -> SentinelBroker | None:
    """The sentinels and the master's name and credentials; None for a plain Redis broker.
    Like kombu, the database and the credentials come from the first URL (settings refuse a
    later one that says otherwise)."""
    if not settings.broker_behind_sentinel:
        return None
    parts = [url_to_parts(part.strip()) for part in settings.broker_url.split(";")]
    first = parts[0]
    password = settings.celery_broker_sentinel_password
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        # The next sentinel is asked at once instead: redis-py's default (10 retries with
        # backoff, per sentinel) held a health check 25 s when the sentinels refused our
        # password.
        "retry": Retry(NoBackoff(), 0),
    }
    if password is not None and password.get_secret_value():  # empty in .env: none
        sentinel_kwargs["password"] = password.get_secret_value()
    return SentinelBroker(
        sentinels=[(str(p.hostname), int(p.port or _SENTINEL_PORT)) for p in parts],
        master=settings.celery_broker_sentinel_master,
        db=int((first.path or "0").strip("/") or 0),
        username=first.username,
        password=first.password,
        sentinel_kwargs=sentinel_kwargs,
    )


def transport_options(settings: Settings) -> dict[str, Any]:
    """Celery's `broker_transport_options`."""
    options: dict[str, Any] = {"visibility_timeout": settings.celery_visibility_timeout}
    sentinel = sentinel_broker(settings)
    if sentinel is not None:
        options.update(
            master_name=sentinel.master,
            sentinel_kwargs=sentinel.sentinel_kwargs,
            # A master that vanishes without closing its connections (a host lost, not a
            # process killed) would otherwise hold a publish forever (kombu's docs, on
            # `socket_timeout`); BRPOP's own timeout is shorter than this.
            socket_timeout=settings.redis_socket_timeout,
            socket_connect_timeout=settings.redis_connect_timeout,
        )
    return options


class BrokerRedis:
    """A plain redis-py client on the broker's Redis (its current master behind Sentinel).
    `close()` closes its connections, and those to the sentinels."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        sentinel = sentinel_broker(settings)
        self._sentinel: Sentinel | None = None
        if sentinel is None:
            self.client: redis.Redis = redis.Redis.from_url(
                settings.broker_url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            return
        self._sentinel = Sentinel(
            sentinel.sentinels,
            sentinel_kwargs={
                **sentinel.sentinel_kwargs,
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
            },
        )
        self.client = self._sentinel.master_for(
            sentinel.master,
            db=sentinel.db,
            username=sentinel.username,
            password=sentinel.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def close(self) -> None:
        self.client.close()
        if self._sentinel is not None:
            self._sentinel.close()
