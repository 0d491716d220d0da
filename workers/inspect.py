"""What the broker and the workers say: queue depth and a ping. Blocking (kombu): call from a
thread in async code. Shared by `/health/celery` and `triage monitor`."""

from __future__ import annotations

from celery import Celery


def queue_depth(celery: Celery, queue: str) -> int | None:
    """Messages waiting in `queue`: 0 when the queue was never declared, None when the broker
    cannot be read."""
    try:
        with celery.connection_for_read() as conn:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except OSError:
        return None
    except Exception as exc:  # kombu raises its own errors for a missing queue or broker
        if "NOT_FOUND" in str(exc) or "no queue" in str(exc).lower():
            return 0
        return None


def ping_workers(celery: Celery, timeout: float = 1.0) -> list[str]:
    """Names of the workers that answered within `timeout`, sorted."""
    replies = celery.control.ping(timeout=timeout) or []
    return sorted(name for reply in replies for name in reply)
