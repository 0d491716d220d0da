"""The durability runs of `triage flush`, `archive` and `purge`, on their own clients."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.cli.hybrid import archive_inactive_sessions, flush_dirty_sessions, purge_session
from backend.core.config import Settings
from backend.durability.service import HybridConversationService
from backend.state.service import ConversationStateManager
from tests.conftest import make_settings
from tests.durability.conftest import chat, new_id, rows


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(archive_dir=str(tmp_path / "archive"))


async def test_ops_functions_purge_and_archive_with_their_own_clients(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    keep, gone = new_id(), new_id()
    await chat(manager, keep, 2)
    await chat(manager, gone, 2)
    assert (await flush_dirty_sessions(hybrid.settings)).sessions_written >= 2

    report = await purge_session(hybrid.settings, gone)
    assert report.hot and report.warm
    assert await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=gone) == []
    assert await rows(engine, "SELECT 1 FROM sessions WHERE id = :id", id=keep)
    # Nothing inactive for 30 days here: the archive pass moves nothing of ours.
    await archive_inactive_sessions(hybrid.settings)
    assert not await hybrid.archive.store.exists(keep)
