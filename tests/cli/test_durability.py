"""`triage flush`, `clear-cache` with real snapshots, `archive`, `purge`: Redis + PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from backend.core.config import Settings
from backend.durability import repository
from backend.durability.service import HybridConversationService
from backend.state.schemas import ConversationState
from backend.state.service import ConversationStateManager
from tests.cli.helpers import (
    FIXTURES,
    arun,
    hot_keys,
    hybrid_run,
    invoke,
    new_session,
    own_database,
    warm_version,
)
from tests.conftest import make_settings, purge_prefix


def read_through(settings: Settings, sid: str) -> ConversationState | None:
    """Read as the API does: Redis first, then PostgreSQL or the archive."""

    async def read(hybrid: HybridConversationService) -> ConversationState | None:
        return await hybrid.manager.get_conversation_state(sid)

    return hybrid_run(settings, read)


def test_flush_makes_a_session_evictable_and_it_comes_back(ops_settings: Settings) -> None:
    sid = new_session(ops_settings, "Meu voo foi cancelado.")
    refused = invoke(ops_settings, "clear-cache", sid, "--min-idle", "0")
    assert refused.exit_code == 1 and "not yet snapshotted" in refused.stdout

    flushed = invoke(ops_settings, "flush")
    assert flushed.exit_code == 0, flushed.output
    assert "1 written (1 messages)" in flushed.stdout
    assert warm_version(ops_settings, sid) == 1

    evicted = invoke(ops_settings, "clear-cache", sid, "--min-idle", "0")
    assert evicted.exit_code == 0 and f"evicted {sid}" in evicted.stdout
    assert not [k for k in hot_keys(ops_settings) if sid in k]

    back = read_through(ops_settings, sid)
    assert back is not None and back.version == 1
    assert [m.content for m in back.messages] == ["Meu voo foi cancelado."]


def test_archive_moves_inactive_sessions_to_the_cold_tier(tmp_path: Path) -> None:
    with own_database() as database_url:
        settings = make_settings(
            database_url=database_url,
            archive_dir=str(tmp_path / "archive"),
            archive_inactive_sessions_days=0,
        )
        try:
            sid = new_session(settings, "Recebi uma notificação de despejo.")
            assert invoke(settings, "flush").exit_code == 0
            # Still live in Redis: not archived.
            assert "archived 0 sessions" in invoke(settings, "archive").stdout
            assert invoke(settings, "clear-cache", sid, "--min-idle", "0").exit_code == 0

            result = invoke(settings, "archive")
            assert result.exit_code == 0, result.output
            assert "archived 1 sessions" in result.stdout
            assert (tmp_path / "archive" / sid[:2] / f"{sid}.json.gz").is_file()

            back = read_through(settings, sid)
            assert back is not None
            assert [m.content for m in back.messages] == ["Recebi uma notificação de despejo."]
        finally:
            hybrid_run(
                settings, lambda hybrid: purge_prefix(hybrid.manager.redis, settings.key_prefix)
            )


def test_purge_asks_then_erases_every_tier(ops_settings: Settings) -> None:
    sid = new_session(ops_settings)
    assert invoke(ops_settings, "flush").exit_code == 0

    declined = invoke(ops_settings, "purge", sid, input="n\n")
    assert declined.exit_code == 1 and "user ana (tenant t1)" in declined.output
    assert warm_version(ops_settings, sid) == 1

    purged = invoke(ops_settings, "purge", sid, input="y\n")
    assert purged.exit_code == 0, purged.output
    assert f"purged {sid} from: hot, warm" in purged.stdout
    assert not [k for k in hot_keys(ops_settings) if sid in k]
    assert warm_version(ops_settings, sid) is None
    assert read_through(ops_settings, sid) is None  # nothing to restore it from

    again = invoke(ops_settings, "purge", sid, "--yes")
    assert again.exit_code == 1 and "not found in any tier" in again.stdout
    assert invoke(ops_settings, "purge", "../x", "--yes").exit_code == 2


def test_migrated_sessions_become_durable(ops_settings: Settings) -> None:
    """The migration hands every session to snapshotting: one flush makes them durable."""
    migrated = invoke(ops_settings, "migrate", str(FIXTURES / "legacy_state.json"), "--no-progress")
    assert migrated.exit_code == 0, migrated.output
    flushed = invoke(ops_settings, "flush")
    assert flushed.exit_code == 0 and "5 written (20 messages)" in flushed.stdout
    # The legacy versions carry over into PostgreSQL (the maria session was at version 7).
    assert warm_version(ops_settings, "a0e19b44-7d2c-4f5b-8e61-93c0d7b2f418") == 7
    assert warm_version(ops_settings, "f41b6e09-c2d7-4a88-9d15-7b3e0c6a2f91") == 1


def test_repair_text_makes_a_refused_session_durable(ops_settings: Settings) -> None:
    """A session holding a NUL from before the boundary check (written straight into Redis
    here) is refused by every snapshot until `triage repair-text` replaces it with U+FFFD."""
    sid = new_session(ops_settings, "Fui demitido sem justa causa.")

    async def poison(manager: ConversationStateManager) -> None:
        key = manager.keys.conversation(sid)
        doc = await manager.redis.client.hget(key, "doc")
        await manager.redis.client.hset(key, "doc", doc.replace("demitido", "demi\\u0000tido"))

    arun(ops_settings, poison)
    assert invoke(ops_settings, "flush").exit_code == 1

    repaired = invoke(ops_settings, "repair-text", sid, "--yes")
    assert repaired.exit_code == 0, repaired.output
    assert f"{sid}: title, messages[seq=1].content" in repaired.stdout
    assert "demitido" not in repaired.stdout  # where, never the text
    assert "snapshot written" in repaired.stdout

    async def stored(hybrid: HybridConversationService) -> tuple[list[str], int]:
        async with hybrid.engine.connect() as conn:
            messages = await repository.get_messages(conn, sid, limit=10)
        return [m.content for m in messages], await hybrid.refused.count()

    assert hybrid_run(ops_settings, stored) == (["Fui demi\ufffdtido sem justa causa."], 0)
    again = invoke(ops_settings, "repair-text", sid, "--yes")
    assert again.exit_code == 0 and f"{sid}: nothing to repair" in again.stdout
