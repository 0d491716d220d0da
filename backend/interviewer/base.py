"""Reply generation: one interface, two implementations.

* the built-in offline interviewer (deterministic, Portuguese, the default);
* an OpenAI-compatible chat-completions provider streaming over httpx.

Case analysis (area of law, urgency, what is still missing, whether the interview holds enough
to triage) is deterministic and offline, so tests and the orchestrator can rely on it whatever
generator writes the replies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from backend.state.schemas import ConversationState

Urgency = Literal["baixa", "media", "alta", "urgente"]
Complexity = Literal["baixa", "media", "alta"]


class CaseAnalysis(BaseModel):
    """What the interview has established so far."""

    area: str | None = None
    sub_area: str | None = None
    urgency: Urgency = "baixa"
    urgency_reason: str | None = None
    facts: dict[str, str] = Field(default_factory=dict)
    missing: list[str] = Field(default_factory=list)
    ready_for_triage: bool = False


class TriageResult(BaseModel):
    """The structured outcome of a triage, validated before it is stored."""

    area: str
    sub_area: str | None = None
    urgency: Urgency
    urgency_reason: str
    complexity: Complexity
    summary: str = Field(min_length=1)
    missing_information: list[str] = Field(default_factory=list)
    recommended_next_step: str = Field(min_length=1)
    confidence: float = Field(ge=0.0, le=1.0)


class ReplyGenerator(Protocol):
    """Streams the interviewer's next reply, in small chunks, for a conversation."""

    name: str

    def stream_reply(
        self, conversation: ConversationState, analysis: CaseAnalysis
    ) -> AsyncIterator[str]: ...


class GenerationError(Exception):
    """The provider failed (before or in the middle of a stream)."""
