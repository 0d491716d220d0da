"""The Celery app: `celery -A workers.app:celery_app worker` (and `beat`), built from settings.

See workers/config.py for the delivery guarantees, workers/context.py for the per-process
lifecycle that the signals below drive, and workers/tasks.py for the tasks.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from backend.core.config import get_settings
from workers import metrics as _metrics  # noqa: F401 (connects the metrics' signals)
from workers.config import create_celery_app

celery_app = create_celery_app(get_settings())


@signals.worker_process_init.connect
def _init_process(**_: Any) -> None:
    from workers.context import get_context

    get_context()


@signals.worker_process_shutdown.connect
def _close_process(**_: Any) -> None:
    from workers.context import close_context

    close_context()


@signals.worker_shutdown.connect
def _close_main(**_: Any) -> None:
    # The solo pool runs tasks in the main process: close what it opened there.
    from workers.context import close_context

    close_context()
