"""Request and response bodies of the triage API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backend.conversations.schemas import MESSAGE_TEXT_SCHEMA, GenerationInfo, PostedMessage
from backend.core.text import StoredText
from backend.generators.base import CaseAnalysis, TriageResult


class StartTriageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: StoredText | None = Field(
        default=None,
        description="The client's first message; omit to open an empty triage session.",
        examples=["Meu locador quer me despejar e a audiência é semana que vem."],
        json_schema_extra=MESSAGE_TEXT_SCHEMA,
    )


class TriageStatus(BaseModel):
    """Where the orchestrator stands for one session, and its result once triaged."""

    session_id: str
    stage: str = Field(description="interviewing | triaged")
    version: int = Field(description="Version of the orchestration state (0: not assessed yet).")
    message_count: int
    reply_pending: bool
    generating: GenerationInfo | None
    analysis: CaseAnalysis | None
    triage_result: TriageResult | None
    updated_at: datetime


class TriageStarted(TriageStatus):
    message: PostedMessage | None = Field(
        description="The first message, when one was sent; its reply follows on the event stream."
    )
    events_url: str
