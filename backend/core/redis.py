"""RedisService: the one connection pool of a process, JSON helpers and a health check.

Every call goes through `translate_errors()`, which turns connection failures and timeouts
into the typed `StoreUnavailable`, so callers (and the HTTP layer) never see a raw socket error
or a hang: the pool has connect/read timeouts and a small, bounded retry with backoff.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import hiredis
from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff

from backend.core import metrics
from backend.core.config import Settings
from backend.core.errors import StoreUnavailable

RedisClient = Redis | RedisCluster

UNAVAILABLE_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.RedisClusterException,
    redis_errors.BusyLoadingError,
    # Full under `maxmemory-policy noeviction` (redis/redis.conf): writes are refused until
    # memory frees up, which is a 503 to retry, not a server bug.
    redis_errors.OutOfMemoryError,
    OSError,
)


def torn_connection(exc: BaseException) -> bool:
    """An AttributeError or TypeError raised from inside redis-py's asyncio connection: a
    connection written to after it was closed under it. It happens when a peer resets a pooled
    connection (redis/redis-py#4287) and when a failover makes the cluster client close every
    connection (`aclose()` before re-reading the topology) while other tasks are mid-command
    ('NoneType' object has no attribute 'writelines'). It means "connection lost", but is not
    a ConnectionError, so neither redis-py's retries nor `translate_errors` would see it."""
    if not isinstance(exc, (AttributeError, TypeError)):
        return False
    last_redis_file = ""
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if f"{os.sep}redis{os.sep}" in filename:
            last_redis_file = filename
        tb = tb.tb_next
    return last_redis_file.endswith(os.path.join("redis", "asyncio", "connection.py"))


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        metrics.redis_error()
        raise StoreUnavailable(f"Redis unavailable: {exc}") from exc
    except (AttributeError, TypeError) as exc:
        if not torn_connection(exc):
            raise
        metrics.redis_error()
        raise StoreUnavailable(f"Redis unavailable: connection lost ({exc})") from exc


def create_redis_client(settings: Settings) -> RedisClient:
    """Build (without connecting) the pooled client described by the settings."""
    retry = Retry(EqualJitterBackoff(cap=0.5, base=0.05), settings.redis_retries)
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "retry": retry,
        "max_connections": settings.redis_max_connections,
        "health_check_interval": 30,
    }
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **common)
    pool = ConnectionPool.from_url(settings.redis_url, **common)
    pool.connection_class = with_fast_paths(pool.connection_class)
    return Redis.from_pool(pool)


class _HiredisPacking:
    """Packs commands with hiredis's C packer (mixed into a redis-py asyncio connection class).

    redis-py's sync connections use it when hiredis is installed; its asyncio connections still
    pack in Python (redis/redis-py#4176, fix pending in #4191), which costs ~20 us of client CPU
    for a 20-argument EVALSHA against ~2.5 us. The bytes on the wire are the same. Drop this
    once redis-py ships the fix.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " not in args[0]:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass  # a memoryview, or a value redis-py refuses with its own message (None)
        return super().pack_command(*args)  # type: ignore[misc,no-any-return]


class _DirectWrites:
    """Sends a command without a task of its own (mixed into a redis-py asyncio connection).

    redis-py bounds every write by `socket_timeout` with `asyncio.wait_for`, which on Python
    3.11 runs the write as a new task: one more task, and one more pass of the event loop
    before the caller goes on, per command (the writes' tasks were ~5% of a replica's py-spy
    samples at 200 chat conversations). A write only waits when the socket is backed up (what
    the transport could not send at once stays in its buffer): this writes, and bounds only
    that wait, with `asyncio.timeout`. Failures end as redis-py's own do: the connection is
    dropped and its TimeoutError or ConnectionError raised (a broken connection may instead
    show on the read of the reply, which raises the same ConnectionError). On Python 3.12+
    `wait_for` needs no task; skipping the bound when nothing waits is still cheaper.
    """

    socket_timeout: float | None
    _writer: asyncio.StreamWriter

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        connection = cast(AbstractConnection, self)
        if not connection.is_connected or not self.socket_timeout:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        if check_health:
            await connection.check_health()
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            self._writer.writelines(command)
            if self._writer.transport.get_write_buffer_size():
                async with asyncio.timeout(self.socket_timeout):
                    await self._writer.drain()
        except TimeoutError:
            await connection.disconnect(nowait=True)
            raise redis_errors.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await connection.disconnect(nowait=True)
            raise redis_errors.ConnectionError(f"Error while writing to socket. {exc}.") from exc
        except BaseException:
            # Part of the command may be out: the connection cannot be used again.
            await connection.disconnect(nowait=True)
            raise


_fast_classes: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def with_fast_paths(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` (TCP, TLS or Unix socket, as the URL chose) with `_HiredisPacking`
    and `_DirectWrites`.

    Cluster clients build their node connections themselves and keep redis-py's own.
    """
    fast = _fast_classes.get(connection_class)
    if fast is None:
        name = f"Fast{connection_class.__name__}"
        fast = type(name, (_HiredisPacking, _DirectWrites, connection_class), {})
        _fast_classes[connection_class] = fast
    return fast


