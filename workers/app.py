"""The Celery app: `celery -A workers.app:celery_app worker` (and `beat`), built from settings.

See workers/config.py for the delivery guarantees, workers/context.py for the per-process
lifecycle that the signals below drive, and workers/tasks.py for the tasks.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from backend.core import tracing
from backend.core.config import get_settings
from backend.core.logging import bind_task, configure_logging
from workers import metrics as _metrics  # noqa: F401 (connects the metrics' signals)
from workers.config import SNAPSHOT_SESSION, create_celery_app

celery_app = create_celery_app(get_settings())


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    # Connected, so Celery leaves logging to us: its own lines (task received, succeeded)
    # come out in LOG_FORMAT with the task's id, like ours. `--loglevel`, else LOG_LEVEL.
    settings = get_settings()
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    configure_logging(level or settings.log_level, settings.log_format or "text")


@signals.celeryd_init.connect
def _early_logging(options: dict[str, Any] | None = None, **_: Any) -> None:
    # Sent before the worker's first warnings (e.g. running as root), which setup_logging
    # would come too late for.
    _setup_logging(loglevel=(options or {}).get("loglevel"))


@signals.worker_init.connect
def _trace_worker(**_: Any) -> None:
    # Before the pool forks: the children inherit the instrumentation (the SDK's batch
    # processor restarts its thread after a fork); the solo pool runs tasks right here.
    tracing.configure_tracing("triage-worker")


@signals.beat_init.connect
def _trace_beat(**_: Any) -> None:
    tracing.configure_tracing("triage-beat")


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    one_session = getattr(task, "name", None) == SNAPSHOT_SESSION and args
    bind_task(task_id, str(args[0]) if one_session else None)


@signals.task_postrun.connect
def _unbind_task(**_: Any) -> None:
    bind_task(None)


@signals.worker_process_init.connect
def _init_process(**_: Any) -> None:
    from workers.context import get_context

    get_context()


@signals.worker_process_shutdown.connect
def _close_process(**_: Any) -> None:
    from workers.context import close_context

    close_context()
    tracing.flush()  # a pool child's spans, before it exits


@signals.worker_shutdown.connect
def _close_main(**_: Any) -> None:
    # The solo pool runs tasks in the main process: close what it opened there.
    from workers.context import close_context

    close_context()
    tracing.shutdown_tracing()
