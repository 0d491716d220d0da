"""The stats rollup: messages per (tenant, UTC day, session), kept by the snapshot writer.

The stats query reads this instead of counting message rows: a tenant with a million messages
is a few thousand rollup rows. It is maintained from the message rows a snapshot actually
inserted (INSERT ... RETURNING), so redelivered snapshots never count twice.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Column, Date, ForeignKey, Index, String
from sqlmodel import Field, SQLModel


class SessionDailyActivity(SQLModel, table=True):
    __tablename__ = "session_daily_activity"  # type: ignore[assignment]
    __table_args__ = (Index("ix_session_daily_activity_session", "session_id"),)

    tenant_id: str = Field(sa_column=Column(String(128), primary_key=True))
    day: date = Field(sa_column=Column(Date, primary_key=True))
    session_id: str = Field(
        sa_column=Column(
            String(64), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
        )
    )
    messages: int
