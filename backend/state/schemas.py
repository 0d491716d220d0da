"""State documents kept in Redis. Every document carries `schema_version` and `version`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

SCHEMA_VERSION = 1

# How far past MAX_CONVERSATION_HISTORY the hot window may grow with messages PostgreSQL does
# not hold yet (snapshot workers down or behind), before memory wins over durability.
UNSNAPSHOTTED_WINDOW_FACTOR = 10

Role = Literal["user", "assistant", "system"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seq: int = Field(ge=1)
    role: Role
    content: str
    created_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)


class _StateDocument(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=False)

    schema_version: int = SCHEMA_VERSION
    version: int = Field(default=0, ge=0)
    session_id: str
    user_id: str
    tenant_id: str
    status: str = "active"
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    data: dict[str, Any] = Field(default_factory=dict)


class ConversationState(_StateDocument):
    """One conversation: the hot window of its messages and what the interviewer collected.

    `messages` keeps only the last MAX_CONVERSATION_HISTORY messages; `message_count` counts
    every message ever appended, so sequence numbers keep counting past the window.
    """

    kind: Literal["conversation", "triage"] = "conversation"
    title: str | None = None
    language: str = "pt-BR"
    message_count: int = Field(default=0, ge=0)
    messages: list[Message] = Field(default_factory=list)
    # The highest sequence PostgreSQL is known to hold (from the state hash's `durable_seq`,
    # set by the snapshot worker; not part of the document). The window never drops a
    # message above it, up to UNSNAPSHOTTED_WINDOW_FACTOR x the window.
    _durable_seq: int = PrivateAttr(default=0)

    def append_message(
        self,
        role: Role,
        content: str,
        *,
        max_history: int,
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        self.message_count += 1
        message = Message(
            seq=self.message_count, role=role, content=content, metadata=metadata or {}
        )
        self.messages.append(message)
        self.trim_window(max_history)
        self.updated_at = message.created_at
        if self.title is None and role == "user":
            self.title = content.strip()[:80] or None
        return message

    def trim_window(self, max_history: int) -> int:
        """Keep the last `max_history` messages, but never drop one not yet snapshotted
        (until the hard cap). Returns how many unsnapshotted messages had to go (normally 0).
        """
        excess = len(self.messages) - max_history
        if excess <= 0:
            return 0
        durable = sum(1 for m in self.messages[:excess] if m.seq <= self._durable_seq)
        over_cap = len(self.messages) - max_history * UNSNAPSHOTTED_WINDOW_FACTOR
        drop = max(durable, over_cap)
        del self.messages[:drop]
        return max(0, drop - durable)

    @property
    def durable_seq(self) -> int:
        return self._durable_seq

    def set_durable_seq(self, seq: int) -> None:
        self._durable_seq = seq

    def __eq__(self, other: object) -> bool:
        # Two states are equal when their documents are: what a reader last learnt about
        # durability (`_durable_seq`) is not part of the document.
        if not isinstance(other, ConversationState):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]


class OrchestrationState(_StateDocument):
    """Where the triage orchestrator stands for one session, and its result once triaged."""

    stage: str = "interviewing"
    triage_result: dict[str, Any] | None = None


StateDocument = ConversationState | OrchestrationState


class Event(BaseModel):
    """An event appended to a session's stream (and sent to SSE clients as-is)."""

    type: str
    data: dict[str, Any] = Field(default_factory=dict)


class StreamEntry(BaseModel):
    id: str
    type: str
    version: int
    data: dict[str, Any]


class SessionSummary(BaseModel):
    """What a session list shows; read from the state hash's flat fields, not the document."""

    session_id: str
    kind: str
    status: str
    title: str | None
    message_count: int
    version: int
    updated_at: datetime


class SessionPage(BaseModel):
    items: list[SessionSummary]
    total: int
    offset: int
    limit: int
