"""A Celery worker's metrics: task runs from Celery's signals, served by the main process.

Why multiprocess mode and one port per worker (not one per pool process): the prefork pool
runs tasks in child processes that come and go (a killed child is replaced), so a port per
child would make Prometheus chase processes. Instead every process writes its figures to
files in one directory (prometheus-client's multiprocess mode) and the worker's main process
serves their sum on WORKER_METRICS_PORT (`MultiProcessCollector`). The directory is
PROMETHEUS_MULTIPROC_DIR when set (emptied at start: figures of a previous run would be added
to this one's), else a fresh temporary one, removed on shutdown.

Only a worker (not beat, not the API, not a test calling a task directly) does any of this:
`worker_init` fires in the worker's main process before its pool forks.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from celery import signals
from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess
from prometheus_client.exposition import ThreadingWSGIServer

from backend.core import metrics
from backend.core.config import get_settings

log = logging.getLogger(__name__)

_started: dict[str, float] = {}  # task id -> perf_counter at task_prerun (per process)
_server: Any = None
_own_dir: str | None = None


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log line per scrape."""


def _prepare_dir() -> str:
    global _own_dir
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return str(path)
    _own_dir = tempfile.mkdtemp(prefix="triage-worker-metrics-")
    return _own_dir


def _not_yet(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


def _guarded(app: Callable[..., Iterable[bytes]], token: str | None) -> Callable[..., Any]:
    """The exporter's WSGI app behind METRICS_TOKEN (when set), like the API's /metrics."""
    if not token:
        return app

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(given.encode(), token.encode()):
            return app(environ, start_response)
        body = b'{"error": {"code": "unauthorized", "message": "missing or wrong metrics token"}}'
        start_response(
            "401 Unauthorized",
            [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")],
        )
        return [body]

    return guarded


@signals.worker_init.connect
def _start_exporter(**_: Any) -> None:
    global _server
    settings = get_settings()
    if not settings.metrics_enabled or not settings.worker_metrics_port:
        return
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    try:
        # Bound first: a worker without an exporter stays in plain (single-process) mode.
        server = make_server(
            settings.worker_metrics_addr,
            settings.worker_metrics_port,
            _not_yet,
            ThreadingWSGIServer,
            handler_class=_Quiet,
        )
    except OSError as exc:  # the port is taken: the worker still does its work
        log.error(
            "worker metrics: cannot listen on %s:%s (%s); no metrics from this worker",
            settings.worker_metrics_addr,
            settings.worker_metrics_port,
            exc,
        )
        return
    metrics.use_multiprocess_dir(_prepare_dir())
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    server.set_app(_guarded(make_wsgi_app(registry), token))
    _server = server
    threading.Thread(target=_server.serve_forever, name="metrics", daemon=True).start()
    log.info(
        "worker metrics on http://%s:%s/metrics (multiprocess dir %s)",
        settings.worker_metrics_addr,
        settings.worker_metrics_port,
        os.environ["PROMETHEUS_MULTIPROC_DIR"],
    )


@signals.worker_process_shutdown.connect
def _child_exits(**_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


@signals.worker_shutdown.connect
def _stop_exporter(**_: Any) -> None:
    global _server, _own_dir
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None
    if _own_dir is not None:
        shutil.rmtree(_own_dir, ignore_errors=True)
        _own_dir = None


# ------------------------------------------------------------------ task runs


def _name(task: Any) -> str:
    return str(getattr(task, "name", None) or "unknown")


@signals.task_prerun.connect
def _task_starts(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


def _elapsed(task_id: str | None) -> float | None:
    started = _started.pop(task_id, None) if task_id else None
    return None if started is None else time.perf_counter() - started


@signals.task_postrun.connect
def _task_ends(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    # Every run is timed here; failures and retries are counted by their own signals.
    metrics.task_ran(_name(task), "succeeded" if state == "SUCCESS" else None, _elapsed(task_id))


@signals.task_failure.connect
def _task_fails(task_id: str | None = None, sender: Any = None, **_: Any) -> None:
    metrics.task_ran(_name(sender), "failed", None)


@signals.task_retry.connect
def _task_retries(request: Any = None, sender: Any = None, **_: Any) -> None:
    metrics.task_ran(_name(sender), "retried", None)
