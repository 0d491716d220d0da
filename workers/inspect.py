"""What the broker and the workers say: queue depth and a ping. Blocking (kombu): call from a
thread in async code. Shared by `/health/celery` and `triage monitor`.

Each call opens its own broker connection and closes it: the app's pooled connections may be
dead after a broker restart (the pooled reply reader then raised redis-py's ConnectionError,
which is not an OSError), and a fresh one leaves nothing broken behind for the next call.
"""

from __future__ import annotations

import redis
from celery import Celery
from kombu import Connection
from kombu.exceptions import ChannelError, KombuError
from kombu.exceptions import ConnectionError as BrokerConnectionError

# Everything a Redis broker can raise: kombu's own errors (its ConnectionError and
# ChannelError come from amqp and are not OSErrors), redis-py's, and socket errors.
BROKER_ERRORS: tuple[type[Exception], ...] = (
    KombuError,
    BrokerConnectionError,
    ChannelError,
    redis.RedisError,
    OSError,
)


def _connect(conn: Connection) -> None:
    # Fail fast: a health check must answer while the broker is down (kombu's default
    # retries would hold it for seconds).
    conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, interval_max=0.2)


def queue_depth(celery: Celery, queue: str) -> int | None:
    """Messages waiting in `queue`: 0 when the queue was never declared, None when the broker
    cannot be read."""
    try:
        with celery.connection_for_read() as conn:
            _connect(conn)
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except BROKER_ERRORS as exc:
        if "NOT_FOUND" in str(exc) or "no queue" in str(exc).lower():
            return 0
        return None


def ping_workers(celery: Celery, timeout: float = 1.0) -> list[str]:
    """Names of the workers that answered within `timeout`, sorted. Raises one of
    BROKER_ERRORS when the broker cannot be reached."""
    with celery.connection_for_write() as conn:
        _connect(conn)
        replies = celery.control.ping(timeout=timeout, connection=conn) or []
    return sorted(name for reply in replies for name in reply)


def beat_lock_holder(celery: Celery, key: str) -> str | None:
    """The token of the beat holding the scheduler lock (workers/beat.py), None when no beat
    holds it. Raises one of BROKER_ERRORS when the broker cannot be reached."""
    with celery.connection_for_read() as conn:
        _connect(conn)
        value = conn.default_channel.client.get(key)
    return value.decode() if isinstance(value, bytes) else value


def broker_replicas(celery: Celery) -> int:
    """Replicas connected to the broker's master (behind Sentinel, the one it names). Raises
    one of BROKER_ERRORS when the broker cannot be reached."""
    with celery.connection_for_read() as conn:
        _connect(conn)
        info = conn.default_channel.client.info("replication")
    return int(info.get("connected_slaves", 0))
