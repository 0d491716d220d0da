"""Redis key layout. Keys are an API: build them only here.

All keys of one session share the hash tag `{<session_id>}`, so every Lua script touches a
single slot and runs unchanged on Redis Cluster. Cross-session structures (a user's index, the
dirty set) live in their own slots and are always rebuildable from the sessions themselves.
"""

from __future__ import annotations

import re
import zlib

from backend.core.ids import is_valid_principal_id

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_valid_session_id(session_id: str) -> bool:
    return bool(_SESSION_ID.match(session_id))


def stream_partition(session_id: str, partitions: int) -> int:
    """The notification partition of a session: a hash that is the same in every process
    (Python's `hash()` of a str is salted per process)."""
    return zlib.crc32(session_id.encode()) % partitions


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _session(self, session_id: str, part: str) -> str:
        if not is_valid_session_id(session_id):
            raise ValueError(f"invalid session id: {session_id!r}")
        return f"{self.prefix}:s:{{{session_id}}}:{part}"

    def conversation(self, session_id: str) -> str:
        return self._session(session_id, "conv")

    def orchestration(self, session_id: str) -> str:
        return self._session(session_id, "orch")

    def events(self, session_id: str) -> str:
        return self._session(session_id, "events")

    def lease(self, session_id: str) -> str:
        return self._session(session_id, "lease")

    def idempotency(self, session_id: str) -> tuple[str, str]:
        """The session's Idempotency-Key records: the current hash and the previous one (a
        full hash is renamed to the previous, so a session keeps its newest records only)."""
        return self._session(session_id, "idem"), self._session(session_id, "idem:old")

    def state_keys(self, session_id: str) -> tuple[str, str, str, str, str]:
        """The conversation hash, the orchestration hash, the event stream and the two
        idempotency hashes (one check of the id for all: this is on every state write)."""
        if not is_valid_session_id(session_id):
            raise ValueError(f"invalid session id: {session_id!r}")
        base = f"{self.prefix}:s:{{{session_id}}}:"
        return f"{base}conv", f"{base}orch", f"{base}events", f"{base}idem", f"{base}idem:old"

    def session_keys(self, session_id: str) -> list[str]:
        return [
            self.conversation(session_id),
            self.orchestration(session_id),
            self.events(session_id),
            self.lease(session_id),
        ]

    def replies_due(self) -> str:
        """Sorted set: sessions that owe a reply, scored by when to check on them (unix s).

        Kept by the state writes themselves (see `StateStore._write`), so a
        session that owes a reply is in it whatever fails afterwards.
        """
        return f"{self.prefix}:replies:due"

    def user_index(self, tenant_id: str, user_id: str) -> str:
        if not (is_valid_principal_id(tenant_id) and is_valid_principal_id(user_id)):
            raise ValueError(f"invalid tenant or user id: {tenant_id!r}, {user_id!r}")
        return f"{self.prefix}:idx:{{t:{tenant_id}:u:{user_id}}}:sessions"

    def notify(self, partition: int) -> str:
        """Stream of the ids of sessions whose event stream grew, one per partition (see
        `stream_partition`): what wakes the replicas' stream readers. Each partition has its
        own hash tag, so the partitions spread over a cluster's nodes."""
        return f"{self.prefix}:notify:{{p{partition}}}"

    def dirty(self) -> str:
        return f"{self.prefix}:dirty"

    def refused(self) -> str:
        """Hash: session id -> why PostgreSQL (or the snapshot reader) refused it, as JSON."""
        return f"{self.prefix}:refused"

    def conversation_pattern(self) -> str:
        return f"{self.prefix}:s:*:conv"

    def orchestration_pattern(self) -> str:
        return f"{self.prefix}:s:*:orch"

    def session_id_from_key(self, key: str) -> str:
        start, end = key.index("{") + 1, key.index("}")
        return key[start:end]
