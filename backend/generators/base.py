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

from pydantic import BaseModel, ConfigDict, Field

from backend.state.schemas import ConversationState

Urgency = Literal["baixa", "media", "alta", "urgente"]
Complexity = Literal["baixa", "media", "alta"]
# What produced a triage result: the configured LLM, or the deterministic analysis (the default,
# and the fallback when the LLM's answer is invalid, late or missing).
Analyzer = Literal["llm", "offline"]


class CaseAnalysis(BaseModel):
    """What the interview has established so far.

    `facts` holds what the client told, keyed "o_que_aconteceu", "quando", "partes",
    "documentos", "valores" (values in the client's own words). `missing` lists, in Portuguese
    and in interview order, what triage still lacks; `missing_topics` is the same list as
    stable topic keys (see `questions.Topic`), `unanswered_topics` the part of it asked twice
    without an answer (recorded as "não informado"). `next_topic` is the topic to ask about
    next (None when nothing is left to ask).
    """

    # Frozen: `analysis.analyze` caches and shares one per conversation.
    model_config = ConfigDict(frozen=True)

    area: str | None = None
    sub_area: str | None = None
    urgency: Urgency = "baixa"
    urgency_reason: str | None = None
    facts: dict[str, str] = Field(default_factory=dict)
    missing: list[str] = Field(default_factory=list)
    ready_for_triage: bool = False
    # Additive detail for the triage and the interviewers.
    secondary_areas: list[str] = Field(default_factory=list)
    urgency_signals: list[str] = Field(default_factory=list)
    parties: list[str] = Field(default_factory=list)
    documents: list[str] = Field(default_factory=list)
    amounts: list[str] = Field(default_factory=list)
    missing_topics: list[str] = Field(default_factory=list)
    # Settled from what the client said / asked twice without an answer ("não informado").
    answered_topics: list[str] = Field(default_factory=list)
    unanswered_topics: list[str] = Field(default_factory=list)
    next_topic: str | None = None
    # The next question asks `next_topic` again, in other words (its first one went unanswered).
    reasking: bool = False
    user_turns: int = 0
    # The client's last message: the topic it replied to, why it did not answer it (an
    # `answers.Evasion`, None when it did) and what the client asked (`answers.ClientQuestion`).
    last_reply_topic: str | None = None
    last_reply_evasion: str | None = None
    client_questions: list[str] = Field(default_factory=list)


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
    analyzer: Analyzer = Field(
        default="offline",
        description="What produced the result: llm (the configured model) or offline "
        "(the deterministic analysis, also the fallback when the model's answer is unusable).",
    )
    # 1 for the first triage; +1 each time a later message changes it.
    version: int = Field(default=1, ge=1)


class ReplyGenerator(Protocol):
    """Streams the interviewer's next reply, in small chunks, for a conversation."""

    name: str

    def stream_reply(
        self, conversation: ConversationState, analysis: CaseAnalysis
    ) -> AsyncIterator[str]: ...


class GenerationError(Exception):
    """The provider failed (before or in the middle of a stream).

    `status_code` is the provider's HTTP status when it answered with one; `retryable` says
    whether trying again later may succeed (rate limits, timeouts, dropped connections, 5xx).
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, retryable: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retryable = retryable
