"""IntelligentTriageOrchestrator: turns an interview into a validated triage result.

Stateless like the interviewer: the orchestration state (stage, the latest case analysis, the
triage result) lives in Redis next to the conversation, written through the
ConversationStateManager. The ReplyRunner calls `CaseAssessor.assess` before generating each
reply: it analyses the interview (`analyze`), hands the analysis to the reply generator, and
decides from the case analysis (`ready_for_triage`) when the interview holds enough
to triage, has the configured `TriageAnalyzer` build the result (`build_triage_result`, or
the LLM with the offline result as its fallback: backend/triage/analyzers.py), validated by
its pydantic model, and stores it with a `triage.updated` event. Once triaged a session stays
triaged: later messages update the analysis (each change a `triage.updated` event), and when
they change what the triage result says (a hearing date that just came up raises the urgency,
a document arrives, the area turns out to be another) the result is re-issued with its
`version` one higher.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from backend.conversations.service import (
    IntelligentInterviewerService,
    Posted,
    generation_info,
)
from backend.core.auth import Principal
from backend.generators.analysis import analyze
from backend.generators.base import CaseAnalysis, TriageResult
from backend.replies import bookkeeping as replies
from backend.replies.assessment import Assessment
from backend.state.schemas import ConversationState, Event, OrchestrationState, utcnow
from backend.state.service import Companion, ConversationStateManager
from backend.triage.analyzers import OfflineTriageAnalyzer, TriageAnalyzer
from backend.triage.schemas import TriageStarted, TriageStatus

INTERVIEWING = "interviewing"
TRIAGED = "triaged"
# Orchestration data: a digest of the conversation a costly analyzer's result was made from.
TRIAGE_BASIS = "triage_basis"


class _Unchanged(Exception):
    pass


def issued_result(previous: dict[str, Any] | None, fresh: dict[str, Any]) -> dict[str, Any]:
    """The triage result to store: the first one; the next version when later messages
    changed what it says; else the one already issued, untouched."""
    if previous is None:
        return fresh
    version = int(previous.get("version", 1))
    if {**previous, "version": version} == {**fresh, "version": version}:
        return previous
    return {**fresh, "version": version + 1}


def may_be_in_postgres(conversation: ConversationState) -> bool:
    """Whether PostgreSQL may hold an orchestration of this session that Redis lacks.

    An orchestration is restored together with its conversation, and PostgreSQL holds one only
    once it has a snapshot of the session (`durable_seq`, set by each snapshot and restore). A
    new session has none, so reading its orchestration never reads through: its replies and
    status work while PostgreSQL is down.
    """
    return conversation.durable_seq > 0


def _first_message(conversation: ConversationState) -> bool:
    """A new session's first message: its orchestration is not written yet, so an assessment
    starts from a new one, reading nothing. Were one written in Redis meanwhile (another
    replica), the write's version check refuses the guess; PostgreSQL cannot hold one, as it
    has no snapshot of the session (`may_be_in_postgres`: a session restored from it, or
    snapshotted, always reads through)."""
    return conversation.message_count == 1 and not may_be_in_postgres(conversation)


class CaseAssessor:
    """The part of the triage the reply runner calls before each reply: it needs only the
    state, so the runner gets it at construction (the orchestrator needs the interviewer,
    which needs the runner)."""

    def __init__(
        self, manager: ConversationStateManager, analyzer: TriageAnalyzer | None = None
    ) -> None:
        self.manager = manager
        self.analyzer: TriageAnalyzer = analyzer or OfflineTriageAnalyzer()
        # The orchestration this process last wrote (or found unchanged), per session: the
        # next assessment starts from it instead of reading it back. Never trusted blindly:
        # the write's version check refuses a stale one, and the update then re-reads.
        self._last: OrderedDict[str, OrchestrationState] = OrderedDict()
        self._capacity = manager.settings.state_cache_sessions

    async def plan(self, session_id: str, conversation: ConversationState) -> Assessment:
        """The analysis, with the orchestration write to make in the reply's start write (a
        `Companion`) when this process knows the orchestration: the one it last wrote, or a
        new one on the session's first message. Without one (not known here, or unchanged),
        the caller calls `assess` after its write instead."""
        analysis, record, create = await self._recipe(session_id, conversation)
        last = self._last.get(session_id)
        if last is not None:
            current = last.clone()
        elif _first_message(conversation):
            current = create()
        else:
            return Assessment(analysis, None)
        current.updated_at = utcnow()
        try:
            event = record(current)
        except _Unchanged:
            return Assessment(analysis, None)
        return Assessment(analysis, Companion(current, event))

    def recorded(self, session_id: str, companion: Companion) -> None:
        """`companion` (from `plan`) was written: remember the orchestration it stored."""
        self._remember(session_id, companion.state.with_version(companion.state.version + 1))

    def forget(self, session_id: str) -> None:
        """What this process remembers of the session's orchestration is stale."""
        self._last.pop(session_id, None)

    def _remember(self, session_id: str, state: OrchestrationState) -> None:
        self._last[session_id] = state
        self._last.move_to_end(session_id)
        if len(self._last) > self._capacity:
            self._last.popitem(last=False)

    async def _recipe(
        self, session_id: str, conversation: ConversationState
    ) -> tuple[
        CaseAnalysis,
        Callable[[OrchestrationState], Event],
        Callable[[], OrchestrationState],
    ]:
        """The analysis, the change it makes to an orchestration, and a new orchestration."""
        analysis = analyze(conversation)
        result: dict[str, object] | None = None
        basis: str | None = None
        if analysis.ready_for_triage:
            analysis, triage_result, basis = await self._triage(session_id, conversation, analysis)
            result = triage_result.model_dump(mode="json")
        analysis_doc = analysis.model_dump(mode="json")

        def recorded(state: OrchestrationState) -> tuple[object, ...]:
            return (
                state.stage,
                state.data.get("analysis"),
                state.triage_result,
                state.data.get(TRIAGE_BASIS),
            )

        def record(state: OrchestrationState) -> Event:
            before = recorded(state)
            state.data["analysis"] = analysis_doc
            if result is not None:
                state.stage = TRIAGED
                state.triage_result = issued_result(state.triage_result, result)
            if basis is not None:
                state.data[TRIAGE_BASIS] = basis
            if recorded(state) == before:
                raise _Unchanged
            return Event(
                type="triage.updated",
                data={
                    "stage": state.stage,
                    "analysis": analysis_doc,
                    "triage_result": state.triage_result,
                },
            )

        def create() -> OrchestrationState:
            return OrchestrationState(
                session_id=session_id,
                user_id=conversation.user_id,
                tenant_id=conversation.tenant_id,
                stage=INTERVIEWING,
            )

        return analysis, record, create

    async def assess(self, session_id: str, conversation: ConversationState) -> CaseAnalysis:
        """Analyse the interview and record it (with the triage result once ready).

        Writes (with a `triage.updated` event) only when something changed.
        """
        analysis, record, create = await self._recipe(session_id, conversation)
        last = self._last.pop(session_id, None)
        current = last.clone() if last is not None else None
        if current is None and _first_message(conversation):
            current = create()
        restore = may_be_in_postgres(conversation)
        written: OrchestrationState | None = None
        try:
            written, _ = await self.manager.update_returning_event(
                session_id,
                record,
                kind="orchestration",
                create=create,
                current=current,
                restore=restore,
            )
        except _Unchanged:
            if (
                last is not None
                and await self.manager.get_version(session_id, "orchestration") == last.version
            ):
                written = last  # unchanged indeed (a remembered state is only a guess)
            elif current is not None:
                with contextlib.suppress(_Unchanged):  # decide on the stored state
                    written, _ = await self.manager.update_returning_event(
                        session_id,
                        record,
                        kind="orchestration",
                        create=create,
                        restore=restore,
                    )
        if written is not None:
            self._remember(session_id, written)
        return analysis

    async def _triage(
        self, session_id: str, conversation: ConversationState, analysis: CaseAnalysis
    ) -> tuple[CaseAnalysis, TriageResult, str | None]:
        """The analyzer's triage; a costly one's stored result while the conversation is the
        one it read (returned with that conversation's digest, to record)."""
        if not self.analyzer.costly:
            triage = await self.analyzer.triage(session_id, conversation, analysis)
            return triage.analysis, triage.result, None
        basis = conversation_digest(conversation)
        stored = await self.manager.get_orchestration_state(
            session_id, restore=may_be_in_postgres(conversation)
        )
        if (
            stored is not None
            and stored.data.get(TRIAGE_BASIS) == basis
            and stored.triage_result is not None
            and stored.data.get("analysis") is not None
        ):
            return (
                CaseAnalysis.model_validate(stored.data["analysis"]),
                TriageResult.model_validate(stored.triage_result),
                basis,
            )
        triage = await self.analyzer.triage(session_id, conversation, analysis)
        return triage.analysis, triage.result, basis


