"""Cold-tier files: one gzip-compressed JSON document per session under ARCHIVE_DIR.

The path depends on the session id alone (ids are `[A-Za-z0-9_-]`, so no traversal), which lets
a purge remove the file even when its index row is gone. Writes go to a temporary file that is
fsynced and renamed, so a crash never leaves a half-written archive under the real name.
With several worker hosts, ARCHIVE_DIR must be shared storage (NFS, a mounted bucket).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.state.keys import is_valid_session_id


@dataclass(frozen=True)
class StoredFile:
    path: str
    bytes: int
    sha256: str


class ArchiveStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, session_id: str) -> Path:
        if not is_valid_session_id(session_id):
            raise ValueError(f"invalid session id: {session_id!r}")
        return self.root / session_id[:2] / f"{session_id}.json.gz"

    async def write(self, session_id: str, document: dict[str, Any]) -> StoredFile:
        return await asyncio.to_thread(self._write, session_id, document)

    async def read(self, session_id: str, sha256: str | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self._read, session_id, sha256)

    async def delete(self, session_id: str) -> bool:
        return await asyncio.to_thread(self._delete, session_id)

    async def exists(self, session_id: str) -> bool:
        return await asyncio.to_thread(self.path_for(session_id).exists)

    def _write(self, session_id: str, document: dict[str, Any]) -> StoredFile:
        path = self.path_for(session_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)
        payload = gzip.compress(raw.encode(), compresslevel=6, mtime=0)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return StoredFile(str(path), len(payload), hashlib.sha256(payload).hexdigest())

    def _read(self, session_id: str, sha256: str | None) -> dict[str, Any]:
        payload = self.path_for(session_id).read_bytes()
        if sha256 is not None and hashlib.sha256(payload).hexdigest() != sha256:
            raise ValueError(f"archive of {session_id} does not match its checksum")
        document: dict[str, Any] = json.loads(gzip.decompress(payload))
        return document

    def _delete(self, session_id: str) -> bool:
        try:
            self.path_for(session_id).unlink()
        except FileNotFoundError:
            return False
        return True