class RedisService:
    def __init__(self, client: RedisClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisService:
        return cls(create_redis_client(settings))

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)

    async def close(self) -> None:
        await self.client.aclose()

    def connections_in_use(self) -> int | None:
        """Connections checked out of the pool now (None on a cluster: one pool per node)."""
        if isinstance(self.client, RedisCluster):
            return None
        pool = self.client.connection_pool
        return len(getattr(pool, "_in_use_connections", ()))

    async def ping(self) -> bool:
        with translate_errors():
            return bool(await self.client.ping())

    async def get_json(self, key: str) -> Any | None:
        with translate_errors():
            raw = await self.client.get(key)
        return None if raw is None else json.loads(raw)

    async def set_json(self, key: str, value: Any, ttl: int | None = None) -> None:
        """Store `value` as JSON; the TTL is set by the same SET command, never a second one."""
        payload = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        with translate_errors():
            await self.client.set(key, payload, ex=ttl)

    async def get(self, key: str) -> str | None:
        with translate_errors():
            raw = await self.client.get(key)
        return None if raw is None else str(raw)

    async def set_if_absent(self, key: str, value: str, ttl: int) -> bool:
        """SET NX with its TTL in the same command; whether it was set."""
        with translate_errors():
            return bool(await self.client.set(key, value, nx=True, ex=ttl))

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        with translate_errors():
            if self.is_cluster:
                # Multi-key DEL must stay in one slot on a cluster; delete one by one.
                return sum([await self.client.delete(k) for k in keys])
            return int(await self.client.delete(*keys))

    async def exists(self, *keys: str) -> int:
        with translate_errors():
            if self.is_cluster:
                return sum([await self.client.exists(k) for k in keys])
            return int(await self.client.exists(*keys))

    async def get_ttl(self, key: str) -> int | None:
        """Seconds left, or None when the key is missing or has no expiry."""
        with translate_errors():
            ttl = int(await self.client.ttl(key))
        return ttl if ttl >= 0 else None

    async def scan_keys(self, match: str, count: int = 500) -> AsyncIterator[str]:
        """Iterate keys matching a glob with SCAN (every master on a cluster). Never KEYS."""
        with translate_errors():
            async for key in self.client.scan_iter(match=match, count=count):
                yield key

    async def health_check(self) -> dict[str, Any]:
        started = time.perf_counter()
        with translate_errors():
            await self.client.ping()
            latency_ms = (time.perf_counter() - started) * 1000
            if isinstance(self.client, RedisCluster):
                per_node = await self.client.info(target_nodes=RedisCluster.PRIMARIES)
                nodes = list(per_node.values())
            else:
                nodes = [await self.client.info()]
        used = sum(int(n.get("used_memory", 0)) for n in nodes)
        return {
            "status": "ok",
            "latency_ms": round(latency_ms, 3),
            "redis_version": nodes[0].get("redis_version"),
            "used_memory": used,
            "used_memory_human": f"{used / 1024 / 1024:.2f}M",
            "maxmemory_policy": nodes[0].get("maxmemory_policy"),
            "connected_clients": sum(int(n.get("connected_clients", 0)) for n in nodes),
            "nodes": len(nodes),
        }

    # Values with an expiry listed in an index (the replicas' heartbeats, backend/ops): the
    # index is a sorted set scored by expiry, so listing is one range read, never a SCAN.
    # The value keys and their index must share a hash slot on a cluster (one hash tag).

    async def set_indexed(
        self, key: str, value: str, ttl_ms: int, index: str, member: str, expires_at: float
    ) -> None:
        """SET `key` with its TTL and list `member` in `index` until `expires_at` (epoch s)."""
        with translate_errors():
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.set(key, value, px=ttl_ms)
                pipe.zadd(index, {member: expires_at})
                await pipe.execute()

    async def unset_indexed(self, key: str, index: str, member: str) -> None:
        with translate_errors():
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.delete(key)
                pipe.zrem(index, member)
                await pipe.execute()

    async def live_indexed(self, index: str, key_of: Callable[[str], str]) -> list[str]:
        """The values of the members of `index` that have not expired (the expired ones are
        dropped from it), by member name."""
        with translate_errors():
            await self.client.zremrangebyscore(index, "-inf", time.time())
            members = sorted(str(m) for m in await self.client.zrange(index, 0, -1))
            if not members:
                return []
            values = await self.client.mget([key_of(m) for m in members])
        return [str(v) for v in values if v is not None]

    async def memory(self) -> tuple[int, int]:
        """(used_memory, maxmemory) summed over the primaries; maxmemory 0: no limit."""
        with translate_errors():
            if isinstance(self.client, RedisCluster):
                per_node = await self.client.info("memory", target_nodes=RedisCluster.PRIMARIES)
                nodes = list(per_node.values())
            else:
                nodes = [await self.client.info("memory")]
        used = sum(int(n.get("used_memory", 0)) for n in nodes)
        return used, sum(int(n.get("maxmemory", 0)) for n in nodes)
