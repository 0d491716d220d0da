"""The cold-tier index: which sessions are archived, on which backend, under which key.

`path` is the human-readable location (a file path or an s3:// URL) for operators; reading goes
by `backend` and `key` alone.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, String, Text
from sqlmodel import Field, SQLModel


class ArchiveRecord(SQLModel, table=True):
    __tablename__ = "archives"  # type: ignore[assignment]

    session_id: str = Field(
        sa_column=Column(
            String(64), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
        )
    )
    tenant_id: str = Field(sa_column=Column(String(128), nullable=False, index=True))
    path: str = Field(sa_column=Column(Text, nullable=False))
    # Rows from before object storage existed are local files (migration 0002).
    backend: str = Field(sa_column=Column(String(16), nullable=False, server_default="local"))
    key: str = Field(sa_column=Column(Text, nullable=False))
    version: int
    message_count: int
    bytes: int
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    archived_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
