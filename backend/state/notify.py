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
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from backend.core.errors import StoreUnavailable
from backend.state.keys import Keys, stream_partition

log = logging.getLogger(__name__)

# Notifications kept per partition: a reader takes up to this many per read, so only one
# stalled that far behind loses some (and its sweep catches up).
NOTIFY_MAXLEN = 1_000

Pipeline = Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]]


class StreamNotifier:
    def __init__(self, keys: Keys, partitions: int) -> None:
        self.keys = keys
        self.partitions = partitions

    def key(self, session_id: str) -> str:
        """The notification stream of the session's partition."""
        return self.keys.notify(stream_partition(session_id, self.partitions))

    async def send(self, pipeline: Pipeline, session_id: str) -> None:
        """Append the session to its partition's notification stream (cluster only).

        A failure is logged, not raised: the write it follows has happened, and the readers'
        sweep re-reads every open stream (see `StreamHub`).
        """
        command = ("XADD", self.key(session_id), "MAXLEN", "~", NOTIFY_MAXLEN, "*", "s", session_id)
        try:
            await pipeline([command])
        except StoreUnavailable as exc:
            log.warning("stream notification of session %s lost (%s)", session_id, exc)
