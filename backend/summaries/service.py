"""Per-session summaries: built daily for sessions that changed, and on demand by the API."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import translate_db_errors
from backend.core.errors import SessionNotFound
from backend.durability import repository as sessions_repo
from backend.durability.service import HybridConversationService
from backend.summaries import repository as repo
from backend.summaries.schemas import SessionSummaryOut
from backend.summaries.summarizer import summarize_llm, summarize_offline

log = logging.getLogger(__name__)


class SummaryService:
    def __init__(self, hybrid: HybridConversationService, settings: Settings) -> None:
        self.hybrid = hybrid
        self.engine = hybrid.engine
        self.settings = settings

    async def summary_for(self, principal: Principal, session_id: str) -> SessionSummaryOut:
        """The caller's session summary, rebuilt first when the session moved on since."""
        conv = await self.hybrid.owned_conversation(principal, session_id)
        with translate_db_errors():
            async with self.engine.connect() as conn:
                existing = await repo.get(conn, session_id)
        if existing is not None and existing.session_version >= conv.version:
            return existing
        # Summaries read PostgreSQL, which must hold what Redis holds right now.
        await self.hybrid.snapshot_and_release([session_id])
        built = await self.build(session_id)
        if built is None:  # purged or archived between the read and the build
            raise SessionNotFound(f"session {session_id} not found")
        return built

    async def build(self, session_id: str) -> SessionSummaryOut | None:
        """Summarise a warm session from all its messages and store it. None if not warm."""
        with translate_db_errors():
            async with self.engine.connect() as conn:
                facts = await repo.session_facts(conn, session_id)
                if facts is None or facts["archived_at"] is not None:
                    return None
                messages = await sessions_repo.get_messages(conn, session_id)
        content = None
        method = "offline"
        if self.settings.summary_method == "llm":
            content = await summarize_llm(self.settings, messages, facts["area"])
            method = "llm" if content is not None else "offline"
        if content is None:
            content = summarize_offline(messages, facts["area"])
        duration = (
            (messages[-1].created_at - messages[0].created_at).total_seconds() if messages else 0.0
        )
        summary = SessionSummaryOut(
            session_id=session_id,
            **content.model_dump(),
            message_count=len(messages),
            duration_seconds=duration,
            method=method,
            session_version=facts["version"],
            updated_at=datetime.now(UTC),
        )
        with translate_db_errors():
            async with self.engine.begin() as conn:
                await repo.upsert(conn, facts["tenant_id"], summary)
        return summary

    async def build_pending(self, *, limit: int = 5_000) -> int:
        """The daily job: (re)build the summaries that are missing or behind their session."""
        with translate_db_errors():
            async with self.engine.connect() as conn:
                ids = await repo.pending(conn, limit)
        built = 0
        for sid in ids:
            if await self.build(sid) is not None:
                built += 1
        log.info("built %d summaries", built)
        return built
