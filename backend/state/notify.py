"""Stream notifications: what wakes the replicas' stream readers when a session stream grows.

Every event appended to a session's stream also appends the session id to the notification
stream of its partition (`Keys.notify`); a replica reads the partitions, not the sessions'
streams, so its blocking reads grow with the partitions and never with the streamed sessions
(see `backend.streaming.hub`). The notification only wakes a reader: the events themselves
are still read from the session's own stream, after the reader's cursor.

On a single node the write scripts append it themselves (no extra command or round trip). On
a cluster the partition's stream is in another slot, so it is sent once the script has
answered: in one pipeline the two commands would go to two nodes at once, and the
notification could overtake the event it announces.

A session whose keys are deleted (DELETE, purge, eviction) gets one more notification, with
field `gone` = "1": the replicas end its open streams at once instead of finding out at their
sweep (an idle stream is not looked at in between, see `backend.streaming.hub`). It follows
the delete the same way: in the same script or transaction on a single node, after it on a
cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from backend.core.errors import StoreUnavailable
from backend.core.redis import RedisClient, translate_errors
from backend.state.keys import Keys, stream_partition

log = logging.getLogger(__name__)

# Notifications kept per partition: a reader takes up to this many per read, so only one
# stalled that far behind loses some (and its sweep catches up).
NOTIFY_MAXLEN = 1_000

Pipeline = Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]]


class StreamNotifier:
    def __init__(self, keys: Keys, partitions: int, single_node: bool) -> None:
        self.keys = keys
        self.partitions = partitions
        self.single_node = single_node

    def key(self, session_id: str) -> str:
        """The notification stream of the session's partition."""
        return self.keys.notify(stream_partition(session_id, self.partitions))

    def command(self, session_id: str, *, gone: bool = False) -> tuple[Any, ...]:
        """The XADD of the session's notification (`gone`: its keys were deleted)."""
        command = ("XADD", self.key(session_id), "MAXLEN", "~", NOTIFY_MAXLEN, "*", "s", session_id)
        return (*command, "gone", "1") if gone else command

    async def send(self, pipeline: Pipeline, session_id: str, *, gone: bool = False) -> None:
        """Append the session to its partition's notification stream (cluster only).

        A failure is logged, not raised: the write it follows has happened, and the readers'
        sweep re-reads (and re-checks) every open stream (see `StreamHub`).
        """
        command = self.command(session_id, gone=gone)
        try:
            await pipeline([command])
        except StoreUnavailable as exc:
            log.warning("stream notification of session %s lost (%s)", session_id, exc)

    async def delete(
        self, client: RedisClient, pipeline: Pipeline, session_id: str, keys: list[str]
    ) -> int:
        """DEL some of the session's keys (one slot) and send its `gone` notification: in one
        transaction on a single node, right after on a cluster. Returns how many existed."""
        with translate_errors():
            if self.single_node:
                pipe = client.pipeline(transaction=True)
                pipe.delete(*keys)
                pipe.execute_command(*self.command(session_id, gone=True))
                removed, _ = await pipe.execute()
                return int(removed)
            removed = await client.delete(*keys)
        await self.send(pipeline, session_id, gone=True)
        return int(removed)

    def in_script(self, session_id: str) -> tuple[list[str], list[Any]]:
        """For a script that deletes the session's keys: the key and arguments of its `gone`
        notification (the partition stream; the session id, MAXLEN), on a single node only.
        Empty on a cluster, where the caller `send`s it after the script."""
        if not self.single_node:
            return [], []
        return [self.key(session_id)], [session_id, NOTIFY_MAXLEN]
