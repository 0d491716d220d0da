"""The legacy in-memory state, as dumped to JSON for the one-off migration.

The legacy services kept two dicts in process memory, `active_conversations` and
`active_orchestrations`, keyed by session id. The dump is one JSON object:

    {"active_conversations": {"<session_id>": {...}},
     "active_orchestrations": {"<session_id>": {...}}}

A conversation record: `user_id` (required), `tenant_id` (default "default"), `created_at`,
`last_activity` (ISO 8601 or epoch seconds), `status`, `conversation_history` (a list of
`{"role", "content", "timestamp"}`), `collected_info` (free-form facts) and an optional
`version`. An orchestration record: `user_id`, `tenant_id`, `current_step`, `status`,
`triage_result`, `created_at`, `updated_at`, optional `version`. Unknown fields are kept under
`data.legacy_extra` so nothing is dropped silently.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backend.state.keys import is_valid_session_id
from backend.state.schemas import ConversationState, Message, OrchestrationState, Role, utcnow


def _to_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _Legacy(BaseModel):
    model_config = ConfigDict(extra="allow")

    user_id: str = Field(min_length=1, max_length=128)
    tenant_id: str = Field(default="default", min_length=1, max_length=128)
    status: str = "active"
    version: int = Field(default=1, ge=1)
    created_at: datetime | None = None

    @field_validator("created_at", mode="before")
    @classmethod
    def _dt(cls, v: Any) -> datetime | None:
        return _to_datetime(v)

    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LegacyMessage(BaseModel):
    role: Role
    content: str
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
    collected_info: dict[str, Any] = Field(default_factory=dict)

    @field_validator("last_activity", mode="before")
    @classmethod
    def _last(cls, v: Any) -> datetime | None:
        return _to_datetime(v)


class LegacyOrchestration(_Legacy):
    current_step: str = "interviewing"
    triage_result: dict[str, Any] | None = None
    updated_at: datetime | None = None

    @field_validator("updated_at", mode="before")
    @classmethod
    def _upd(cls, v: Any) -> datetime | None:
        return _to_datetime(v)


def _check_id(session_id: str) -> None:
    if not is_valid_session_id(session_id):
        raise ValueError(f"invalid session id {session_id!r}")


def _reason(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return f"{where}: {first['msg']}"


def convert_conversation(session_id: str, record: dict[str, Any]) -> ConversationState:
    _check_id(session_id)
    if not isinstance(record, dict):
        raise ValueError("record is not a JSON object")
    try:
        legacy = LegacyConversation.model_validate(record)
    except ValidationError as exc:
        raise ValueError(_reason(exc)) from None
    created = legacy.created_at or utcnow()
    messages = [
        Message(seq=i, role=m.role, content=m.content, created_at=m.timestamp or created)
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
    if len(state.messages) > max_history:
        state.messages = state.messages[-max_history:]
    return state


def convert_orchestration(session_id: str, record: dict[str, Any]) -> OrchestrationState:
    _check_id(session_id)
    if not isinstance(record, dict):
        raise ValueError("record is not a JSON object")
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
