"""Warm-tier tables: every session, every message, orchestrations with their triage results.

A session row holds the state document *without* its messages (those are rows of `messages`,
keyed by (session, sequence)), so one message is stored once whatever the hot window holds.
`version` is the state version copied from Redis: a snapshot upserts a row only when it
carries a higher version (invariant 6).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _ts(nullable: bool = False, **kwargs: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), nullable=nullable, **kwargs))


def _session_fk(primary_key: bool = False) -> Any:
    return Field(
        sa_column=Column(
            String(64),
            ForeignKey("sessions.id", ondelete="CASCADE"),
            primary_key=primary_key,
            nullable=False,
        )
    )


class SessionRecord(SQLModel, table=True):
    __tablename__ = "sessions"  # type: ignore[assignment]
    __table_args__ = (
        # A user's sessions by recency; a tenant's sessions by activity and by creation.
        Index("ix_sessions_user_recent", "tenant_id", "user_id", text("updated_at DESC")),
        # INCLUDE created_at: the stats query (active, new, mean duration) is index-only.
        Index(
            "ix_sessions_tenant_updated",
            "tenant_id",
            "updated_at",
            postgresql_include=["created_at"],
        ),
        Index("ix_sessions_tenant_created", "tenant_id", "created_at"),
        # The sweeps: expiry (retention) and archiving of inactive, not yet archived sessions.
        Index("ix_sessions_expires", "expires_at"),
        Index(
            "ix_sessions_archive_sweep", "updated_at", postgresql_where=text("archived_at IS NULL")
        ),
    )

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    user_id: str = Field(sa_column=Column(String(128), nullable=False))
    tenant_id: str = Field(sa_column=Column(String(128), nullable=False))
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    title: str | None = Field(default=None, sa_column=Column(Text))
    version: int
    message_count: int
    state: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    expires_at: datetime = _ts()
    snapshotted_at: datetime = _ts(server_default=text("now()"))
    # DELETE marks a session inactive (history kept); the archive sweep marks it archived.
    inactive_at: datetime | None = _ts(nullable=True)
    archived_at: datetime | None = _ts(nullable=True)


class MessageRecord(SQLModel, table=True):
    """One message of a session, keyed by (session, sequence).

    No foreign key to `sessions`, on purpose: checking it per row cost about 40% of the
    batched snapshot insert. The snapshot writes the session row in the same transaction as
    its messages, and purge/archive delete message rows explicitly.
    """

    __tablename__ = "messages"  # type: ignore[assignment]
    __table_args__ = (Index("ix_messages_tenant_time", "tenant_id", "created_at"),)

    session_id: str = Field(sa_column=Column(String(64), primary_key=True))
    seq: int = Field(primary_key=True)
    tenant_id: str = Field(sa_column=Column(String(128), nullable=False))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    content: str = Field(sa_column=Column(Text, nullable=False))
    # `metadata` is reserved on declarative classes: the attribute is `meta`, the column not.
    meta: dict[str, Any] = Field(
        sa_column=Column("metadata", JSONB, nullable=False, server_default=text("'{}'"))
    )
    created_at: datetime = _ts()


class OrchestrationRecord(SQLModel, table=True):
    __tablename__ = "orchestrations"  # type: ignore[assignment]
    __table_args__ = (Index("ix_orchestrations_tenant_triaged", "tenant_id", "triaged_at"),)

    session_id: str = _session_fk(primary_key=True)
    tenant_id: str = Field(sa_column=Column(String(128), nullable=False))
    version: int
    stage: str = Field(sa_column=Column(String(64), nullable=False))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    state: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    # The triage result, and flat copies of what stats group by.
    triage_result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    area: str | None = Field(default=None, sa_column=Column(String(64)))
    urgency: str | None = Field(default=None, sa_column=Column(String(32)))
    triaged_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class PurgedSession(SQLModel, table=True):
    """Tombstones: a snapshot already in flight when a session is purged must not resurrect it.

    Only the (random) session id is kept, for `PURGE_TOMBSTONE_DAYS`.
    """

    __tablename__ = "purged_sessions"  # type: ignore[assignment]

    session_id: str = Field(sa_column=Column(String(64), primary_key=True))
    purged_at: datetime = _ts(server_default=text("now()"), index=True)