def conversation_digest(conversation: ConversationState) -> str:
    """Changes with any message of the conversation (what an analyzer reads)."""
    messages = [(m.seq, m.role, m.content) for m in conversation.messages]
    return hashlib.sha256(json.dumps(messages, ensure_ascii=False).encode()).hexdigest()[:32]


class IntelligentTriageOrchestrator:
    def __init__(
        self,
        manager: ConversationStateManager,
        interviewer: IntelligentInterviewerService,
        assessor: CaseAssessor,
    ) -> None:
        self.manager = manager
        self.interviewer = interviewer
        self.assessor = assessor

    async def start_intelligent_triage(
        self, principal: Principal, message: str | None, idempotency_key: str | None = None
    ) -> TriageStarted:
        """A new triage session for the caller, with its first message when one is given."""
        conversation, posted = await self.interviewer.start_conversation(
            principal, message, kind="triage", idempotency_key=idempotency_key
        )
        # With a key this may be a retry, answered from a session that moved on since.
        orchestration = (
            await self.manager.get_orchestration_state(conversation.session_id)
            if idempotency_key is not None
            else None
        )
        status = self._status(conversation, orchestration)
        return TriageStarted(
            **status.model_dump(),
            message=posted.public() if posted else None,
            events_url=posted.public().events_url
            if posted
            else f"/api/conversations/sessions/{conversation.session_id}/events",
        )

    async def continue_intelligent_triage(
        self,
        principal: Principal,
        session_id: str,
        message: str,
        idempotency_key: str | None = None,
    ) -> Posted:
        return await self.interviewer.continue_conversation(
            principal, session_id, message, idempotency_key=idempotency_key
        )

    async def get_orchestration_status(self, principal: Principal, session_id: str) -> TriageStatus:
        conversation = await self.interviewer.get_owned(principal, session_id)
        await self.interviewer.runner.ensure(conversation)
        orchestration = await self.manager.get_orchestration_state(
            session_id, restore=may_be_in_postgres(conversation)
        )
        return self._status(conversation, orchestration)

    async def assess(self, session_id: str, conversation: ConversationState) -> CaseAnalysis:
        """See `CaseAssessor.assess`."""
        return await self.assessor.assess(session_id, conversation)

    def _status(
        self, conversation: ConversationState, orchestration: OrchestrationState | None
    ) -> TriageStatus:
        analysis = orchestration.data.get("analysis") if orchestration else None
        result = orchestration.triage_result if orchestration else None
        return TriageStatus(
            session_id=conversation.session_id,
            stage=orchestration.stage if orchestration else INTERVIEWING,
            version=orchestration.version if orchestration else 0,
            message_count=conversation.message_count,
            reply_pending=replies.owes_reply(conversation),
            generating=generation_info(conversation),
            analysis=CaseAnalysis.model_validate(analysis) if analysis else None,
            triage_result=TriageResult.model_validate(result) if result else None,
            updated_at=orchestration.updated_at if orchestration else conversation.updated_at,
        )
