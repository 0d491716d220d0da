"""Redis keys of the streaming layer. Keys are an API: build them only here.

Per-session keys (state, events, lease) come from `backend.state.keys.Keys`; these are the
cross-session ones, each in its own slot on a cluster.
"""

from __future__ import annotations

import re

_REPLICA = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StreamKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def reader_wake(self, replica_id: str, reader: int) -> str:
        """A tiny stream a replica's tailer adds to its own blocking read, to wake it up."""
        if not _REPLICA.match(replica_id):
            raise ValueError(f"invalid replica id: {replica_id!r}")
        return f"{self.prefix}:tail:{replica_id}:{reader}:wake"
