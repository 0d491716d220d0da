"""What the reply runner needs from the triage: the case analysis a reply is generated from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from backend.generators.base import CaseAnalysis
from backend.state.schemas import ConversationState
from backend.state.service import Companion


@dataclass(frozen=True)
class Assessment:
    """The case analysis a reply is generated from, and the orchestration write to make with
    the reply's start (None: the assessor records it itself, `Assessor.assess`)."""

    analysis: CaseAnalysis
    companion: Companion | None


class Assessor(Protocol):
    """Analyses the case before each reply and records it (`triage.service.CaseAssessor`)."""

    async def assess(self, session_id: str, conversation: ConversationState) -> CaseAnalysis: ...

    async def plan(self, session_id: str, conversation: ConversationState) -> Assessment: ...

    def recorded(self, session_id: str, companion: Companion) -> None: ...

    def forget(self, session_id: str) -> None: ...
