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
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from backend.core.errors import StoreUnavailable
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
    def __init__(self, keys: Keys, partitions: int) -> None:
        self.keys = keys
        self.partitions = partitions

    def key(self, session_id: str) -> str:
        """The notification stream of the session's partition."""
        return self.keys.notify(stream_partition(session_id, self.partitions))

    async def send(self, pipeline: Pipeline, session_id: str, fields: list[Any]) -> None:
        """Append a notification (cluster only): `fields` as the write script returned them.

        A failure is logged, not raised: the write it follows has happened, and the readers'
        sweep re-reads every open stream (see `StreamHub`).
        """
        command = ("XADD", self.key(session_id), "MAXLEN", "~", NOTIFY_MAXLEN, "*", *fields)
        try:
            await pipeline([command])
        except StoreUnavailable as exc:
            log.warning("stream notification of session %s lost (%s)", session_id, exc)


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
