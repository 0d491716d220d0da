"""Triage API: start a triage interview, continue it, read the orchestrator's result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends

from backend.api.deps import RuntimeDep, SessionId
from backend.conversations.idempotency import IdempotencyKey
from backend.conversations.schemas import PostedMessage, PostMessageRequest
from backend.core.auth import PrincipalDep
from backend.core.http import BODY_ERRORS, error_responses
from backend.core.logging import session_from_path
from backend.triage.schemas import StartTriageRequest, TriageStarted, TriageStatus

router = APIRouter(
    prefix="/api/triage",
    tags=["triage"],
    responses=error_responses(401, 422, 503),
    dependencies=[Depends(session_from_path)],
)


@router.post(
    "",
    status_code=201,
    response_model=TriageStarted,
    responses=error_responses(*BODY_ERRORS, 429),
)
async def start_triage(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    body: Annotated[StartTriageRequest | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> TriageStarted:
    """Open a triage session, optionally with the first message (its reply streams as events)."""
    message = body.message if body is not None else None
    return await runtime.orchestrator.start_intelligent_triage(principal, message, idempotency_key)


@router.post(
    "/{session_id}/messages",
    status_code=202,
    response_model=PostedMessage,
    responses=error_responses(*BODY_ERRORS, 404, 409, 429),
)
async def post_triage_message(
    session_id: SessionId,
    body: PostMessageRequest,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> PostedMessage:
    """Answer the interviewer in a triage session; the reply streams on its events."""
    posted = await runtime.orchestrator.continue_intelligent_triage(
        principal, session_id, body.message, idempotency_key
    )
    return posted.public()


@router.get("/{session_id}", response_model=TriageStatus, responses=error_responses(404))
async def get_triage(
    session_id: SessionId, principal: PrincipalDep, runtime: RuntimeDep
) -> TriageStatus:
    """The orchestration status: stage, latest case analysis and the triage result."""
    return await runtime.orchestrator.get_orchestration_status(principal, session_id)
