"""RedisService: JSON helpers, SCAN listing, health, and typed errors when Redis is away."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from redis import exceptions as redis_errors
from redis.asyncio.connection import Connection, parse_url

from backend.core.errors import StoreUnavailable
from backend.core.redis import RedisService, translate_errors
from tests.conftest import make_settings
from tests.redis_cluster import free_port
from tests.redis_server import RedisServer


async def test_json_helpers_ttl_and_scan(redis_service: RedisService, settings) -> None:  # type: ignore[no-untyped-def]
    key = f"{settings.key_prefix}:doc"
    await redis_service.set_json(key, {"área": "consumidor", "n": [1, 2]}, ttl=120)
    assert await redis_service.get_json(key) == {"área": "consumidor", "n": [1, 2]}
    assert 0 < (await redis_service.get_ttl(key) or 0) <= 120
    assert await redis_service.exists(key) == 1
    for i in range(25):
        await redis_service.set_json(f"{settings.key_prefix}:many:{i}", i)
    found = {k async for k in redis_service.scan_keys(f"{settings.key_prefix}:many:*")}
    assert len(found) == 25
    assert await redis_service.delete(key) == 1
    assert await redis_service.get_json(key) is None
    assert await redis_service.get_ttl(key) is None


async def test_health_check_reports_latency_version_memory_clients(
    redis_service: RedisService,
) -> None:
    health = await redis_service.health_check()
    assert health["status"] == "ok"
    assert health["latency_ms"] >= 0
    assert health["redis_version"]
    assert health["used_memory"] > 0
    assert health["connected_clients"] >= 1


async def test_refused_connection_gives_typed_error() -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    service = RedisService.from_settings(settings)
    try:
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(service.get_json("anything"), timeout=30)
    finally:
        await service.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung or partitioned Redis)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


async def test_silent_redis_gives_typed_error_not_a_hang(silent_server: int) -> None:
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{silent_server}/0",
        redis_socket_timeout=0.5,
        redis_connect_timeout=0.5,
        redis_retries=1,
    )
    service = RedisService.from_settings(settings)
    try:
        # The bound is a hang detector, far above the configured timeouts, not a speed check.
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(service.get_json("anything"), timeout=30)
    finally:
        await service.close()


async def test_commands_go_out_through_the_hiredis_packer_unchanged(
    redis_service: RedisService, settings
) -> None:  # type: ignore[no-untyped-def]
    pool = redis_service.client.connection_pool  # type: ignore[union-attr]
    assert pool.connection_class.__name__ == "FastConnection"
    conn = pool.make_connection()

    def python_packer(*args: object) -> list[bytes]:  # what plain redis-py sends
        return Connection.pack_command(conn, *args)  # type: ignore[arg-type]

    for args in [
        ("SET", "k", "olá, mundo", "EX", 60),
        ("EVALSHA", "a" * 40, 2, "k1", "k2", 1.5, -3, 2**70, b"\x00\xffbytes", "ação"),
        ("CONFIG GET", "maxmemory"),  # a two-word command name: redis-py splits it
    ]:
        assert b"".join(conn.pack_command(*args)) == b"".join(python_packer(*args))
    # Values hiredis does not take fall back to redis-py, which sends or refuses them as ever.
    view = memoryview(b"abc")
    assert b"".join(conn.pack_command("SET", "k", view)) == b"".join(
        python_packer("SET", "k", view)
    )
    with pytest.raises(redis_errors.DataError):
        conn.pack_command("SET", "k", None)
    # And the round trip works end to end.
    key = f"{settings.key_prefix}:packed"
    await redis_service.client.set(key, "ação")
    assert await redis_service.client.get(key) == "ação"
    await redis_service.client.delete(key)


async def test_a_connection_closed_under_a_command_is_store_unavailable(settings) -> None:  # type: ignore[no-untyped-def]
    """A failover makes the cluster client close connections other tasks are using; redis-py
    then fails inside the connection with AttributeError, not ConnectionError. That is a lost
    connection (503 to retry), not a bug (500); an AttributeError of our own still is one."""
    connection = Connection(**parse_url(settings.redis_url))
    await connection.connect()
    await connection.disconnect()  # what the client's aclose() does under another task
    with pytest.raises(StoreUnavailable, match="connection lost"), translate_errors():
        await connection._send_packed_command([b"*1\r\n$4\r\nPING\r\n"])
    with pytest.raises(AttributeError), translate_errors():
        None.missing  # type: ignore[attr-defined]  # noqa: B018


async def test_a_write_redis_does_not_take_is_bounded_and_the_connection_replaced() -> None:
    """A command whose bytes Redis stops taking (here: the server is stopped with SIGSTOP and a
    64 MB value fills the socket buffers) fails within REDIS_SOCKET_TIMEOUT as the store being
    unavailable, and once Redis is back the next command works on a new connection."""
    import os
    import signal

    server = RedisServer().start()
    settings = make_settings(
        redis_url=server.url, redis_socket_timeout=0.5, redis_connect_timeout=0.5, redis_retries=0
    )
    service = RedisService.from_settings(settings)
    try:
        assert await service.client.set("warm", "1")  # a connection, made while Redis answers
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable), translate_errors():
                # The bound is a hang detector, far above the timeout, not a speed check.
                await asyncio.wait_for(service.client.set("big", b"x" * (64 << 20)), 30)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert await service.client.set("after", "2")
        assert await service.client.get("after") == "2"
        assert await service.client.exists("big") == 0  # the cut write was not applied
    finally:
        await service.close()
        server.destroy()
