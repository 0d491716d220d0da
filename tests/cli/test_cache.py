"""`triage clear-cache`: only snapshotted sessions ever leave Redis."""

from __future__ import annotations

import uuid

from backend.core.config import Settings
from backend.state.schemas import ConversationState
from backend.state.service import ConversationStateManager
from tests.cli.helpers import arun, hot_keys, invoke
from tests.state.test_eviction import durable_session


def seed(settings: Settings) -> tuple[str, str]:
    async def run(manager: ConversationStateManager) -> tuple[str, str]:
        durable = await durable_session(manager)
        dirty = ConversationState(session_id=uuid.uuid4().hex, user_id="bia", tenant_id="t1")
        await manager.save_conversation_state(dirty)
        return durable, dirty.session_id

    return arun(settings, run)


def session_keys(settings: Settings, sid: str) -> list[str]:
    return [k for k in hot_keys(settings) if f"{{{sid}}}" in k]


def test_all_asks_first_and_keeps_unsnapshotted_sessions(ops_settings: Settings) -> None:
    durable, dirty = seed(ops_settings)
    before = hot_keys(ops_settings)

    declined = invoke(ops_settings, "clear-cache", "--all", input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert hot_keys(ops_settings) == before

    result = invoke(ops_settings, "clear-cache", "--all", input="y\n")
    assert result.exit_code == 0, result.output
    assert f"evicted {durable}" in result.stdout
    assert f"kept {dirty}: not yet snapshotted to PostgreSQL" in result.stdout
    assert "1 evicted, 1 kept" in result.stdout
    assert session_keys(ops_settings, durable) == []
    assert session_keys(ops_settings, dirty) != []


def test_one_session(ops_settings: Settings) -> None:
    durable, dirty = seed(ops_settings)
    refused = invoke(ops_settings, "clear-cache", dirty)
    assert refused.exit_code == 1
    assert "not yet snapshotted" in refused.stdout
    assert session_keys(ops_settings, dirty) != []

    done = invoke(ops_settings, "clear-cache", durable)
    assert done.exit_code == 0 and f"evicted {durable}" in done.stdout
    assert session_keys(ops_settings, durable) == []
    assert invoke(ops_settings, "clear-cache", durable).exit_code == 1  # already gone


def test_usage_errors(ops_settings: Settings) -> None:
    assert invoke(ops_settings, "clear-cache").exit_code == 2
    assert invoke(ops_settings, "clear-cache", "abc", "--all", "--yes").exit_code == 2
    bad = invoke(ops_settings, "clear-cache", "../etc")
    assert bad.exit_code == 2 and "invalid session id" in bad.stderr
