"""State documents kept in Redis. Every document carries `schema_version` and `version`.

The documents are msgspec Structs, not pydantic models: every state read decodes a whole
document and every write encodes one, and msgspec does both several times faster (a 100-message
conversation decodes in ~30 us instead of ~110 us and encodes in ~8 us instead of ~50 us on
the development machine). The JSON is the same, byte for byte, so documents written by either
read back.
Types and constraints are checked when a document is decoded or converted (`decode_state`,
`convert_state`); constructing one in code is trusted like any other object.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, TypeVar, cast

import msgspec
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

# How far past MAX_CONVERSATION_HISTORY the hot window may grow with messages PostgreSQL does
# not hold yet (snapshot workers down or behind), before memory wins over durability.
UNSNAPSHOTTED_WINDOW_FACTOR = 10

Role = Literal["user", "assistant", "system"]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


def utcnow() -> datetime:
    return datetime.now(UTC)


# frozen: once appended a message never changes, so decoded messages can be shared (see
# backend/state/decoded.py); its metadata holds JSON values and is not changed in place either.
# gc=False: a message holds plain JSON data and is never part of a reference cycle, so the
# cycle collector need not track the hundred of them every decoded conversation creates.
class Message(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    seq: Annotated[int, msgspec.Meta(ge=1)]
    role: Role
    content: str
    created_at: datetime = msgspec.field(default_factory=utcnow)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


# dict=True lets a document carry run-time facts that are not part of it (`_durable_seq`).
class _StateDocument(msgspec.Struct, kw_only=True, dict=True):
    schema_version: int = SCHEMA_VERSION
    version: NonNegative = 0
    session_id: str
    user_id: str
    tenant_id: str
    status: str = "active"
    created_at: datetime = msgspec.field(default_factory=utcnow)
    updated_at: datetime = msgspec.field(default_factory=utcnow)
    data: dict[str, Any] = msgspec.field(default_factory=dict)

    def copy(self, **changes: Any) -> Self:
        """A shallow copy with `changes` applied; run-time facts (`durable_seq`) carry over."""
        copied = msgspec.structs.replace(self, **changes)
        copied.__dict__.update(self.__dict__)
        return copied

    def with_version(self, version: int) -> Self:
        """What a successful write returns: a shallow copy at `version`."""
        return self.copy(version=version)


class ConversationState(_StateDocument, kw_only=True):
    """One conversation: the hot window of its messages and what the interviewer collected.

    `messages` keeps only the last MAX_CONVERSATION_HISTORY messages; `message_count` counts
    every message ever appended, so sequence numbers keep counting past the window.
    The highest sequence PostgreSQL is known to hold (`durable_seq`, from the state hash, set
    by the snapshot worker) is not part of the document: the window never drops a message
    above it, up to UNSNAPSHOTTED_WINDOW_FACTOR x the window.
    """

    kind: Literal["conversation", "triage"] = "conversation"
    title: str | None = None
    language: str = "pt-BR"
    message_count: NonNegative = 0
    messages: list[Message] = msgspec.field(default_factory=list)

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
            seq=self.message_count,
            role=role,
            content=content,
            # As JSON would give it back (a tuple becomes a list), and a copy of the caller's.
            metadata=msgspec.json.decode(_encoder.encode(metadata)) if metadata else {},
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
        durable = sum(1 for m in self.messages[:excess] if m.seq <= self.durable_seq)
        over_cap = len(self.messages) - max_history * UNSNAPSHOTTED_WINDOW_FACTOR
        drop = max(durable, over_cap)
        del self.messages[:drop]
        return max(0, drop - durable)

    def clone(self) -> ConversationState:
        """A copy to change freely: it shares only the (frozen) messages."""
        return msgspec.structs.replace(
            self, messages=list(self.messages), data=_copy_json(self.data)
        )

    @property
    def durable_seq(self) -> int:
        return int(self.__dict__.get("_durable_seq", 0))

    def set_durable_seq(self, seq: int) -> None:
        self.__dict__["_durable_seq"] = seq


class OrchestrationState(_StateDocument, kw_only=True):
    """Where the triage orchestrator stands for one session, and its result once triaged."""

    stage: str = "interviewing"
    triage_result: dict[str, Any] | None = None

    def clone(self) -> OrchestrationState:
        """A copy to change freely."""
        return msgspec.structs.replace(
            self, data=_copy_json(self.data), triage_result=_copy_json(self.triage_result)
        )


StateDocument = ConversationState | OrchestrationState


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON data (dicts and lists copied, everything else immutable)."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


D = TypeVar("D", ConversationState, OrchestrationState, Message)

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    model: msgspec.json.Decoder(model) for model in (ConversationState, OrchestrationState, Message)
}


def encode_state(document: StateDocument | Message) -> bytes:
    """The document's JSON (UTF-8 bytes)."""
    return _encoder.encode(document)


def decode_state(model: type[D], raw: str | bytes) -> D:
    """Parse and validate a document; raises `msgspec.DecodeError` (a ValueError)."""
    return cast(D, _decoders[model].decode(raw))


def convert_state(model: type[D], value: Any) -> D:
    """Validate a document given as Python data (a dict from JSON or from PostgreSQL)."""
    return msgspec.convert(value, model, strict=False)


def to_jsonable(document: StateDocument | Message) -> dict[str, Any]:
    """The document as JSON-ready Python data (datetimes as ISO strings)."""
    return msgspec.to_builtins(document)  # type: ignore[no-any-return]


class MessageOut(BaseModel):
    """A message as the API shows it (built from a `Message` by its attributes)."""

    model_config = ConfigDict(from_attributes=True, title="Message")

    seq: int
    role: Role
    content: str
    created_at: datetime
    metadata: dict[str, Any]

    @classmethod
    def of(cls, messages: list[Message]) -> list[MessageOut]:
        return [cls.model_validate(m) for m in messages]


class Event(BaseModel):
    """An event appended to a session's stream (and sent to SSE clients as-is)."""

    type: str
    data: dict[str, Any] = Field(default_factory=dict)


class StreamEntry(BaseModel):
    id: str
    type: str
    version: int
    data: dict[str, Any]

    @classmethod
    def from_redis(cls, entry_id: str, fields: Mapping[Any, Any]) -> StreamEntry:
        """From a stream entry as XRANGE/XREAD return it (decoded to str)."""
        return cls(
            id=entry_id,
            type=fields.get("type", "unknown"),
            version=int(fields.get("version") or 0),
            data=msgspec.json.decode(fields.get("data") or "{}"),
        )


class SessionSummary(BaseModel):
    """What a session list shows; read from the state hash's flat fields, not the document."""

    session_id: str
    kind: str
    status: str
    title: str | None
    message_count: int
    version: int
    updated_at: datetime

    @classmethod
    def from_meta(cls, session_id: str, meta: dict[str, Any]) -> SessionSummary:
        """From the state hash's flat `meta` (plus `version`); `updated_at` is in us."""
        return cls(
            session_id=session_id,
            kind=meta["kind"],
            status=meta["status"],
            title=meta["title"],
            message_count=meta["message_count"],
            version=meta["version"],
            updated_at=datetime.fromtimestamp(meta["updated_at"] / 1_000_000, tz=UTC),
        )


class SessionPage(BaseModel):
    items: list[SessionSummary]
    total: int
    offset: int
    limit: int
