"""Replicated state writes: STATE_WRITE_REPLICAS replicas hold a write before it is acknowledged.

Why it looks like this:

* Redis replication is asynchronous: a master acknowledges a write before its replicas have it,
  so a master that dies can take its last acknowledged writes along into the failover. Redis's
  `WAIT numreplicas timeout` blocks until that many replicas confirm every write the master
  took from the same connection, which closes that window for the writes that wait.
* WAIT counts the writes of its own connection only, so it goes in the same round trip right
  after the write: on a single node in the write's (auto)pipeline, on a cluster in a pipeline
  whose WAIT is sent to the node that owns the session's slot, on the same connection as the
  session's script. Commands for other slots in that pipeline (the user's index, the dirty and
  due sets) are not covered: they live on other masters and can be rebuilt from the sessions.
* Too few replicas in time is not an acknowledgement: `StateNotReplicated` (503
  state_not_replicated). The write is on the master and may survive a failover or not; the
  write's Idempotency-Key record rides in the same script, so a retry with the same key either
  finds it (and is answered from it) or writes it once.
* Answering from such a record (a replay) must not acknowledge a write replicas do not hold
  either: `confirm` slides the session's TTL (a write, so WAIT then covers everything the
  master took before it, the first write included) and waits again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import RedisCluster

from backend.core import metrics
from backend.core.autopipeline import AutoPipeline, Command
from backend.core.config import Settings
from backend.core.errors import StateNotReplicated
from backend.core.redis import RedisClient, translate_errors

log = logging.getLogger(__name__)


class ReplicaWait:
    """STATE_WRITE_REPLICAS for one StateStore: sends writes with their WAIT, judges its count."""

    def __init__(self, client: RedisClient, settings: Settings, autopipe: AutoPipeline) -> None:
        self.replicas = settings.state_write_replicas
        self.timeout_ms = settings.state_write_replicas_timeout_ms
        self._client = client
        self._autopipe = autopipe
        self._wait: Command = ("WAIT", self.replicas, self.timeout_ms)

    @property
    def enabled(self) -> bool:
        return self.replicas > 0

    def sender(self, key: str) -> WaitedSend:
        """Sends a write's commands followed by WAIT on the connection that carries `key`'s."""
        return WaitedSend(self, key)

    def require(self, acked: int | None, session_id: str) -> None:
        """Raise `StateNotReplicated` unless `acked` replicas hold the session's write (None:
        nothing was asked of them)."""
        if acked is None or acked >= self.replicas:
            return
        metrics.state_not_replicated()
        log.warning(
            "state write of session %s reached %d of %d replicas in %d ms: not acknowledged",
            session_id,
            acked,
            self.replicas,
            self.timeout_ms,
        )
        raise StateNotReplicated(
            f"the write reached {acked} of {self.replicas} replicas in time; retry with the "
            "same Idempotency-Key",
            retry_after=1,
        )

    async def confirm(self, key: str, ttl: int, session_id: str) -> None:
        """Before answering from a stored write (a replay): replicas hold it (see module doc).

        `key` is the session's state hash, `ttl` its TTL: sliding it is what every write does.
        """
        if not self.enabled:
            return
        send = self.sender(key)
        (reply,) = await send([("EXPIRE", key, ttl)])
        if isinstance(reply, Exception):
            with translate_errors():
                raise reply
        self.require(send.acked, session_id)

    async def send(self, commands: Sequence[Command], key: str) -> list[Any]:
        """`commands`, then WAIT on the connection that carried `key`'s: their replies, WAIT's
        count last."""
        if not isinstance(self._client, RedisCluster):
            return await self._autopipe.execute([*commands, self._wait])
        with translate_errors():
            # A pipeline of our own: the AutoPipeline has no way to aim a keyless command at a
            # node. The cluster pipeline sends each node's commands in order on one connection.
            # If redis-py retries it (a connection lost mid-failover), it has dropped WAIT's
            # target by then and refuses the retry before sending anything: the caller gets a
            # 503 to retry, never an acknowledgement WAIT did not give.
            await self._client.initialize()  # a no-op unless the topology must be read again
            node = self._client.get_node_from_key(key)
            pipe = self._client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            pipe.execute_command(*self._wait, target_nodes=node)
            return list(await pipe.execute(raise_on_error=False))


class WaitedSend:
    """One write's sender (see `StateStore._pipeline`): after each call `acked` holds how many
    replicas WAIT counted."""

    def __init__(self, wait: ReplicaWait, key: str) -> None:
        self._wait = wait
        self._key = key
        self.acked = 0

    async def __call__(self, commands: Sequence[Command]) -> list[Any]:
        *replies, acked = await self._wait.send(commands, self._key)
        if isinstance(acked, Exception):
            with translate_errors():
                raise acked
        self.acked = int(acked)
        return replies
