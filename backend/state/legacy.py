"""The legacy in-memory state, as dumped to JSON for the one-off migration.

The legacy services kept two dicts in process memory, `active_conversations` and
`active_orchestrations`, keyed by session id. The dump is one JSON object:

    {"active_conversations": {"<session_id>": {...}},
     "active_orchestrations": {"<session_id>": {...}}}

Other top-level keys (e.g. `dumped_at`, `source`) are ignored. A conversation record:
`user_id` (required; a string, or an integer id from the legacy user table), `tenant_id`
(default "default"), `created_at`, `last_activity`, `status`, `conversation_history` (a list of
`{"role", "content", "timestamp"}`; roles `user`/`assistant`/`system`, also the legacy aliases
`bot`/`ai` and `client`/`human`), `collected_info` (free-form facts) and an optional `version`
(default 1). An orchestration record: `user_id`, `tenant_id`, `current_step`, `status`,
`triage_result`, `created_at`, `updated_at`, optional `version`. Timestamps are ISO 8601 (with
`T` or a space; without an offset they are read as UTC) or epoch seconds. An optional
`session_id` field must equal the record's key.

Nothing is dropped silently: unknown record fields are kept under `data.legacy_extra`, unknown
message fields (`type`, `question_id`...) in the message's `metadata`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from backend.core.text import StoredJson, StoredText, check_json
from backend.state.keys import is_valid_session_id
from backend.state.schemas import ConversationState, Message, OrchestrationState, Role, utcnow


def _to_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _Extra(BaseModel):
    """Unknown fields are kept (see the module docstring), so their text is checked too."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _storable_extra(self) -> Self:
        if self.model_extra:
            check_json(self.model_extra)
        return self


class _Legacy(_Extra):
    user_id: StoredText = Field(min_length=1, max_length=128)
    tenant_id: StoredText = Field(default="default", min_length=1, max_length=128)
    status: StoredText = "active"
    version: int = Field(default=1, ge=1)
    created_at: datetime | None = None

    @field_validator("user_id", "tenant_id", mode="before")
    @classmethod
    def _int_id(cls, v: Any) -> Any:
        # The legacy user table had integer keys; they were dumped as JSON numbers.
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("created_at", mode="before")
    @classmethod
    def _dt(cls, v: Any) -> datetime | None:
        return _to_datetime(v)

    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LegacyMessage(_Extra):
    role: Role
    content: StoredText
    timestamp: datetime | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, v: Any) -> Any:
        return {"bot": "assistant", "ai": "assistant", "client": "user", "human": "user"}.get(v, v)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _dt(cls, v: Any) -> datetime | None:
        return _to_datetime(v)


class LegacyConversation(_Legacy):
    last_activity: datetime | None = None
    conversation_history: list[LegacyMessage] = Field(default_factory=list)
    collected_info: StoredJson = Field(default_factory=dict)

    @field_validator("last_activity", mode="before")
    @classmethod
    def _last(cls, v: Any) -> datetime | None:
        return _to_datetime(v)


class LegacyOrchestration(_Legacy):
    current_step: StoredText = "interviewing"
    triage_result: StoredJson | None = None
    updated_at: datetime | None = None

    @field_validator("updated_at", mode="before")
    @classmethod
    def _upd(cls, v: Any) -> datetime | None:
        return _to_datetime(v)


def _check_id(session_id: str, record: Any) -> None:
    if not is_valid_session_id(session_id):
        raise ValueError(f"invalid session id {session_id!r}")
    if not isinstance(record, dict):
        raise ValueError("record is not a JSON object")
    inner = record.get("session_id")
    if inner is not None and inner != session_id:
        raise ValueError(f"session_id field {inner!r} does not match its key")


def _reason(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


def convert_conversation(session_id: str, record: dict[str, Any]) -> ConversationState:
    _check_id(session_id, record)
    try:
        legacy = LegacyConversation.model_validate(record)
    except ValidationError as exc:
        raise ValueError(_reason(exc)) from None
    first_seen = next((m.timestamp for m in legacy.conversation_history if m.timestamp), None)
    created = legacy.created_at or first_seen or legacy.last_activity or utcnow()
    messages = [
        Message(
            seq=i,
            role=m.role,
            content=m.content,
            created_at=m.timestamp or created,
            metadata=dict(m.model_extra or {}),
        )
        for i, m in enumerate(legacy.conversation_history, start=1)
    ]
    extra = {k: v for k, v in legacy.extra().items() if k != "session_id"}
    return ConversationState(
        version=legacy.version,
        session_id=session_id,
        user_id=legacy.user_id,
        tenant_id=legacy.tenant_id,
        status=legacy.status,
        created_at=created,
        updated_at=legacy.last_activity or (messages[-1].created_at if messages else created),
        message_count=len(messages),
        messages=messages,
        title=next((m.content[:80] for m in messages if m.role == "user"), None),
        data={
            "collected_info": legacy.collected_info,
            **({"legacy_extra": extra} if extra else {}),
        },
    )


def trim_history(state: ConversationState, max_history: int) -> ConversationState:
    """Fit a legacy history into the hot window the way live writes do.

    Nothing migrated is in PostgreSQL yet, so every message stays hot until the first
    snapshot (up to the window's hard cap, see `ConversationState.trim_window`); trimming to
    the plain window here would drop legacy messages that never reach the warm tier.
    """
    state.trim_window(max_history)
    return state


def convert_orchestration(session_id: str, record: dict[str, Any]) -> OrchestrationState:
    _check_id(session_id, record)
    try:
        legacy = LegacyOrchestration.model_validate(record)
    except ValidationError as exc:
        raise ValueError(_reason(exc)) from None
    created = legacy.created_at or utcnow()
    extra = {k: v for k, v in legacy.extra().items() if k != "session_id"}
    return OrchestrationState(
        version=legacy.version,
        session_id=session_id,
        user_id=legacy.user_id,
        tenant_id=legacy.tenant_id,
        status=legacy.status,
        stage=legacy.current_step,
        triage_result=legacy.triage_result,
        created_at=created,
        updated_at=legacy.updated_at or created,
        data={"legacy_extra": extra} if extra else {},
    )
