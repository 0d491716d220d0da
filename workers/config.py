"""Celery configuration from settings: task names, the beat schedule, the app factory.

Importing this reads no settings; `workers.app` builds the worker's app, and the API builds its
own (to ping workers and measure the queue) with the same factory.

Delivery is at least once and every task is idempotent (invariant 6): `acks_late` (a task is
acknowledged after it ran), reject-on-worker-lost (a task whose worker died goes back to the
queue), prefetch 1 (a killed worker strands at most the task it was running), and a broker
visibility timeout longer than any task's hard time limit (settings refuse anything else), so
the broker never hands a still-running task to a second worker.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.schedules import crontab

from backend.core.config import Settings
from workers.broker import transport_options

FLUSH_DIRTY = "triage.durability.flush_dirty"
SNAPSHOT_SESSION = "triage.durability.snapshot_session"
RESTORE_SESSION = "triage.durability.restore_session"
ARCHIVE_INACTIVE = "triage.archive.archive_inactive"
CLEANUP_EXPIRED = "triage.durability.cleanup_expired"
BUILD_SUMMARIES = "triage.summaries.build_summaries"


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Periodic tasks. Each expires when its next run is due, so a backlog (workers down)
    never piles up into a burst of identical runs."""

    def every(seconds: float, task: str) -> dict[str, Any]:
        return {"task": task, "schedule": seconds, "options": {"expires": seconds}}

    return {
        "flush-dirty-sessions": every(settings.dirty_flush_interval, FLUSH_DIRTY),
        "archive-inactive-sessions": every(settings.archive_interval, ARCHIVE_INACTIVE),
        "cleanup-expired-data": every(settings.cleanup_interval, CLEANUP_EXPIRED),
        "build-summaries": {
            "task": BUILD_SUMMARIES,
            "schedule": crontab(hour=settings.summaries_hour, minute=settings.summaries_minute),
            "options": {"expires": 3_600},
        },
    }


def create_celery_app(settings: Settings) -> Celery:
    app = Celery("triage", set_as_current=False)
    limit = settings.celery_task_time_limit
    app.conf.update(
        broker_url=settings.broker_url,
        # Ride out a restarting or full broker: reconnect with backoff instead of ending the
        # worker. A full Redis answers OutOfMemoryError, a ResponseError that kombu counts as
        # a channel error, which without broker_channel_error_retry ends the worker
        # ("Unrecoverable error"). Past the retries the worker exits non-zero (supervisor).
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_channel_error_retry=True,
        broker_connection_max_retries=settings.celery_broker_max_retries or None,
        # The visibility timeout, and behind Sentinel the master's name (workers/broker.py).
        broker_transport_options=transport_options(settings),
        task_default_queue=settings.celery_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=limit,
        task_soft_time_limit=max(1, limit - 30),
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        timezone=settings.celery_timezone,
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
        # Several beats may run; only the holder of a Redis lock schedules (workers/beat.py).
        beat_scheduler="workers.beat:LockedScheduler",
        include=["workers.tasks"],
    )
    return app
