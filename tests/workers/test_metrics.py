"""A real worker's metrics exporter: tasks run in a prefork child, figures served by the main
process (prometheus-client multiprocess mode) on WORKER_METRICS_PORT, behind METRICS_TOKEN."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from backend.core.config import Settings
from backend.state.service import ConversationStateManager
from bench.replica import free_port
from tests.workers.conftest import WorkerProcess
from tests.workers.test_worker import StartWorker, celery_client, seed
from workers.config import SNAPSHOT_SESSION

pytestmark = pytest.mark.e2e
__all__ = ["celery_client"]  # the fixture, shared with test_worker.py


async def scrape(url: str, token: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def test_task_runs_and_snapshot_rows_are_served_by_the_worker(
    settings: Settings,
    manager: ConversationStateManager,
    celery_client: Celery,
    start_worker: StartWorker,
) -> None:
    ids = await seed(manager, f"t-{uuid.uuid4().hex[:8]}", sessions=3, messages=4)
    port, token = free_port(), uuid.uuid4().hex
    worker: WorkerProcess = start_worker(
        beat=False,
        worker_metrics_port=port,
        worker_metrics_addr="127.0.0.1",
        metrics_token=token,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    async with httpx.AsyncClient() as client:
        refused = await client.get(url)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"

    for sid in ids:
        celery_client.send_task(SNAPSHOT_SESSION, args=[sid])
    ran = (
        "triage_celery_tasks_total",
        frozenset({("task", SNAPSHOT_SESSION), ("outcome", "succeeded")}),
    )
    deadline = time.monotonic() + 60  # a guard against a hang, not a measured limit
    while (samples := await scrape(url, token)).get(ran, 0) < 3:
        assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
        await asyncio.sleep(0.2)

    assert samples[ran] == 3
    assert samples[("triage_snapshot_rows_total", frozenset({("table", "messages")}))] == 12
    assert samples[("triage_snapshot_rows_total", frozenset({("table", "sessions")}))] == 3
    assert samples[("triage_snapshot_batches_total", frozenset())] == 3
    duration = (
        "triage_celery_task_duration_seconds_count",
        frozenset({("task", SNAPSHOT_SESSION)}),
    )
    assert samples[duration] == 3
    # The tasks ran in the pool's child process (a prefork worker's main process runs none),
    # not in the main process that serves this.
    pid = worker.proc.pid
    children = await asyncio.to_thread(Path(f"/proc/{pid}/task/{pid}/children").read_text)
    assert children.split()
