"""A private `redis-server` on a free loopback port, for tests that fill, flush, stop or restart
it (never the shared server). The one helper for this: worker, CLI and fault tests use it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.redis_cluster import free_port

# Only stops a hang: a server on this machine starts in milliseconds.
_START_GUARD = 20.0


class RedisServer:
    """`noeviction` as in production (redis/redis.conf): a full server refuses writes
    (OutOfMemoryError) instead of dropping keys. With `appendonly`, every write reaches the AOF
    at once, so `stop()` then `start()` (same port, same directory) keeps the data."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        appendonly: bool = False,
        extra_args: tuple[str, ...] = (),
        password: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._own_dir = directory is None
        self.dir = directory or Path(tempfile.mkdtemp(prefix="triage-test-redis-"))
        self.appendonly = appendonly
        self.extra_args = extra_args
        # requirepass, and masterauth for when it replicates (tests/redis_sentinel.py).
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.dir), "--save", "", "--maxmemory-policy", "noeviction"]
        args += ["--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [*args, *self.extra_args], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + _START_GUARD
        while not self._loaded():
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)
        return self

    def _loaded(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()}")
        try:
            with self.client() as client:
                return int(client.info("persistence")["loading"]) == 0
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False

    def wait_replicating(self) -> RedisServer:
        """For a server started with `--replicaof`: until its link to the master is up."""
        deadline = time.monotonic() + _START_GUARD
        with self.client() as client:
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise AssertionError(f"replica on port {self.port} did not link up")
                time.sleep(0.05)
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5)

    def used_memory(self) -> int:
        with self.client() as client:
            return int(client.info("memory")["used_memory"])

    def fill(self) -> None:
        """Make the server full: writes that need memory answer OutOfMemoryError from now on."""
        with self.client() as client:
            client.config_set("maxmemory", max(1, self.used_memory() - 64 * 1024))

    def free(self) -> None:
        with self.client() as client:
            client.config_set("maxmemory", 0)

    def aof(self) -> Path:
        """The AOF file new writes go to (Redis 7's multi-part AOF)."""
        (incr,) = self.dir.glob("appendonlydir/*.incr.aof")
        return incr

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): with appendonly, what was written survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def destroy(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
