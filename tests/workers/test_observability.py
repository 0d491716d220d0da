"""Logs and traces of the real processes an operator runs: a uvicorn replica, `triage worker`,
`triage beat` (logs), and a Celery worker exporting its spans over OTLP to a collector this
test runs (traces). Private Redis (tests/workers/conftest.py), this run's PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backend.core import tracing
from backend.core.auth import create_token
from backend.core.config import Settings
from backend.state.service import ConversationStateManager
from tests.conftest import process_env
from tests.e2e.replicas import Replica, replica_env
from tests.faults.servers import TRIAGE, wait_until
from tests.workers.conftest import WorkerProcess
from workers.config import SNAPSHOT_SESSION, create_celery_app

GUARD = 60.0


class Logged:
    """A `triage ...` command in its own process group, stdout and stderr to one file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [TRIAGE, *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    started: list[Any] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


# Celery's signal handlers write these straight to stdout (no logging inside a signal
# handler); they are the only lines of a worker that are not JSON.
CELERY_SIGNAL_NOTICES = re.compile(r"^worker: (Warm|Cold) shutdown \(MainProcess\)$")


def json_lines(name: str, text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        if not line.strip() or CELERY_SIGNAL_NOTICES.match(line):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{name}: not a JSON line: {line!r}") from None
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), (name, record)
        records.append(record)
    return records


async def test_json_logs_carry_ids_and_never_the_token_or_the_message(
    settings: Settings,
    manager: ConversationStateManager,
    tmp_path: Path,
    processes: list[Any],
) -> None:
    marker = uuid.uuid4().hex
    message = f"Meu vizinho derrubou o muro do quintal, código {marker}"
    token = create_token(settings, f"user-{marker[:8]}", "acme")
    verbose = {"LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"}
    env = process_env(settings, **verbose)
    worker = Logged(
        [
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            "--loglevel=DEBUG",
            "-n",
            f"w{marker[:8]}@test",
            "--",
            "--without-mingle",
            "--without-gossip",
        ],
        env,
        tmp_path / "worker.log",
    )
    processes.append(worker)
    beat = Logged(
        ["beat", f"--schedule={tmp_path / 'beat.schedule'}", "--loglevel=DEBUG"],
        env,
        tmp_path / "beat.log",
    )
    processes.append(beat)
    replica = Replica(
        "A",
        replica_env(settings.key_prefix, REDIS_URL=settings.redis_url, **verbose),
        log_level="debug",
    )
    processes.append(replica)
    replica.spawn().wait_ready()
    wait_until(lambda: "ready." in worker.text(), GUARD, "the worker ready")

    async with httpx.AsyncClient(base_url=replica.url, timeout=GUARD) as client:
        auth = {"Authorization": f"Bearer {token}"}
        response = await client.post("/api/agents/chat", json={"message": message}, headers=auth)
        assert response.status_code == 200 and "message.completed" in response.text
        sid = response.headers["x-session-id"]
        request_id = response.headers["x-request-id"]
        # The browser's EventSource passes the token in the URL.
        async with client.stream(
            "GET", f"/api/conversations/sessions/{sid}/events?access_token={token}"
        ) as stream:
            assert stream.status_code == 200
        listed = await client.get(f"/api/conversations/sessions/{sid}/messages", headers=auth)
        assert listed.status_code == 200 and marker in listed.text

    # The worker took the session (message texts and all) into PostgreSQL.
    for _ in range(int(GUARD * 10)):
        if not (await manager.dirty_backlog())[0]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the worker did not snapshot the session")
    replica.terminate()  # its log is complete once it exited
    for process in (worker, beat):
        process.stop()

    logs = {
        "replica": replica.log.read_text(errors="replace"),
        "worker": worker.text(),
        "beat": beat.text(),
    }
    for name, text in logs.items():
        assert token not in text, f"the bearer token is in the {name}'s log"
        assert marker not in text, f"the message text is in the {name}'s log"
    records = {name: json_lines(name, text) for name, text in logs.items()}
    assert any(r["level"] == "DEBUG" for r in records["replica"])  # really that verbose
    # The request's lines carry its id (the one returned in X-Request-ID) and its session.
    mine = [r for r in records["replica"] if r.get("request_id") == request_id]
    assert mine and any(r.get("session_id") == sid for r in records["replica"])
    # The worker's task lines (Celery's own included) carry the task's id.
    tasks = [r for r in records["worker"] if r.get("task_id")]
    assert any("succeeded" in r["message"] for r in tasks)
    assert any("beat" in r["logger"] or "beat" in r["message"] for r in records["beat"])


class Collector:
    """A minimal OTLP/HTTP trace receiver on a loopback port: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        spans.extend(scope.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.configure_tracing("triage-test", provider=provider)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()
        provider.shutdown()


def test_trace_context_goes_from_the_enqueue_into_the_worker_task(
    settings: Settings,
    spans: InMemorySpanExporter,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    with Collector() as collector:
        start_worker(
            beat=False,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=collector.url,
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        # The API's Celery app (same factory, instrumented in this process) enqueues.
        celery = create_celery_app(settings)
        try:
            with tracing.span("api.request"):
                celery.send_task(SNAPSHOT_SESSION, [f"s-{uuid.uuid4().hex[:12]}"])
        finally:
            celery.close()
        [publish] = [s for s in spans.get_finished_spans() if s.name.startswith("apply_async/")]
        [request] = [s for s in spans.get_finished_spans() if s.name == "api.request"]
        assert publish.parent is not None and publish.parent.span_id == request.context.span_id

        def task_span() -> Any:
            runs = [s for s in collector.spans if s.name == f"run/{SNAPSHOT_SESSION}"]
            return runs[0] if runs else None

        run = wait_until(task_span, GUARD, "the worker's task span at the collector")
        # The worker's span continues the enqueuer's trace, as a child of the publish span.
        assert int.from_bytes(run.trace_id, "big") == publish.context.trace_id
        assert int.from_bytes(run.parent_span_id, "big") == publish.context.span_id

        def redis_under_run() -> list[Any]:
            return [
                s
                for s in collector.spans
                if s.parent_span_id == run.span_id
                and any(
                    a.key == "db.system" and a.value.string_value == "redis" for a in s.attributes
                )
            ]

        # Inside the task, its Redis calls are its children.
        wait_until(redis_under_run, GUARD, "the task's Redis spans")
