"""A real Prometheus server scrapes a real replica and a real worker: after a few chat
messages, PromQL over its HTTP API gives the request count, the reply count and the snapshot
rows the worker wrote.

Prometheus is Debian's `prometheus` package (installed by scripts/apt_install.sh when
missing; the test fails if it cannot be), on a free loopback port with a generated scrape
config (every second) and its own storage under the test's tmp_path. Every process the test
starts is stopped at the end.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from backend.core.auth import create_token
from backend.core.config import Settings
from tests.conftest import TEST_DATABASE_URL, TEST_JWT_SECRET, TEST_REDIS_URL, process_env
from tests.e2e.conftest import StartReplicas
from tests.redis_cluster import free_port
from tests.workers.conftest import WorkerProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = "/usr/bin/prometheus"
MESSAGES = ["Fui demitido sem justa causa.", "Foi há duas semanas.", "Tenho a carteira."]


def ensure_prometheus() -> None:
    installed = subprocess.run(
        ["bash", str(ROOT / "scripts" / "apt_install.sh"), PROMETHEUS, "prometheus"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, f"prometheus could not be installed: {installed.stderr}"


@contextmanager
def running_prometheus(tmp_path: Path, api: str, worker: str) -> Iterator[str]:
    """Prometheus scraping jobs `api` and `worker` every second; yields its base URL."""
    ensure_prometheus()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    # JSON is YAML: the scrape config, generated.
    config.write_text(
        json.dumps(
            {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "evaluation_interval": "1s",
                },
                "scrape_configs": [
                    {"job_name": "api", "static_configs": [{"targets": [api]}]},
                    {"job_name": "worker", "static_configs": [{"targets": [worker]}]},
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # a guard against a hang, not a measured limit
        while True:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


async def promql(client: httpx.AsyncClient, url: str, query: str) -> float | None:
    """The value of an instant query that yields one series (None when it yields none)."""
    response = await client.get(f"{url}/api/v1/query", params={"query": query})
    body = response.json()
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def chat(client: httpx.AsyncClient, base: str, token: str, session: str | None) -> str:
    """One chat message, read until its reply is stored; returns the session id."""
    body = {"message": MESSAGES[0 if session is None else 1], "session_id": session}
    headers = {"Authorization": f"Bearer {token}"}
    async with client.stream(
        "POST", f"{base}/api/agents/chat", json=body, headers=headers
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line == "event: message.completed":
                break
        else:
            raise AssertionError("the reply's stream ended before message.completed")
        return response.headers["x-session-id"]


async def test_prometheus_sees_requests_replies_and_snapshot_rows(
    settings: Settings, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"  # this test's own Celery queue on the shared Redis
    (replica,) = start_replicas(1, celery_queue=queue, offline_chunk_delay_ms=0)
    worker_port = free_port()
    env = process_env(
        settings.model_copy(
            update={
                "redis_url": TEST_REDIS_URL,
                "database_url": TEST_DATABASE_URL,
                "dirty_flush_interval": 1.0,
            }
        ),
        celery_queue=queue,
        worker_metrics_port=worker_port,
        worker_metrics_addr="127.0.0.1",
        jwt_secret=TEST_JWT_SECRET,
    )
    worker = WorkerProcess(env, tmp_path / "worker.log", beat=True)
    try:
        worker.wait_ready()
        with running_prometheus(
            tmp_path, f"127.0.0.1:{replica.port}", f"127.0.0.1:{worker_port}"
        ) as prometheus:
            token = create_token(settings, f"prom-{uuid.uuid4().hex[:8]}", "acme")
            async with httpx.AsyncClient(timeout=30) as client:
                session = None
                for _ in MESSAGES:
                    session = await chat(client, replica.url, token, session)
                expected = {
                    'sum(triage_http_requests_total{job="api",route="/api/agents/chat",'
                    'method="POST",status="200"})': len(MESSAGES),
                    'sum(triage_replies_total{job="api",outcome="completed"})': len(MESSAGES),
                    # Each user message and each reply: one row each in PostgreSQL.
                    'sum(triage_snapshot_rows_total{job="worker",table="messages"})': 2
                    * len(MESSAGES),
                }
                seen: dict[str, float | None] = {}
                deadline = time.monotonic() + 60  # a guard against a hang, not a limit
                while True:
                    seen = {q: await promql(client, prometheus, q) for q in expected}
                    if seen == expected or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                targets = (await client.get(f"{prometheus}/api/v1/targets")).json()
                health = [
                    (t["labels"]["job"], t["health"], t["lastError"])
                    for t in targets["data"]["activeTargets"]
                ]
                assert seen == expected, health
                up = await promql(client, prometheus, "sum(up)")
                assert up == 2  # both targets scraped
    finally:
        worker.stop()
