"""Stream notifications: what wakes the replicas' stream readers when a session stream grows.

Every write that appends events to a session's stream also appends one notification to the
stream of the session's partition (`Keys.notify`); a replica reads the partitions, not the
sessions' streams, so its blocking reads grow with the partitions and never with the streamed
sessions (see `backend.streaming.hub`).

A notification's fields: `s`, the session id; one field per event the write appended, named
by its stream id; and, when the write knew which entry of the session's stream its events
follow (`p`, kept in the conversation hash as `last` by the write scripts) and they are small
enough (`NOTIFY_INLINE_BYTES`), the events themselves as those fields' values (else empty). A
reader whose cursor is at `p` (or at one of those events) delivers them without reading the
session's stream: one read per wake-up instead of two. Any other case (no `p`, a reader
elsewhere) only wakes: the reader reads the session's stream after its cursor, which stays the
truth for resuming. A notification with no event at all (e.g. a deleted session's) also means
"read that session's stream".

On a single node the write scripts append it themselves (no extra command or round trip). On
a cluster the partition's stream is in another slot, so it is sent once the script has
answered, with the fields the script returned: in one pipeline the two commands would go to
two nodes at once, and the notification could overtake the event it announces.

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
from backend.state.schemas import StreamEntry

log = logging.getLogger(__name__)

# Notifications kept per partition: a reader takes up to this many per read, so only one
# stalled that far behind loses some (and its sweep catches up).
NOTIFY_MAXLEN = 1_000
# Event data a notification carries at most (a write's events together): a partition keeps
# NOTIFY_MAXLEN notifications, so this bounds it to a few MB; larger writes only wake.
NOTIFY_INLINE_BYTES = 4_096

Pipeline = Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]]


class StreamNotifier:
    def __init__(self, keys: Keys, partitions: int, single_node: bool) -> None:
        self.keys = keys
        self.partitions = partitions
        self.single_node = single_node

    def key(self, session_id: str) -> str:
        """The notification stream of the session's partition."""
        return self.keys.notify(stream_partition(session_id, self.partitions))

    def command(
        self, session_id: str, fields: list[Any] | None = None, *, gone: bool = False
    ) -> tuple[Any, ...]:
        """The XADD of a session's notification: `fields` as a write script returned them, or
        the `gone` one (its keys were deleted)."""
        if gone:
            fields = ["s", session_id, "gone", "1"]
        body = fields if fields is not None else ["s", session_id]
        return ("XADD", self.key(session_id), "MAXLEN", "~", NOTIFY_MAXLEN, "*", *body)

    async def send(
        self,
        pipeline: Pipeline,
        session_id: str,
        fields: list[Any] | None = None,
        *,
        gone: bool = False,
    ) -> None:
        """Append a notification (cluster only): `fields` as the write script returned them,
        or the `gone` one.

        A failure is logged, not raised: the write it follows has happened, and the readers'
        sweep re-reads (and re-checks) every open stream (see `StreamHub`).
        """
        command = self.command(session_id, fields, gone=gone)
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


class Notification:
    """A notification as a reader gets it: the session, the id of the last event the write
    appended (None when it names none), and what `events()` parses."""

    __slots__ = ("_fields", "_ids", "last", "session_id")

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields
        self.session_id = fields.get("s")
        self._ids = [name for name in fields if name[:1].isdigit()]  # stream ids: the events
        self.last = self._ids[-1] if self._ids else None

    def events(self) -> tuple[str, list[StreamEntry]] | None:
        """The id of the entry the events follow and the events, when the notification carries
        them; None when the session's stream must be read instead."""
        prev = self._fields.get("p")
        if prev is None or not self._ids:
            return None
        try:
            entries = []
            for name in self._ids:
                type_, version, data = self._fields[name].split("\n", 2)
                fields_of = {"type": type_, "version": version, "data": data}
                entries.append(StreamEntry.from_redis(name, fields_of))
        except ValueError:  # not carried, or not written by this code: read the stream
            return None
        return prev, entries
