"""Prometheus metrics: every `triage_*` metric of the service, and the helpers that move them.

The names, types and labels are a contract (alert rules, the dashboard and the ops page read
them): change them only together. Labels are bounded: route templates, methods, statuses,
outcomes, task names; never a session, user or tenant id.

Domains call the small helpers below (one line per call site) and never touch
prometheus-client themselves. Two kinds of figures:

* counters, histograms and the open-streams gauge live in this process's registry and move
  as things happen;
* backlog gauges (dirty sessions, refused snapshots, queue depth, workers, Redis memory, hub
  readers, Redis connections in use) are read when `/metrics` is scraped, by the `Reading`
  callback the app installs (`install_metrics`), each with a short timeout: a figure that
  cannot be read is left out of that scrape, it never fails it.

Workers run Celery's prefork pool (tasks in child processes): their main process switches
prometheus-client to multiprocess mode before the pool forks (`use_multiprocess_dir`) and
serves the merged figures of every child (workers/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from sse_starlette.sse import SendTimeoutError
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.config import Settings

log = logging.getLogger(__name__)

# Latency buckets (seconds) for the request, ack, reply and task histograms.
_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class _Metrics:
    """Every metric of the process, in one registry (rebuilt once by a worker that switches
    to multiprocess mode before recording anything)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.http_requests = Counter(
            "triage_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.http_duration = Histogram(
            "triage_http_request_duration_seconds",
            "HTTP request latency (SSE: until the headers)",
            ["route", "method"],
            buckets=_FAST,
            registry=r,
        )
        self.sse_open = Gauge(
            "triage_sse_streams_open",
            "SSE streams open on this replica",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.sse_events = Counter("triage_sse_events", "Events sent to SSE clients", registry=r)
        self.sse_cut = Counter(
            "triage_sse_streams_cut", "SSE streams the server cut", ["reason"], registry=r
        )
        self.stream_caught_up = Counter(
            "triage_stream_catch_up_reads",
            "Session stream reads that found events no notification had announced",
            registry=r,
        )
        self.stream_tail_reads = Counter(
            "triage_stream_tail_reads",
            "How the stream hub got its tails' new events: carried by their notification, or "
            "one read of the session's stream",
            ["source"],
            registry=r,
        )
        self.ws_open = Gauge(
            "triage_ws_connections_open",
            "WebSockets open on this replica",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.ws_frames = Counter(
            "triage_ws_frames", "WebSocket frames (in: from clients)", ["direction"], registry=r
        )
        self.ws_closed = Counter(
            "triage_ws_closed",
            "WebSockets the server closed, by reason (send_timeout, invalid_frame, shutdown...)",
            ["reason"],
            registry=r,
        )
        self.replies = Counter(
            "triage_replies",
            "Reply lifecycle (started, completed, failed, retried)",
            ["outcome"],
            registry=r,
        )
        self.llm_analysis = Counter(
            "triage_llm_analysis_calls",
            "LLM triage analysis calls by outcome "
            "(ok, invalid_json, schema_violation, timeout, provider_error)",
            ["outcome"],
            registry=r,
        )
        self.llm_analysis_fallbacks = Counter(
            "triage_llm_analysis_fallbacks",
            "Triage results built by the offline analysis because the LLM analysis failed",
            registry=r,
        )
        self.llm_analysis_duration = Histogram(
            "triage_llm_analysis_duration_seconds",
            "One LLM triage analysis call, whatever its outcome",
            buckets=_SLOW,
            registry=r,
        )
        self.reply_duration = Histogram(
            "triage_reply_duration_seconds",
            "message.started to message.completed",
            buckets=_SLOW,
            registry=r,
        )
        self.message_ack = Histogram(
            "triage_message_ack_seconds",
            "POST received to message.created stored",
            buckets=_FAST,
            registry=r,
        )
        self.state_writes = Counter(
            "triage_state_writes", "Versioned state writes that won", ["kind"], registry=r
        )
        self.state_conflicts = Counter(
            "triage_state_conflicts", "Version conflicts seen", registry=r
        )
        self.state_retries = Counter(
            "triage_state_retries", "Re-read-and-retry after a version conflict", registry=r
        )
        self.redis_errors = Counter(
            "triage_redis_errors", "Redis errors translated to StoreUnavailable", registry=r
        )
        self.not_replicated = Counter(
            "triage_state_not_replicated",
            "State writes refused (503) because too few replicas confirmed them in time",
            registry=r,
        )
        self.unavailable = Counter("triage_store_unavailable_responses", "503 answers", registry=r)
        self.rate_limited = Counter("triage_rate_limited", "429 answers", ["limit"], registry=r)
        self.snapshot_batches = Counter(
            "triage_snapshot_batches", "Snapshot transactions", registry=r
        )
        self.snapshot_rows = Counter(
            "triage_snapshot_rows", "Rows written by snapshots", ["table"], registry=r
        )
        self.snapshot_duration = Histogram(
            "triage_snapshot_duration_seconds", "One snapshot batch", buckets=_SLOW, registry=r
        )
        self.archived = Counter(
            "triage_archived_sessions", "Sessions moved to the cold tier", registry=r
        )
        self.restored = Counter(
            "triage_restored_sessions", "Read-through restores", ["tier"], registry=r
        )
        self.purged = Counter("triage_purged_sessions", "Purges", registry=r)
        self.celery_tasks = Counter(
            "triage_celery_tasks", "Celery task runs", ["task", "outcome"], registry=r
        )
        self.celery_duration = Histogram(
            "triage_celery_task_duration_seconds",
            "Celery task duration",
            ["task"],
            buckets=_SLOW,
            registry=r,
        )
        self.loop_lag = Histogram(
            "triage_event_loop_lag_seconds",
            "How late the event loop ran a timer (sampled every half second): time every "
            "request and stream of the replica waited behind other work",
            buckets=_LAG,
            registry=r,
        )
        self.gc_pause = Histogram(
            "triage_gc_pause_seconds",
            "Cyclic garbage collections, by generation: the loop stops for each",
            ["generation"],
            buckets=_LAG,
            registry=r,
        )
        self.all: list[MetricWrapperBase] = [
            v for v in vars(self).values() if isinstance(v, MetricWrapperBase)
        ]
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """`metric.labels(*labels)`, kept: prometheus-client validates the labels and takes a
        lock on every `labels()` call, several times per chat message on the hot path. Labels
        are bounded (see the module doc), so is this cache."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


M = _Metrics(REGISTRY)


def use_multiprocess_dir(path: str) -> None:
    """Switch this process to prometheus-client's multiprocess mode, values kept in `path`.

    prometheus-client picks its value class from PROMETHEUS_MULTIPROC_DIR when it is imported,
    and the worker's command line imports the app (and this module) before Celery says it is
    a worker: so the metrics are rebuilt here, in the worker's main process, before the pool
    forks and before anything is recorded. Forked children inherit the mode.
    """
    global M
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    values.ValueClass = values.get_value_class()
    for collector in M.all:
        REGISTRY.unregister(collector)
    M = _Metrics(REGISTRY)


# ------------------------------------------------------------------ helpers for the domains

_request_started: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "triage_request_started", default=None
)


def state_written(kind: str) -> None:
    M.child(M.state_writes, kind).inc()


def message_stored() -> None:
    """A user message's `message.created` is stored: time since its request arrived."""
    started = _request_started.get()
    if started is not None:
        M.message_ack.observe(time.perf_counter() - started)


def state_conflict() -> None:
    M.state_conflicts.inc()


def state_retry() -> None:
    M.state_retries.inc()


def redis_error() -> None:
    M.redis_errors.inc()


def state_not_replicated() -> None:
    M.not_replicated.inc()


def rate_limited(limit: str) -> None:
    M.child(M.rate_limited, limit).inc()


def reply(outcome: str) -> None:
    """A reply `started`, `completed`, `failed` (final) or `retried` (closed, another follows)."""
    M.child(M.replies, outcome).inc()


def reply_completed(started: float) -> None:
    """The reply started at `started` (time.perf_counter()) is stored."""
    M.child(M.replies, "completed").inc()
    M.reply_duration.observe(time.perf_counter() - started)


def llm_analysis(outcome: str, seconds: float) -> None:
    """An LLM triage analysis call ended: `ok` or why its answer was not used (a fallback)."""
    M.llm_analysis.labels(outcome).inc()
    M.llm_analysis_duration.observe(seconds)
    if outcome != "ok":
        M.llm_analysis_fallbacks.inc()


def stream_cut(reason: str) -> None:
    M.child(M.sse_cut, reason).inc()


def stream_caught_up() -> None:
    """A catch-up read (sweep, reconnect) found events: their notification was lost."""
    M.stream_caught_up.inc()


def stream_tail_read(source: str) -> None:
    """`notification`: events passed on as their notification carried them, no read of the
    session's stream; `stream`: one read of it (a new tail's first, a notification that could
    not vouch for what precedes its events, a catch-up)."""
    M.stream_tail_reads.labels(source).inc()


def loop_lagged(seconds: float) -> None:
    M.loop_lag.observe(seconds)


def gc_paused(generation: int, seconds: float) -> None:
    M.child(M.gc_pause, str(generation)).observe(seconds)


def snapshot_batch(seconds: float, sessions: int, messages: int) -> None:
    M.snapshot_batches.inc()
    M.snapshot_duration.observe(seconds)
    M.snapshot_rows.labels("sessions").inc(sessions)
    M.snapshot_rows.labels("messages").inc(messages)


def archived(sessions: int) -> None:
    M.archived.inc(sessions)


def restored(tier: str) -> None:
    M.restored.labels(tier).inc()


def purged() -> None:
    M.purged.inc()


def task_ran(task: str, outcome: str | None, seconds: float | None) -> None:
    """A Celery task run: its outcome (succeeded, failed, retried) and/or its duration."""
    if outcome is not None:
        M.celery_tasks.labels(task, outcome).inc()
    if seconds is not None:
        M.celery_duration.labels(task).observe(seconds)


def ws_opened() -> None:
    M.ws_open.inc()


def ws_closed() -> None:
    M.ws_open.dec()


def ws_frame(direction: str) -> None:
    M.ws_frames.labels(direction).inc()


def ws_server_closed(reason: str) -> None:
    M.ws_closed.labels(reason or "unknown").inc()


def sse_opened() -> None:
    M.sse_open.inc()


def sse_closed() -> None:
    M.sse_open.dec()


def sse_events_sent(count: int) -> None:
    """`count` events are being written to an SSE client."""
    M.sse_events.inc(count)


# ------------------------------------------------------------------ scrape-time gauges


@dataclass(frozen=True)
class Reading:
    """One backlog figure read at scrape time (a gauge), e.g. `Reading("triage_dirty_sessions",
    12)`; `labels` for the labelled ones."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


Reader = Callable[[], Awaitable[Iterable[Reading]]]

_GAUGE_HELP = {
    "triage_hub_readers": "Stream-tailer readers of this replica",
    "triage_redis_connections_in_use": "Redis connections checked out",
    "triage_dirty_sessions": "Sessions waiting for a snapshot",
    "triage_dirty_oldest_age_seconds": "Age of the oldest dirty entry",
    "triage_snapshot_refused_sessions": "Sessions PostgreSQL refuses",
    "triage_celery_queue_depth": "Messages waiting in the Celery queue",
    "triage_celery_workers": "Workers answering a ping",
    "triage_broker_replicas": "Replicas of the broker's master (behind Sentinel only)",
    "triage_redis_used_memory_bytes": "Redis INFO used_memory",
    "triage_redis_maxmemory_bytes": "Redis maxmemory (0 = none)",
}


class _Readings(Collector):
    def __init__(self, readings: Iterable[Reading]) -> None:
        self.readings = list(readings)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for r in self.readings:
            family = families.get(r.name)
            if family is None:
                family = families[r.name] = GaugeMetricFamily(
                    r.name, _GAUGE_HELP.get(r.name, r.name), labels=list(r.labels)
                )
            family.add_metric(list(r.labels.values()), r.value)
        return list(families.values())


async def read_all(readers: Iterable[Reader], seconds: float) -> list[Reading]:
    """What each reader returns within `seconds`; a reader that fails or is late is left out."""

    async def one(reader: Reader) -> list[Reading]:
        try:
            return list(await asyncio.wait_for(reader(), seconds))
        except Exception as exc:  # a scrape must never fail for a backlog figure
            log.warning("metrics: a backlog reading was left out: %r", exc)
            return []

    results = await asyncio.gather(*(one(r) for r in readers))
    return [reading for result in results for reading in result]


# ------------------------------------------------------------------ HTTP

# What a scrape waits for the backlog readings at most: well inside any scrape timeout
# (Prometheus allows at most the scrape interval, 1 s in the tests).
SCRAPE_TIMEOUT_SECONDS = 0.5


def route_template(scope: Scope) -> str:
    """The template of the route that served this request ("unmatched": no route took it,
    e.g. a 404, or a body refused before routing)."""
    route = scope.get("route")
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class MetricsMiddleware:
    """Counts every HTTP request by route template, method and status, and times it until
    its response headers (an SSE stream's duration is its client's business). The outermost
    middleware: it sees the 413s and 500s the inner ones answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        _request_started.set(started)
        method = scope["method"]
        seen = False

        async def measured(message: Message) -> None:
            nonlocal seen
            if message["type"] == "http.response.start" and not seen:
                seen = True
                route = route_template(scope)
                status = message["status"]
                m = M
                m.child(m.http_requests, route, method, str(status)).inc()
                m.child(m.http_duration, route, method).observe(time.perf_counter() - started)
                if status == 503:
                    m.unavailable.inc()
            await send(message)

        try:
            await self.app(scope, receive, measured)
        except SendTimeoutError:
            stream_cut("send_timeout")
            raise


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.encode(), token.encode())


def install_metrics(
    app: FastAPI, settings: Settings, readers: Callable[[Any], list[Reader]]
) -> None:
    """`GET /metrics` (not in the OpenAPI, not behind the user JWT: its own optional bearer
    token, METRICS_TOKEN) and the request middleware; nothing when METRICS_ENABLED is false.

    `readers(app)` gives the scrape-time readers of the backlog gauges (see `Reading`).
    """
    if not settings.metrics_enabled:
        return
    app.add_middleware(MetricsMiddleware)
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    async def metrics(request: Request) -> Response:
        """Prometheus metrics of this replica."""
        if token and not _authorized(request, token):
            return JSONResponse(
                {"error": {"code": "unauthorized", "message": "missing or wrong metrics token"}},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        readings = await read_all(readers(request.app), SCRAPE_TIMEOUT_SECONDS)
        scraped = CollectorRegistry(auto_describe=False)
        scraped.register(_Readings(readings))
        body = generate_latest(REGISTRY) + generate_latest(scraped)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
