"""Real API replicas for end-to-end tests: uvicorn processes on free loopback ports.

Each replica is `python -m uvicorn backend.main:app` configured through the environment (the
test's key prefix, Redis database, JWT secret and pacing), started and waited for until
/health/ready answers, and always stopped by the fixture that started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TEST_DATABASE_URL, TEST_JWT_SECRET, TEST_REDIS_URL
from tests.redis_cluster import free_port

ROOT = Path(__file__).resolve().parents[2]


class Replica:
    def __init__(self, name: str, env: dict[str, str], log_level: str = "warning") -> None:
        self.name = name
        self.port = free_port()
        self.env = env
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"triage-e2e-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> Replica:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "backend.main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    self.log_level,
                ],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 30) -> Replica:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.name} not ready: {self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                print(f"replica {self.name} ignored SIGTERM for 20 s:\n{self.output()}")
        self.log.unlink(missing_ok=True)


def replica_env(prefix: str, **overrides: Any) -> dict[str, str]:
    env = {
        "ENVIRONMENT": "test",
        "REDIS_URL": TEST_REDIS_URL,
        "DATABASE_URL": TEST_DATABASE_URL,
        "JWT_SECRET": TEST_JWT_SECRET,
        "KEY_PREFIX": prefix,
        "LOG_LEVEL": "WARNING",
        # Slow enough that a reply can be cut in the middle; short lease and sweep so a dead
        # replica's reply is recovered within a second or two.
        "OFFLINE_CHUNK_DELAY_MS": "25",
        "GENERATION_LEASE_MS": "1500",
        "GENERATION_SWEEP_SECONDS": "0.3",
        "STREAM_CHECK_SECONDS": "1",
        "SHUTDOWN_GRACE_SECONDS": "10",
        "SSE_SHUTDOWN_GRACE_SECONDS": "1",
        "RATE_LIMIT_MESSAGES": "1000",
    }
    env.update({k.upper(): str(v) for k, v in overrides.items()})
    return env
