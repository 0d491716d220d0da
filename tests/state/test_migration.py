"""The legacy migration engine (backend/state/migration.py) against real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from backend.core.redis import RedisService
from backend.state import migration
from backend.state.legacy import convert_conversation
from backend.state.migration import DumpError, LegacyDump
from backend.state.schemas import ConversationState, Event
from backend.state.service import ConversationStateManager
from tests.conftest import make_settings, purge_prefix

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
JOAO = "c7f3a1d2-5b8e-4c1a-9f0e-2d6b8a4e1c33"  # 6 messages, extras, naive timestamps
MARIA = "a0e19b44-7d2c-4f5b-8e61-93c0d7b2f418"  # legacy version 7, epoch times, bot/client
DEFENSORIA = "5e2d8c71-0a94-4b3f-b6d2-e8f1a3c95b07"  # integer user id, -03:00 offsets
CARLOS = "f41b6e09-c2d7-4a88-9d15-7b3e0c6a2f91"  # no messages yet
ANA = "2b9c4d1e-8f37-4e60-a5b9-c1d0e7f36a24"


def fixture_dump(name: str = "legacy_state.json") -> LegacyDump:
    return migration.load_dump(FIXTURES / name)


@pytest.fixture
async def any_manager(redis_backend: dict[str, Any]) -> AsyncIterator[ConversationStateManager]:
    """A manager on standalone Redis and on a 3-master cluster."""
    settings = make_settings(**redis_backend)
    redis = RedisService.from_settings(settings)
    try:
        yield ConversationStateManager(redis, settings)
    finally:
        await purge_prefix(redis, settings.key_prefix)
        await redis.close()


async def snapshot_of_prefix(manager: ConversationStateManager) -> dict[str, Any]:
    """Every key under the prefix with its value, to prove a run changed nothing."""
    client, out = manager.redis.client, {}
    async for key in manager.redis.scan_keys(f"{manager.keys.prefix}:*"):
        kind = await client.type(key)
        if kind == "hash":
            out[key] = await client.hgetall(key)
        elif kind == "stream":
            out[key] = await client.xrange(key)
        elif kind == "zset":
            out[key] = await client.zrange(key, 0, -1)
        else:
            out[key] = kind
    return out


async def test_round_trip_of_the_sample_dump(any_manager: ConversationStateManager) -> None:
    manager = any_manager
    dump = fixture_dump()
    outcome = await migration.migrate(manager, dump)
    assert (outcome.migrated, outcome.skipped, outcome.invalid) == (8, 0, [])

    joao = await manager.get_conversation_state(JOAO)
    assert joao is not None and joao.version == 1
    assert (joao.user_id, joao.tenant_id, joao.status) == (
        "joao.silva@example.com",
        "escritorio-almeida",
        "active",
    )
    assert [m.seq for m in joao.messages] == [1, 2, 3, 4, 5, 6]
    assert joao.messages[1].content.startswith("Fui demitido sem justa causa")
    # Fields the legacy kept on a message or a record are carried over, not dropped.
    assert joao.messages[2].metadata == {"type": "question", "question_id": "data_demissao"}
    assert joao.data["collected_info"]["fgts_irregular"] is True
    assert joao.data["legacy_extra"] == {"current_question": "jornada", "interview_stage": 3}
    # A naive legacy timestamp is read as UTC.
    assert joao.created_at == datetime(2026, 11, 20, 14, 2, 11, 508113, tzinfo=UTC)

    maria = await manager.get_conversation_state(MARIA)
    assert maria is not None and maria.version == 7 and maria.status == "completed"
    assert [m.role for m in maria.messages] == [
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    orch = await manager.get_orchestration_state(MARIA)
    assert orch is not None and orch.version == 4 and orch.stage == "completed"
    assert orch.triage_result is not None and orch.triage_result["area"] == "consumidor"

    # The integer user id of the legacy user table becomes a string the API can match.
    page = await manager.list_active_conversations("defensoria-sp", "48213")
    assert [item.session_id for item in page.items] == [DEFENSORIA]
    defensoria = await manager.get_conversation_state(DEFENSORIA)
    assert defensoria is not None
    assert defensoria.messages[0].created_at == datetime(2026, 11, 20, 0, 40, 3, 118000, tzinfo=UTC)

    # Handed to snapshotting: every migrated session is in the dirty set.
    dirty = await manager.redis.client.zrange(manager.keys.dirty(), 0, -1)
    assert sorted(dirty) == sorted([JOAO, MARIA, DEFENSORIA, CARLOS, ANA])
    # ...and the migration is an event on each session's stream.
    events = await manager.read_events(MARIA)
    assert [e.type for e in events] == ["session.migrated", "session.migrated"]

    await migration.verify(manager, dump, outcome)
    assert (outcome.verified, outcome.mismatches) == (8, [])


async def test_second_run_changes_nothing(manager: ConversationStateManager) -> None:
    dump = fixture_dump()
    await migration.migrate(manager, dump)
    before = await snapshot_of_prefix(manager)

    again = await migration.migrate(manager, dump)
    assert (again.migrated, again.skipped, again.invalid) == (0, 8, [])
    assert await snapshot_of_prefix(manager) == before


async def test_never_overwrites_newer_state(manager: ConversationStateManager) -> None:
    dump = fixture_dump()
    # Already in Redis before the migration, at a version above the dump's 7.
    newer = convert_conversation(MARIA, dump.conversations[MARIA]).copy(
        version=9, status="archived"
    )
    assert await manager.restore_state("conversation", newer)
    outcome = await migration.migrate(manager, dump)
    assert (outcome.migrated, outcome.skipped) == (7, 1)
    kept = await manager.get_conversation_state(MARIA)
    assert kept is not None and (kept.version, kept.status) == (9, "archived")

    # A session that moved on after the migration is left alone by a second run.
    def reply(state: ConversationState) -> Event:
        state.append_message("user", "Segue o número do voo: VB 1234.", max_history=100)
        return Event(type="message.completed", data={})

    await manager.update(JOAO, reply)
    again = await migration.migrate(manager, dump)
    assert (again.migrated, again.skipped) == (0, 8)
    joao = await manager.get_conversation_state(JOAO)
    assert joao is not None and joao.version == 2
    assert joao.messages[-1].content == "Segue o número do voo: VB 1234."

    # Verification accepts sessions that moved on, as long as they agree with the dump.
    await migration.verify(manager, dump, again)
    assert (again.verified, again.newer_in_redis, again.mismatches) == (8, 2, [])


async def test_bad_records_are_named_and_the_rest_migrated(
    manager: ConversationStateManager,
) -> None:
    dump = fixture_dump("legacy_state_bad.json")
    outcome = await migration.migrate(manager, dump)
    reasons = dict(outcome.invalid)
    assert sorted(reasons) == sorted(
        [
            "conversation:e81c2a5f-3b6d-4e9a-a7c1-0d8f4b2e6a19",
            "conversation:b7f04c2e-6d8a-4f1b-9e3c-7a5d2b8f0c61",
            "conversation:9c44e1a7-2f5b-4d8c-b6a0-3e9f7c1d5b28",
            "conversation:sessão 12",
            "conversation:0f1e8d2c-7b3a-4c5e-9d6f-1a2b3c4d5e6f",
            "conversation:77aa3b1c-5d9e-4f2a-8c6b-0e1d2f3a4b5c",
            "conversation:a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            "orchestration:e81c2a5f-3b6d-4e9a-a7c1-0d8f4b2e6a19",
            "orchestration:5b5b0e7d-9a21-4c3f-8d6e-2f7a9c1b4e60",
            "orchestration:c0c0a1b2-d3e4-4f5a-8b6c-7d8e9f0a1b2c",
        ]
    )
    assert "user_id" in reasons["conversation:e81c2a5f-3b6d-4e9a-a7c1-0d8f4b2e6a19"]
    assert "role" in reasons["conversation:b7f04c2e-6d8a-4f1b-9e3c-7a5d2b8f0c61"]
    assert "timestamp" in reasons["conversation:9c44e1a7-2f5b-4d8c-b6a0-3e9f7c1d5b28"]
    assert "invalid session id" in reasons["conversation:sessão 12"]
    assert "does not match" in reasons["conversation:0f1e8d2c-7b3a-4c5e-9d6f-1a2b3c4d5e6f"]
    assert "not a JSON object" in reasons["conversation:77aa3b1c-5d9e-4f2a-8c6b-0e1d2f3a4b5c"]
    assert (
        "its conversation record is invalid"
        in (reasons["orchestration:e81c2a5f-3b6d-4e9a-a7c1-0d8f4b2e6a19"])
    )
    assert "paula.lima" in reasons["orchestration:5b5b0e7d-9a21-4c3f-8d6e-2f7a9c1b4e60"]
    assert "version" in reasons["orchestration:c0c0a1b2-d3e4-4f5a-8b6c-7d8e9f0a1b2c"]
    assert outcome.exit_code == migration.EXIT_RECORDS

    # The valid records were migrated; nothing at all was written for the invalid ones.
    assert outcome.migrated == 3
    assert await manager.get_conversation_state("d3a9f6b2-1c4e-4d7a-8b90-5e2f1a6c3d84")
    assert await manager.get_orchestration_state("d3a9f6b2-1c4e-4d7a-8b90-5e2f1a6c3d84")
    assert await manager.get_conversation_state("5b5b0e7d-9a21-4c3f-8d6e-2f7a9c1b4e60")
    assert await manager.get_orchestration_state("5b5b0e7d-9a21-4c3f-8d6e-2f7a9c1b4e60") is None
    for name in reasons:
        sid = name.split(":", 1)[1]
        if sid in ("5b5b0e7d-9a21-4c3f-8d6e-2f7a9c1b4e60", "sessão 12"):
            continue
        assert await manager.redis.exists(*manager.keys.session_keys(sid)) == 0

    await migration.verify(manager, dump, outcome)
    assert (outcome.verified, outcome.mismatches) == (3, [])


async def test_dry_run_writes_nothing(manager: ConversationStateManager) -> None:
    dump = fixture_dump()
    outcome = await migration.migrate(manager, dump, dry_run=True)
    assert (outcome.migrated, outcome.skipped, outcome.invalid) == (8, 0, [])
    assert await snapshot_of_prefix(manager) == {}

    await migration.migrate(manager, dump)
    outcome = await migration.migrate(manager, dump, dry_run=True)
    assert (outcome.migrated, outcome.skipped) == (0, 8)


async def test_verify_reports_missing_and_differing_records(
    manager: ConversationStateManager,
) -> None:
    dump = fixture_dump()
    await migration.migrate(manager, dump)
    await manager.delete_session(CARLOS)
    # Same version, different content: what a botched earlier import would leave behind.
    await manager.delete_session(ANA)
    wrong = convert_conversation(ANA, dump.conversations[ANA])
    wrong.messages[1] = msgspec.structs.replace(wrong.messages[1], content="conteúdo trocado")
    assert await manager.restore_state("conversation", wrong)

    outcome = await migration.migrate(manager, dump, dry_run=True)
    await migration.verify(manager, dump, outcome)
    mismatches = dict(outcome.mismatches)
    assert mismatches == {
        f"conversation:{CARLOS}": "missing from Redis",
        f"conversation:{ANA}": mismatches[f"conversation:{ANA}"],
    }
    assert mismatches[f"conversation:{ANA}"].startswith("message 2 differs")
    assert outcome.verified == 6 and outcome.exit_code == migration.EXIT_RECORDS


async def test_long_history_stays_whole_until_it_is_snapshotted(
    manager: ConversationStateManager,
) -> None:
    sid = uuid.uuid4().hex
    history = [
        {"role": "user" if i % 2 else "assistant", "content": f"mensagem {i}"} for i in range(150)
    ]
    dump = LegacyDump(
        conversations={sid: {"user_id": "ana", "conversation_history": history}},
        orchestrations={},
    )
    outcome = await migration.migrate(manager, dump)
    assert outcome.migrated == 1
    state = await manager.get_conversation_state(sid)
    assert state is not None and state.message_count == 150
    # Not in PostgreSQL yet: all 150 stay hot (the window drops them only once durable).
    assert len(state.messages) == 150
    assert state.messages[0].seq == 1 and state.messages[-1].content == "mensagem 149"
    await migration.verify(manager, dump, outcome)
    assert outcome.mismatches == []

    await manager.mark_durable({sid: 150})  # a snapshot took them
    moved_on = await manager.update(
        sid, lambda s: s.append_message("user", "nova", max_history=100) and None
    )
    assert len(moved_on.messages) == 100 and moved_on.messages[0].seq == 52


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"sessions": {}}', "neither"),
        ('{"active_conversations": []}', "must be an object keyed by session id"),
    ],
)
def test_unusable_dumps_are_refused_whole(tmp_path: Path, content: str, error: str) -> None:
    path = tmp_path / "dump.json"
    path.write_text(content)
    with pytest.raises(DumpError, match=error):
        migration.load_dump(path)
    with pytest.raises(DumpError, match="cannot read"):
        migration.load_dump(tmp_path / "missing.json")
