"""An S3-compatible server for the cold tier: moto's server mode on a free loopback port.

No real S3 can run here; moto speaks the S3 wire protocol over HTTP, so the archive's real
client (obstore) talks to it exactly as to MinIO or AWS. One server per test, stopped after.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from backend.core.config import Settings
from tests.conftest import make_settings
from tests.redis_cluster import free_port


@dataclass
class S3Server:
    url: str
    bucket: str
    client: Any  # a boto3 S3 client: the test's own view of the bucket

    def keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket)
        return [o["Key"] for o in listing.get("Contents", [])]

    def reset(self) -> None:
        """Wipe the server (the bucket included), the way losing the bucket would."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    # The standard AWS variables are how the service gets credentials; moto accepts any.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        bucket = f"archive-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        yield S3Server(url, bucket, client)
    finally:
        server.stop()


def s3_settings(s3: S3Server, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "archive_dir": str(tmp_path / "archive"),
        "archive_backend": "s3",
        "archive_s3_bucket": s3.bucket,
        "archive_s3_prefix": "cold",
        "archive_s3_endpoint_url": s3.url,
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
def settings(s3: S3Server, tmp_path: Path) -> Settings:
    return s3_settings(s3, tmp_path)
