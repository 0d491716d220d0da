"""The summary of a session."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from backend.api.deps import SummariesDep
from backend.core.auth import PrincipalDep
from backend.core.http import error_responses
from backend.core.logging import session_from_path
from backend.durability.router import SessionId
from backend.summaries.schemas import SessionSummaryOut

router = APIRouter(
    dependencies=[Depends(session_from_path)],
    prefix="/api/conversations/sessions",
    tags=["conversations"],
    responses=error_responses(401, 404, 422, 503),
)


@router.get("/{session_id}/summary")
async def session_summary(
    session_id: SessionId, principal: PrincipalDep, summaries: SummariesDep
) -> SessionSummaryOut:
    """Summary, key points, sentiment, tags, message count and duration of a session."""
    return await summaries.summary_for(principal, session_id)
