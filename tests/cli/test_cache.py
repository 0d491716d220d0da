"""`triage clear-cache`: only sessions PostgreSQL already holds ever leave Redis."""

from __future__ import annotations

from backend.core.config import Settings
from backend.durability.service import HybridConversationService
from backend.state.service import ConversationStateManager
from tests.cli.helpers import arun, hot_keys, hybrid_run, invoke, new_session


def seed(settings: Settings) -> tuple[str, str]:
    """One session snapshotted to PostgreSQL, one written after the snapshot (dirty)."""
    durable = new_session(settings, "Meu voo foi cancelado.")

    async def flush(hybrid: HybridConversationService) -> None:
        await hybrid.flush_dirty()

    hybrid_run(settings, flush)
    return durable, new_session(settings, "Quero revisar meu contrato.")


def session_keys(settings: Settings, sid: str) -> list[str]:
    return [k for k in hot_keys(settings) if f"{{{sid}}}" in k]


def test_all_asks_first_and_keeps_unsnapshotted_sessions(ops_settings: Settings) -> None:
    durable, dirty = seed(ops_settings)
    before = hot_keys(ops_settings)

    declined = invoke(ops_settings, "clear-cache", "--all", "--min-idle", "0", input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert hot_keys(ops_settings) == before

    result = invoke(ops_settings, "clear-cache", "--all", "--min-idle", "0", input="y\n")
    assert result.exit_code == 0, result.output
    assert f"evicted {durable}" in result.stdout
    assert f"kept {dirty}: not yet snapshotted to PostgreSQL" in result.stdout
    assert "1 evicted, 1 kept" in result.stdout
    assert session_keys(ops_settings, durable) == []
    assert session_keys(ops_settings, dirty) != []


def test_one_session(ops_settings: Settings) -> None:
    durable, dirty = seed(ops_settings)
    refused = invoke(ops_settings, "clear-cache", dirty, "--min-idle", "0")
    assert refused.exit_code == 1
    assert "not yet snapshotted" in refused.stdout
    assert session_keys(ops_settings, dirty) != []

    recent = invoke(ops_settings, "clear-cache", durable)  # the default 60 s quiet period
    assert recent.exit_code == 1 and "written too recently" in recent.stdout

    done = invoke(ops_settings, "clear-cache", durable, "--min-idle", "0")
    assert done.exit_code == 0 and f"evicted {durable}" in done.stdout
    assert session_keys(ops_settings, durable) == []
    assert invoke(ops_settings, "clear-cache", durable).exit_code == 1  # already gone


def test_a_lost_dirty_mark_does_not_fool_it(ops_settings: Settings) -> None:
    durable, _ = seed(ops_settings)
    moved_on = new_session(ops_settings)

    async def lose_marks(manager: ConversationStateManager) -> None:
        # A writer that crashed between its versioned write and its ZADD: the session is
        # outside the dirty set, yet PostgreSQL has never seen it.
        await manager.redis.client.zrem(manager.keys.dirty(), moved_on)

    arun(ops_settings, lose_marks)
    result = invoke(ops_settings, "clear-cache", moved_on, "--min-idle", "0")
    assert result.exit_code == 1
    assert "PostgreSQL holds an older version" in result.stdout
    assert session_keys(ops_settings, moved_on) != []
    assert session_keys(ops_settings, durable) != []


def test_usage_errors(ops_settings: Settings) -> None:
    assert invoke(ops_settings, "clear-cache").exit_code == 2
    assert invoke(ops_settings, "clear-cache", "abc", "--all", "--yes").exit_code == 2
    bad = invoke(ops_settings, "clear-cache", "../etc")
    assert bad.exit_code == 2 and "invalid session id" in bad.stderr
