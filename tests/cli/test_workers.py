"""`triage worker` and `triage beat`: real Celery processes on a private Redis."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from backend.core.config import Settings
from tests.cli.helpers import Background, dirty_count, invoke, new_session, wait_until, warm_version
from workers.config import FLUSH_DIRTY, create_celery_app

pytestmark = pytest.mark.e2e


def test_worker_runs_the_durability_tasks(
    broker_settings: Settings, background: Callable[..., Background]
) -> None:
    sid = new_session(broker_settings)
    worker = background(broker_settings, "worker", "--concurrency", "1", "-n", "ops-test@%h")
    worker.wait_for("ready.")

    celery = create_celery_app(broker_settings)
    celery.send_task(FLUSH_DIRTY)
    wait_until(lambda: warm_version(broker_settings, sid) == 1)
    assert dirty_count(broker_settings) == 0

    # The monitor sees the worker answering and an empty queue.
    frame = invoke(broker_settings, "monitor", "--once")
    assert frame.exit_code == 0, frame.output
    assert "ops-test@" in frame.stdout
    assert worker.stop() == 0  # a warm shutdown


def test_beat_schedules_snapshots_with_no_one_asking(
    broker_settings: Settings, background: Callable[..., Background], tmp_path: Path
) -> None:
    worker = background(broker_settings, "worker", "--concurrency", "1")
    worker.wait_for("ready.")
    beat = background(broker_settings, "beat", "--schedule", str(tmp_path / "schedule"))
    beat.wait_for("beat: Starting")
    sid = new_session(broker_settings)
    # DIRTY_FLUSH_INTERVAL is 0.5 s here: beat sends the flush, the worker snapshots.
    wait_until(lambda: warm_version(broker_settings, sid) == 1)
    wait_until(lambda: dirty_count(broker_settings) == 0)
    assert beat.stop() == 0
    assert worker.stop() == 0
