"""A throwaway 3-master Redis Cluster on loopback ports, for tests and benchmarks.

With `replicas=1` each master gets a replica, and a test can SIGKILL a master
(`kill_master`) and wait for its replica to take over (`wait_promoted`), as in production.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_cluster_ports(n: int) -> list[int]:
    # A cluster node also listens on port + 10000 (the bus port); both must be free.
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


class RedisClusterProcess:
    def __init__(
        self,
        masters: int = 3,
        *,
        replicas: int = 0,
        node_timeout_ms: int = 2000,
        ports: list[int] | None = None,
    ) -> None:
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports = ports or _free_cluster_ports(masters * (1 + replicas))
        self.dir = Path(tempfile.mkdtemp(prefix="triage-cluster-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisClusterProcess:
        for port in self.ports:
            (self.dir / str(port)).mkdir()
            self.procs.append(self._spawn(port))
        for port in self.ports:
            self._wait(lambda port=port: self._cli(port, "ping") == "PONG")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in self.ports],
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in self.ports:
            self._wait(lambda port=port: "cluster_state:ok" in self._cli(port, "cluster", "info"))
        if self.replicas:
            # Every replica linked and in sync, and every node agreeing on who replicates whom
            # (else a failover may find no replica to promote).
            for port in self.ports:
                self._wait(lambda port=port: self._synced(port))
        return self

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        node_dir = self.dir / str(port)
        return subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(node_dir),
                "--logfile",
                str(node_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def restart(self, port: int) -> None:
        """Start the killed node on `port` again (as a supervisor would). It keeps its cluster
        identity (nodes.conf) but no data: it rejoins as a replica of whoever took its slots
        and resyncs from it; returns once it is in sync."""
        self.procs[self.ports.index(port)] = self._spawn(port)
        self.killed.discard(port)
        self._wait(lambda: "master_link_status:up" in self._cli(port, "info", "replication"))

    def _synced(self, port: int) -> bool:
        info = self._cli(port, "info", "replication")
        if "role:slave" in info:
            return "master_link_status:up" in info
        nodes = self._cli(port, "cluster", "nodes")
        return nodes.count("slave") == len(self.ports) - len(self.ports) // (1 + self.replicas)

    def masters(self) -> dict[int, tuple[int, int]]:
        """Live masters: port -> the first slot range it serves."""
        alive = next(p for p in self.ports if p not in self.killed)
        found: dict[int, tuple[int, int]] = {}
        for line in self._cli(alive, "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2] and len(fields) > 8:
                port = int(fields[1].split(":")[1].split("@")[0])
                first, _, last = fields[8].partition("-")
                found[port] = (int(first), int(last or first))
        return found

    def master_of(self, slot: int) -> int:
        for port, (first, last) in self.masters().items():
            if first <= slot <= last:
                return port
        raise LookupError(f"no master serves slot {slot}")

    def replica_of(self, master_port: int) -> int:
        for port in self.ports:
            info = self._cli(port, "info", "replication")
            if "role:slave" in info and f"master_port:{master_port}\n" in info + "\n":
                return port
        raise LookupError(f"no replica of {master_port}")

    def process(self, port: int) -> subprocess.Popen[bytes]:
        return self.procs[self.ports.index(port)]

    def kill_master(self, port: int) -> None:
        """SIGKILL the node on `port`: a lost machine (no shutdown, no last words)."""
        proc = self.process(port)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.killed.add(port)

    def pause(self, port: int) -> None:
        """SIGSTOP the node on `port` (a replica falling behind); `resume` lets it go on."""
        os.kill(self.process(port).pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self.process(port).pid, signal.SIGCONT)

    def wait_promoted(self, replica_port: int, timeout: float = 30.0) -> None:
        """Until the replica on `replica_port` is a master and every live node says the cluster
        is whole again (the cluster's own failure detection, no CLUSTER FAILOVER)."""
        self._wait(lambda: "role:master" in self._cli(replica_port, "info", "replication"), timeout)
        for port in self.ports:
            if port not in self.killed:
                self._wait(
                    lambda port=port: "cluster_state:ok" in self._cli(port, "cluster", "info"),
                    timeout,
                )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused node cannot act on SIGTERM
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, port: int, *args: str) -> str:
        """`redis-cli -p port args...` on one node; its output."""
        return self._cli(port, *args)

    @staticmethod
    def _cli(port: int, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip()

    @staticmethod
    def _wait(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except subprocess.SubprocessError:
                pass
            time.sleep(0.1)
        raise RuntimeError("redis cluster did not come up")
