"""The servers of `bench/scale.py` besides the replicas: a private Redis and nginx in front.

Redis runs the production `redis/redis.conf` (AOF every second, RDB saves, `maxclients`,
`noeviction`), on loopback at a given port, in a directory of its own. nginx runs a config
derived from `deploy/nginx.conf`: the same locations and proxy settings, with the two replicas
as the upstream, enough connections and descriptors for 10,000+ streams (each costs nginx two
connections: the client's and the upstream's), and its files in the run's directory. Both are
stopped when their `with` block ends.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import redis

from bench.replica import ROOT, stop

START_GUARD = 20.0


def run_queue_wait_seconds(pid: int) -> float:
    """Time the process's main thread (a replica's event loop) spent runnable but waiting for
    a core (/proc/PID/schedstat): how much CPU it wanted and did not get."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


class PrivateRedis:
    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.dir = directory / "redis"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivateRedis:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                str(ROOT / "redis" / "redis.conf"),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)),
                *("--logfile", str(self.dir / "redis.log"), "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_GUARD
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"redis-server did not start: {self.log()}")
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        stop(self.proc)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def info(self) -> dict[str, int]:
        info = self.client().info()
        return {
            "used_memory": int(info["used_memory"]),
            "connected_clients": int(info["connected_clients"]),
        }

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def balancer_config(
    production: str, port: int, upstreams: list[int], directory: Path, nofile: int
) -> str:
    """`deploy/nginx.conf` with the bench's listener, upstreams, limits and files.

    `nofile`: descriptors per worker (at most the hard limit nginx starts with, unless it may
    raise it). A stream holds two connections of one worker (the client's and the upstream's);
    `reuseport` spreads the clients over the workers, so each needs about one descriptor per
    stream in all.

    Each change names the text it replaces: if the production file changes shape, this fails
    loudly instead of benchmarking a different proxy."""

    def replace(text: str, old: str, new: str) -> str:
        if old not in text:
            raise RuntimeError(f"deploy/nginx.conf changed: no {old!r} to adapt for the bench")
        return text.replace(old, new)

    servers = "\n        ".join(f"server 127.0.0.1:{p};" for p in upstreams)
    text = replace(
        production,
        "worker_processes auto;",
        f"worker_processes auto;\nworker_rlimit_nofile {nofile};\n"
        f"pid {directory}/nginx.pid;\ndaemon off;\nerror_log {directory}/error.log warn;",
    )
    text = replace(text, "worker_connections 4096;", f"worker_connections {nofile - 100};")
    # Buffered to a file rather than unbuffered to stdout: same lines, less noise in the run.
    text = replace(
        text,
        "access_log /dev/stdout main;",
        f"access_log {directory}/access.log main buffer=256k flush=1s;",
    )
    text = replace(text, "error_log /dev/stderr warn;", f"error_log {directory}/error.log warn;")
    # Docker's DNS and `resolve` (nginx >= 1.27.3) have no place here: fixed loopback replicas.
    text = re.sub(r"\n\s*resolver [^;]*;", "", text)
    text = replace(text, "server api:8000 resolve;", servers)
    text = replace(text, "listen 80;", f"listen 127.0.0.1:{port} reuseport backlog=4096;")
    temp = "\n    ".join(
        f"{name}_temp_path {directory}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return replace(text, "http {", f"http {{\n    {temp}")


class Balancer:
    """nginx in front of the replicas (master + one worker per core)."""

    def __init__(self, port: int, upstreams: list[int], directory: Path, nofile: int) -> None:
        self.port = port
        self.nofile = nofile
        self.dir = directory / "nginx"
        self.upstreams = upstreams
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Balancer:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise RuntimeError(
                "nginx is not installed: `bash scripts/apt_install.sh /usr/sbin/nginx nginx-light`"
                " (`make bench` does it)"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "nginx.conf"
        production = (ROOT / "deploy" / "nginx.conf").read_text()
        conf.write_text(
            balancer_config(production, self.port, self.upstreams, self.dir, self.nofile)
        )
        with (self.dir / "stderr.log").open("wb") as stderr:
            self.proc = subprocess.Popen(
                [nginx, "-c", str(conf), "-p", f"{self.dir}/"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + START_GUARD
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"nginx did not start: {self.log()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/nginx-health").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        stop(self.proc)  # SIGTERM: nginx's fast shutdown, open streams are cut

    def pids(self) -> list[int]:
        """The master and its workers."""
        assert self.proc is not None
        master = self.proc.pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return [master, *map(int, children)]

    def log(self) -> str:
        parts = [p.read_text(errors="replace") for p in self.dir.glob("*.log") if p.is_file()]
        return "\n".join(parts)[-3000:]
