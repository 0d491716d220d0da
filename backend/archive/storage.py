"""Cold-tier archives: one gzip-compressed JSON document per session, on a pluggable backend.

The key depends on the session id alone (`<id[:2]>/<id>.json.gz`; ids are `[A-Za-z0-9_-]`, so
no traversal), which lets a purge remove the object from every configured backend even when
its index row is gone. New archives go to ARCHIVE_BACKEND; an existing archive is read from
the backend its index row names, so switching the default strands nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from backend.archive.backends import (
    ArchiveBackend,
    ArchiveBackendError,
    ArchiveObjectMissing,
    build_backends,
)
from backend.core.config import Settings
from backend.state.keys import is_valid_session_id


@dataclass(frozen=True)
class StoredFile:
    backend: str
    key: str
    path: str
    bytes: int
    sha256: str


class ArchiveChecksumMismatch(ValueError):
    """The object does not hold the bytes the index recorded."""


def key_for(session_id: str) -> str:
    if not is_valid_session_id(session_id):
        raise ValueError(f"invalid session id: {session_id!r}")
    return f"{session_id[:2]}/{session_id}.json.gz"


class ArchiveStore:
    def __init__(self, backends: dict[str, ArchiveBackend], default: str) -> None:
        self.backends = backends
        self.default = backends[default]

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveStore:
        return cls(build_backends(settings), settings.archive_backend)

    def backend(self, name: str) -> ArchiveBackend:
        try:
            return self.backends[name]
        except KeyError:
            raise ArchiveBackendError(
                f"archive backend {name!r} is not configured in this process"
            ) from None

    async def write(self, session_id: str, document: dict[str, Any]) -> StoredFile:
        key = key_for(session_id)
        raw = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)
        payload = gzip.compress(raw.encode(), compresslevel=6, mtime=0)
        await self.default.put(key, payload)
        return StoredFile(
            self.default.name,
            key,
            self.default.location(key),
            len(payload),
            hashlib.sha256(payload).hexdigest(),
        )

    async def read(
        self,
        session_id: str,
        sha256: str | None = None,
        *,
        backend: str | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        store = self.backend(backend) if backend else self.default
        payload = await store.get(key or key_for(session_id))
        if sha256 is not None and hashlib.sha256(payload).hexdigest() != sha256:
            raise ArchiveChecksumMismatch(f"archive of {session_id} does not match its checksum")
        document: dict[str, Any] = json.loads(gzip.decompress(payload))
        return document

    async def delete(self, session_id: str) -> bool:
        """Remove the session's archive from every configured backend; True if one held it."""
        key = key_for(session_id)
        found = False
        for backend in self.backends.values():
            found = await backend.delete(key) or found
        return found

    async def delete_object(self, backend: str, key: str) -> bool:
        return await self.backend(backend).delete(key)

    async def exists(self, session_id: str, backend: str | None = None) -> bool:
        store = self.backend(backend) if backend else self.default
        try:
            await store.get(key_for(session_id))
        except ArchiveObjectMissing:
            return False
        return True
