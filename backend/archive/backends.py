"""Where archive objects live: one small interface, a local directory and S3-compatible storage.

A backend stores opaque bytes under a key (`<id[:2]>/<id>.json.gz`); encoding, checksums and
the index are the archive store's business. Both writes are atomic, so no half-written archive
can ever be indexed: the local backend writes a temporary file, fsyncs it and renames it; an
S3 PUT of a whole object is atomic by the protocol (the object appears complete or not at all).

The S3 backend uses obstore (Rust `object_store` bindings): native asyncio without a thread per
call, one small wheel with no botocore, and the same client speaks to AWS, MinIO, Ceph and R2.
Credentials and region come from the standard AWS_* variables (read by obstore itself).
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import obstore
from obstore.store import S3Store

from backend.core.config import Settings


class ArchiveObjectMissing(Exception):
    """No object under the key: deleted or lost outside the service."""


class ArchiveBackendError(Exception):
    """The backend could not be reached or refused the operation."""


class ArchiveBackend(Protocol):
    name: str

    def location(self, key: str) -> str:
        """Where the object is, for people: a path or an s3:// URL."""
        ...

    async def put(self, key: str, payload: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> bool:
        """Remove the object; False when there was none."""
        ...


class LocalBackend:
    name = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def location(self, key: str) -> str:
        return str(self.root / key)

    async def put(self, key: str, payload: bytes) -> None:
        await asyncio.to_thread(self._put, key, payload)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread((self.root / key).read_bytes)
        except FileNotFoundError as exc:
            raise ArchiveObjectMissing(self.location(key)) from exc
        except OSError as exc:
            raise ArchiveBackendError(f"{self.location(key)}: {exc}") from exc

    async def delete(self, key: str) -> bool:
        try:
            await asyncio.to_thread((self.root / key).unlink)
        except FileNotFoundError:
            return False
        return True

    def _put(self, key: str, payload: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class S3Backend:
    name = "s3"

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str = "") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        options: dict[str, object] = {}
        if endpoint_url:
            options["endpoint"] = endpoint_url
        self.store = S3Store(
            bucket,
            prefix=self.prefix or None,
            # MinIO or Ceph inside a private network often speak plain HTTP.
            client_options={"allow_http": endpoint_url.startswith("http://")},
            # Fail a task within seconds rather than obstore's default of minutes: the beat
            # runs the archive pass again, and an unreachable store must not hold a batch's
            # row locks for long.
            retry_config={
                "max_retries": 3,
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=2),
                    "base": 2,
                },
                "retry_timeout": timedelta(seconds=20),
            },
            **options,  # type: ignore[arg-type]
        )

    def location(self, key: str) -> str:
        return (
            f"s3://{self.bucket}/{self.prefix}/{key}"
            if self.prefix
            else f"s3://{self.bucket}/{key}"
        )

    async def put(self, key: str, payload: bytes) -> None:
        try:
            await obstore.put_async(self.store, key, payload)
        except Exception as exc:  # obstore raises its own BaseError and OSError subclasses
            raise ArchiveBackendError(f"{self.location(key)}: {exc}") from exc

    async def get(self, key: str) -> bytes:
        try:
            result = await obstore.get_async(self.store, key)
            return bytes(await result.bytes_async())
        except FileNotFoundError as exc:
            raise ArchiveObjectMissing(self.location(key)) from exc
        except Exception as exc:
            raise ArchiveBackendError(f"{self.location(key)}: {exc}") from exc

    async def delete(self, key: str) -> bool:
        # S3 answers a DELETE of a missing key with success; ask first to report honestly.
        try:
            await obstore.head_async(self.store, key)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise ArchiveBackendError(f"{self.location(key)}: {exc}") from exc
        try:
            await obstore.delete_async(self.store, key)
        except Exception as exc:
            raise ArchiveBackendError(f"{self.location(key)}: {exc}") from exc
        return True


def build_backends(settings: Settings) -> dict[str, ArchiveBackend]:
    """Every backend this process can read: the local directory always, S3 when configured."""
    backends: dict[str, ArchiveBackend] = {"local": LocalBackend(settings.archive_dir)}
    if settings.archive_s3_bucket:
        backends["s3"] = S3Backend(
            settings.archive_s3_bucket,
            settings.archive_s3_prefix,
            settings.archive_s3_endpoint_url,
        )
    return backends
