"""A private Redis Sentinel group: a master, its replica and three sentinels (quorum 2), on
loopback ports of this project's own range, for the broker tests. Never the shared server.

Sentinel is tuned to fail over fast (a master silent for DOWN_AFTER_MS is down): the tests
kill the master and wait for the promotion instead of sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.redis_server import RedisServer

MASTER_NAME = "brokermaster"
# The ports this branch's test servers may use (other test processes use other ranges).
PORT_RANGE = range(7300, 7400)
# 1.5 s: room for a health check between a kill and the promotion on a loaded machine.
DOWN_AFTER_MS = 1500
FAILOVER_TIMEOUT_MS = 3000
# Only stops a hang: a failover here takes a few seconds.
_GUARD = 30.0


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_ports(count: int) -> list[int]:
    """`count` free loopback ports of PORT_RANGE (the first free ones: tests run one at a time
    here, and a port that turns busy in between makes its server fail loudly at start)."""
    ports = [port for port in PORT_RANGE if not _port_taken(port)][:count]
    if len(ports) < count:
        raise RuntimeError(f"fewer than {count} free ports in {PORT_RANGE}")
    return ports


def wait_until(check: object, what: str, guard: float = _GUARD) -> None:
    deadline = time.monotonic() + guard
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {guard}s")
        time.sleep(0.1)


class SentinelGroup:
    def __init__(self, replicas: int = 1, sentinels: int = 3, password: str | None = None) -> None:
        """`password`: the one password of the data nodes and of the sentinels themselves."""
        ports = free_ports(1 + replicas + sentinels)
        self.dir = Path(tempfile.mkdtemp(prefix="triage-test-sentinel-"))
        self.password = password
        self.nodes = [
            RedisServer(
                self.dir / f"node{i}",
                extra_args=("--repl-diskless-sync-delay", "0"),
                password=password,
            )
            for i in range(1 + replicas)
        ]
        for node, port in zip(self.nodes, ports, strict=False):
            node.port = port
            node.url = f"redis://127.0.0.1:{port}/0"
        self.sentinel_ports = ports[1 + replicas :]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """CELERY_BROKER_URL for this group (with CELERY_BROKER_SENTINEL_MASTER=MASTER_NAME,
        and CELERY_BROKER_SENTINEL_PASSWORD=password when it has one)."""
        first, *others = self.sentinel_ports
        auth = f":{self.password}@" if self.password else ""
        return ";".join(
            [f"sentinel://{auth}127.0.0.1:{first}/0"]
            + [f"sentinel://127.0.0.1:{port}" for port in others]
        )

    def start(self) -> SentinelGroup:
        try:
            master = self.nodes[0]
            for node in self.nodes:
                node.dir.mkdir()
                if node is not master:
                    node.extra_args = self._replica_of(master)
                node.start()
            for node in self.nodes[1:]:
                wait_until(lambda n=node: self.replicating(n), f"replica {node.port} in sync")
            for port in self.sentinel_ports:
                self._start_sentinel(port, master.port)
            wait_until(self._sentinels_agree, "three sentinels that know each other")
        except BaseException:
            self.destroy()
            raise
        return self

    @staticmethod
    def _replica_of(master: RedisServer) -> tuple[str, ...]:
        # No 5 s wait before a full sync (Redis's default for diskless replication).
        return ("--replicaof", "127.0.0.1", str(master.port), "--repl-diskless-sync-delay", "0")

    def _start_sentinel(self, port: int, master_port: int) -> None:
        conf = self.dir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
        )
        if self.password:
            with conf.open("a") as f:
                f.write(
                    f"requirepass {self.password}\n"
                    f"sentinel auth-pass {MASTER_NAME} {self.password}\n"
                )
        log = (self.dir / f"sentinel-{port}.log").open("ab")
        self.sentinels.append(
            subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
            )
        )
        log.close()

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(
            port=port, password=self.password, socket_timeout=2, decode_responses=True
        )

    def _sentinels_agree(self) -> bool:
        others = len(self.sentinel_ports) - 1
        try:
            for port in self.sentinel_ports:
                with self._sentinel(port) as s:
                    state = s.sentinel_master(MASTER_NAME)
                    if int(state["num-other-sentinels"]) < others or not s.sentinel_slaves(
                        MASTER_NAME
                    ):
                        return False
        except redis.ConnectionError:
            return False
        return True

    def master_port(self) -> int | None:
        """The master's port as the first answering sentinel names it."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.ConnectionError), self._sentinel(port) as s:
                addr = s.sentinel_get_master_addr_by_name(MASTER_NAME)
                if addr:
                    return int(addr[1])
        return None

    def node(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def master(self) -> RedisServer:
        port = self.master_port()
        assert port is not None, "no sentinel names a master"
        return self.node(port)

    @staticmethod
    def replicating(node: RedisServer) -> bool:
        with contextlib.suppress(redis.ConnectionError), node.client() as client:
            return client.info("replication").get("master_link_status") == "up"
        return False

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master (a lost machine): what it did not replicate is gone."""
        master = self.master()
        assert master.proc is not None
        master.proc.kill()
        master.proc.wait()
        return master

    def wait_for_failover(self, old: RedisServer) -> RedisServer:
        """Wait until every sentinel names a new master, and it answers as one."""

        def promoted() -> bool:
            ports: set[int | None] = set()
            for port in self.sentinel_ports:
                with self._sentinel(port) as s:
                    addr = s.sentinel_get_master_addr_by_name(MASTER_NAME)
                    ports.add(int(addr[1]) if addr else None)
            if len(ports) != 1 or ports == {old.port}:
                return False
            with self.node(ports.pop()).client() as client:  # type: ignore[arg-type]
                return client.info("replication")["role"] == "master"

        wait_until(promoted, "the sentinels to promote a replica")
        return self.master()

    def rejoin(self, node: RedisServer) -> None:
        """Start a dead node again as a replica of the current master, as an operator would."""
        node.extra_args = self._replica_of(self.master())
        node.start()
        wait_until(lambda: self.replicating(node), f"node {node.port} replicating again")

    def destroy(self) -> None:
        for proc in self.sentinels:
            proc.terminate()
        for proc in self.sentinels:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
