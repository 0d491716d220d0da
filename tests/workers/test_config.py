"""The Celery configuration and the durability settings (no worker process needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery.schedules import crontab

from backend.core.config import Settings
from tests.conftest import make_settings
from workers.config import (
    ARCHIVE_INACTIVE,
    BUILD_SUMMARIES,
    CLEANUP_EXPIRED,
    FLUSH_DIRTY,
    create_celery_app,
)

ROOT = Path(__file__).resolve().parents[2]


def test_delivery_guarantees_and_beat_schedule_come_from_settings() -> None:
    settings = make_settings(dirty_flush_interval=3, summaries_hour=2, summaries_minute=0)
    app = create_celery_app(settings)
    conf = app.conf

    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.task_default_queue == settings.celery_queue
    schedule = {entry["task"]: entry for entry in conf.beat_schedule.values()}
    assert schedule[FLUSH_DIRTY]["schedule"] == 3
    assert schedule[ARCHIVE_INACTIVE]["schedule"] == 3600
    assert schedule[CLEANUP_EXPIRED]["schedule"] == 600
    assert schedule[BUILD_SUMMARIES]["schedule"] == crontab(hour=2, minute=0)
    app.close()


def test_a_visibility_timeout_shorter_than_a_task_is_refused() -> None:
    with pytest.raises(ValueError, match="CELERY_VISIBILITY_TIMEOUT"):
        make_settings(celery_visibility_timeout=60, celery_task_time_limit=600)


def test_env_example_is_a_valid_configuration() -> None:
    settings = Settings(_env_file=str(ROOT / ".env.example"))  # type: ignore[call-arg]
    assert settings.broker_url == settings.redis_url  # empty CELERY_BROKER_URL: REDIS_URL
    assert settings.archive_inactive_sessions_days == 30
    assert settings.summary_method == "offline"
