"""Fixtures for the warm and cold tiers: an engine on this run's database, the hybrid service."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.config import Settings
from backend.durability.service import HybridConversationService
from backend.state.schemas import ConversationState, OrchestrationState
from backend.state.service import ConversationStateManager
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(archive_dir=str(tmp_path / "archive"))


def new_id() -> str:
    return uuid.uuid4().hex


async def chat(
    manager: ConversationStateManager,
    session_id: str,
    messages: int,
    *,
    user: str = "ana",
    tenant: str = "escritorio-1",
    flush: HybridConversationService | None = None,
) -> ConversationState:
    """Append `messages` messages (alternating user/assistant), one versioned write each.

    With `flush`, snapshot every 50 messages, as the beat-driven flush would while a long
    conversation goes on (messages must reach PostgreSQL before they leave the hot window).
    """
    state: ConversationState | None = None
    for i in range(messages):
        if flush is not None and i and i % 50 == 0:
            await flush.snapshot_sessions([session_id])

        def mutate(s: ConversationState, i: int = i) -> None:
            role = "user" if i % 2 == 0 else "assistant"
            s.append_message(
                role,
                f"mensagem {i + 1}: fui demitido sem justa causa",
                max_history=manager.settings.max_conversation_history,
                metadata={"i": i},
            )

        state = await manager.update(
            session_id,
            mutate,
            create=lambda: ConversationState(session_id=session_id, user_id=user, tenant_id=tenant),
        )
    assert state is not None
    return state


async def triage(
    manager: ConversationStateManager, session_id: str, result: dict[str, Any], tenant: str
) -> OrchestrationState:
    def mutate(s: OrchestrationState) -> None:
        s.stage = "triaged"
        s.triage_result = result

    return await manager.update(
        session_id,
        mutate,
        kind="orchestration",
        create=lambda: OrchestrationState(session_id=session_id, user_id="ana", tenant_id=tenant),
    )


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def drop_hot(manager: ConversationStateManager, session_id: str) -> None:
    """Lose a session from Redis the way a TTL expiry or eviction would (no hooks run)."""
    await manager.redis.delete(*manager.keys.session_keys(session_id))
