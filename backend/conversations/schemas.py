"""Request and response bodies of the conversation API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr
from pydantic.config import JsonDict

from backend.core.openapi import MAX_MESSAGE_CHARS_MARK
from backend.core.text import STORABLE_NON_BLANK_PATTERN, StoredText
from backend.state.schemas import MessageOut

SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

# OpenAPI only: what the service accepts as a message text. It trims and checks the text
# itself (with clearer errors than a failed pattern): not blank, no NUL or lone surrogate, at
# most MAX_MESSAGE_CHARS (a setting: `backend.core.openapi` turns the mark into `maxLength`).
MESSAGE_TEXT_SCHEMA: JsonDict = {
    "minLength": 1,
    "pattern": STORABLE_NON_BLANK_PATTERN,
    MAX_MESSAGE_CHARS_MARK: True,
}


class PostMessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: StoredText = Field(
        description="The user's message (trimmed; empty, over MAX_MESSAGE_CHARS, or holding a "
        "NUL character or a lone surrogate is refused).",
        examples=["Fui demitido sem justa causa e não recebi as verbas rescisórias."],
        json_schema_extra=MESSAGE_TEXT_SCHEMA,
    )


class ChatRequest(PostMessageRequest):
    # The pattern on the string itself, not on the optional: only there does it reach the
    # OpenAPI schema (it is enforced either way). Its alphabet has no unstorable character.
    session_id: Annotated[StrictStr, Field(pattern=SESSION_ID_PATTERN)] | None = Field(
        default=None,
        description="Continue this session; omit to start a new one (its id comes back in the "
        "X-Session-Id header).",
    )


class GenerationInfo(BaseModel):
    reply_id: str
    in_reply_to: int
    started_at: datetime | None = None


class PostedMessage(BaseModel):
    """A stored user message; its reply follows on the session's event stream."""

    session_id: str
    message: MessageOut
    event_id: str = Field(description="Stream id of the message.created event: resume after it.")
    version: int
    events_url: str


class SessionHead(BaseModel):
    """What every view of a session shows."""

    session_id: str
    kind: str
    title: str | None
    status: str
    version: int
    message_count: int
    created_at: datetime
    updated_at: datetime
    last_event_id: str
    reply_pending: bool
    generating: GenerationInfo | None


class SessionHistory(SessionHead):
    messages: list[MessageOut] = Field(
        description="The hot window: the last MAX_CONVERSATION_HISTORY messages."
    )
    truncated: bool = Field(description="True when older messages are outside the window.")
    last_event_id: str = Field(
        description="The stream position this history covers: open the events stream with "
        "Last-Event-ID (or ?last_event_id=) set to it. Read before the messages, so an event "
        "after it may already be reflected in them (deduplicate by message seq)."
    )


class SessionInfo(SessionHead):
    messages_in_window: int
    expires_in_seconds: int | None
    stage: str | None = Field(description="The triage stage, once the orchestrator ran.")


class DeletedSessions(BaseModel):
    deleted: int
    not_durable: list[str] = Field(
        default_factory=list,
        description="Sessions left in place: PostgreSQL has not stored their latest version "
        "yet, so deleting them would lose it (DELETE of one answers 409 session_not_durable).",
    )
