"""Private servers and real processes for fault tests: everything on free loopback ports.

- `RedisServer` (tests/redis_server.py): a `redis-server` of the test's own (broker and hot
  state) that a test may fill up, stop and start again on the same port and data directory.
- `PostgresCluster`: a throwaway PostgreSQL cluster (`initdb` / `pg_ctl` from
  /usr/lib/postgresql/*/bin) on a free port, migrated, that a test may stop and start; never
  the shared server.
- `CeleryProcess`: `triage worker` / `triage beat`, the production commands, in their own
  process group, configured through the environment.

Whoever starts one stops it (the fixtures in tests/faults/conftest.py do, also on failure).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.conftest import migrate
from tests.redis_cluster import free_port

TRIAGE = str(Path(sys.executable).with_name("triage"))


def wait_until(check: Any, guard: float, what: str, step: float = 0.1) -> Any:
    """Poll `check()` until it returns something truthy; `guard` (seconds) only stops a hang."""
    deadline = time.monotonic() + guard
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {guard}s")
        time.sleep(step)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found under /usr/lib/postgresql/*/bin")
    return found[-1]


class PostgresCluster:
    """A private PostgreSQL cluster (trust auth, loopback only) with the migrated database
    `triage`. initdb refuses to run as root: then the cluster runs as the `postgres` user."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="triage-fault-pg-"))
        self.data = self.dir / "data"
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/triage"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as, *args], check=True, capture_output=True, cwd=self.dir, timeout=120
        )

    def create(self) -> PostgresCluster:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust")
        self.start()
        self._run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "triage")  # fmt: skip
        migrate(self.url)
        return self

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off"
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "pg.log"),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class CeleryProcess:
    """`triage worker ...` or `triage beat ...` in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, name: str = "") -> None:
        self.name = name  # a worker's node name
        self.log = log
        out = log.open("ab")
        self.proc = subprocess.Popen(
            [TRIAGE, *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()

    @classmethod
    def worker(cls, name: str, env: dict[str, str], log: Path) -> CeleryProcess:
        args = ["worker", "--concurrency", "1", "-n", f"{name}@test", "--"]
        return cls([*args, "--without-mingle", "--without-gossip"], env, log, f"{name}@test")

    @classmethod
    def beat(cls, env: dict[str, str], log: Path) -> CeleryProcess:
        return cls(["beat", "--schedule", str(log.with_suffix(".schedule"))], env, log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, text: str, guard: float = 60) -> None:
        def seen() -> bool:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            return False

        wait_until(seen, guard, f"{text!r} in {self.log.name}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and pool children): a lost machine."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
                return
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # pool children may outlive a dead main process
