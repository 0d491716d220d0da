"""ARCHIVE_BACKEND=s3 without a bucket is refused at start-up, not at the first archive pass."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.conftest import make_settings


def test_s3_backend_without_a_bucket_is_refused() -> None:
    with pytest.raises(ValidationError, match="ARCHIVE_S3_BUCKET"):
        make_settings(archive_backend="s3")


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValidationError, match="archive_backend"):
        make_settings(archive_backend="ftp")
