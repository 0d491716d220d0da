"""Redis keys of the replica heartbeats (keys are an API: built only here).

All of them share the hash tag `{ops}`: one slot on a cluster, so a heartbeat (its key and
its entry in the index) is one pipeline and the page reads every replica with one MGET.
"""

from __future__ import annotations


class OpsKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def replicas(self) -> str:
        """Sorted set: replica id -> when its heartbeat expires (epoch seconds)."""
        return f"{self.prefix}:{{ops}}:replicas"

    def replica(self, replica_id: str) -> str:
        """The replica's last heartbeat (JSON), with a TTL."""
        return f"{self.prefix}:{{ops}}:replica:{replica_id}"
