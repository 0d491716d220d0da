"""redis/broker.sh and redis/sentinel.sh, the start scripts of the compose broker nodes and
sentinels, run for real on loopback ports of this project's range (a copy of redis.conf: a
sentinel's CONFIG REWRITE must never touch the repository's file)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_sentinel import MASTER_NAME, SentinelGroup, free_ports, wait_until

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "broker-test-pw"


class Script:
    """One of the scripts, started with the environment compose would give it."""

    def __init__(self, tmp: Path, name: str, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.dir = tmp / f"{name}-{port}"
        self.dir.mkdir(exist_ok=True)
        self.log = self.dir / "out.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["sh", str(ROOT / "redis" / name)],
                cwd=self.dir,
                env={**os.environ, "BROKER_PASSWORD": PASSWORD, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=PASSWORD, socket_timeout=2)

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited: {self.log.read_text()}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Script]]:
    scripts: list[Script] = []
    try:
        yield scripts
    finally:
        for script in scripts:
            script.stop()


def broker_node(
    tmp: Path, port: int, sentinels: str, initial_master: str, started: list[Script], **env: str
) -> Script:
    conf = tmp / f"redis-{port}.conf"
    shutil.copy(ROOT / "redis" / "redis.conf", conf)
    node = Script(
        tmp,
        "broker.sh",
        port,
        {
            "BROKER_ANNOUNCE_HOST": "127.0.0.1",
            "BROKER_PORT": str(port),
            "BROKER_CONF": str(conf),
            "BROKER_SENTINELS": sentinels,
            "BROKER_INITIAL_MASTER": initial_master,
            "BROKER_MAXMEMORY": "32mb",
            **env,
        },
    )
    started.append(node)
    wait_until(node.answers, f"broker.sh on {port}")
    return node


def role(node: Script) -> tuple[str, int | None]:
    with node.client() as client:
        info = client.info("replication")
    return info["role"], info.get("master_port")


def test_first_start_master_and_replica_then_a_node_back_after_a_failover_follows(
    tmp_path: Path, started: list[Script]
) -> None:
    master_port, replica_port, sentinel_port = free_ports(3)
    nobody = f"127.0.0.1:{sentinel_port}"  # no sentinel there yet: the very first start
    initial = f"127.0.0.1:{master_port}"
    master = broker_node(tmp_path, master_port, nobody, initial, started)
    replica = broker_node(tmp_path, replica_port, nobody, initial, started)
    assert role(master) == ("master", None)
    assert role(replica) == ("slave", master_port)

    # A sentinel of the deployment's own (sentinel.sh) watching that master.
    (tmp_path / "sentinel").mkdir()
    sentinel = Script(
        tmp_path,
        "sentinel.sh",
        sentinel_port,
        {
            "SENTINEL_ANNOUNCE_HOST": "127.0.0.1",
            "SENTINEL_PORT": str(sentinel_port),
            "SENTINEL_DIR": str(tmp_path / "sentinel"),
            "BROKER_INITIAL_MASTER": initial,
        },
    )
    started.append(sentinel)
    wait_until(sentinel.answers, "sentinel.sh")
    with sentinel.client() as client:
        assert client.sentinel_get_master_addr_by_name("mymaster") == (b"127.0.0.1", master_port)

    # After a failover the sentinels name another master: the node that comes back (here the
    # old master, restarted) joins it as a replica instead of starting as a second master.
    master.stop()
    group = SentinelGroup(password=PASSWORD).start()
    try:
        promoted = group.master()
        sentinels = " ".join(f"127.0.0.1:{port}" for port in group.sentinel_ports)
        back = broker_node(
            tmp_path, master_port, sentinels, initial, started, BROKER_MASTER_NAME=MASTER_NAME
        )
        wait_until(lambda: role(back) == ("slave", promoted.port), "the node to follow")
        assert "starting as a replica of 127.0.0.1" in back.log.read_text()
    finally:
        group.destroy()


def test_a_sentinel_restarted_keeps_what_it_learned_and_takes_a_new_password(
    tmp_path: Path, started: list[Script]
) -> None:
    (tmp_path / "sentinel").mkdir()
    port, master_port = free_ports(2)
    env = {
        "SENTINEL_ANNOUNCE_HOST": "127.0.0.1",
        "SENTINEL_PORT": str(port),
        "SENTINEL_DIR": str(tmp_path / "sentinel"),
        "BROKER_INITIAL_MASTER": f"127.0.0.1:{master_port}",
    }
    first = Script(tmp_path, "sentinel.sh", port, env)
    started.append(first)
    wait_until(first.answers, "sentinel.sh")
    first.stop()
    conf = tmp_path / "sentinel" / "sentinel.conf"
    # What a failover would have taught it: another master.
    conf.write_text(conf.read_text().replace(f" {master_port} 2", " 7399 2"))

    again = Script(tmp_path, "sentinel.sh", port, {**env, "BROKER_PASSWORD": "rotated"})
    started.append(again)
    with redis.Redis(port=port, password="rotated", socket_timeout=2) as client:
        wait_until(lambda: _pings(client), "the sentinel with its new password")
        assert client.sentinel_get_master_addr_by_name("mymaster")[1] == 7399
    text = conf.read_text()
    assert text.count("requirepass ") == 1 and "rotated" in text and PASSWORD not in text
    assert oct(conf.stat().st_mode & 0o777) == "0o600"


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
