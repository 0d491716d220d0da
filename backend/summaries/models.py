"""The per-session summary table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class SummaryRecord(SQLModel, table=True):
    __tablename__ = "summaries"  # type: ignore[assignment]

    session_id: str = Field(
        sa_column=Column(
            String(64), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
        )
    )
    tenant_id: str = Field(sa_column=Column(String(128), nullable=False, index=True))
    summary: str = Field(sa_column=Column(Text, nullable=False))
    key_points: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    sentiment: str = Field(sa_column=Column(String(16), nullable=False))
    tags: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    message_count: int
    duration_seconds: float
    method: str = Field(sa_column=Column(String(16), nullable=False))
    # The session version summarised: the daily job rebuilds only summaries that fell behind.
    session_version: int
    updated_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()"))
    )
