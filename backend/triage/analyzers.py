"""Who turns a ready interview into the triage result: the offline analysis or an LLM.

The interview itself (which topic to ask next, whether it holds enough to triage) is always
decided by the deterministic `analyze`: it runs for every reply and must not depend on a
provider's mood or latency. Once `ready_for_triage`, the configured `TriageAnalyzer` produces
the result:

* `OfflineTriageAnalyzer`: `build_triage_result` over the offline analysis;
* `LLMTriageAnalyzer` (backend/triage/llm_analyzer.py): one structured-output call to the
  OpenAI-compatible provider, validated, falling back to the offline one on any failure.

Either way the result records which one produced it (`TriageResult.analyzer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from backend.generators.base import CaseAnalysis, TriageResult
from backend.state.schemas import ConversationState
from backend.triage.result import build_triage_result


@dataclass(frozen=True)
class Triage:
    """The analysis to record (and to hand to the reply generator) and the triage result."""

    analysis: CaseAnalysis
    result: TriageResult


class TriageAnalyzer(Protocol):
    name: str
    # A costly analyzer's result is reused while the conversation it read is unchanged (a
    # reply retried after a failure does not pay for a second call).
    costly: bool

    async def triage(
        self, session_id: str, conversation: ConversationState, analysis: CaseAnalysis
    ) -> Triage:
        """The triage of a conversation whose offline `analysis` is ready for triage."""
        ...

    async def aclose(self) -> None: ...


def offline_triage(conversation: ConversationState, analysis: CaseAnalysis) -> Triage:
    return Triage(analysis, build_triage_result(conversation, analysis))


class OfflineTriageAnalyzer:
    name = "offline"
    costly = False

    async def triage(
        self, session_id: str, conversation: ConversationState, analysis: CaseAnalysis
    ) -> Triage:
        return offline_triage(conversation, analysis)

    async def aclose(self) -> None:
        return None
