"""`repair_text`: text PostgreSQL refuses, replaced with U+FFFD by a versioned write, then
snapshotted (the CLI's `triage repair-text`, tested end to end in tests/cli)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.durability.repair import repair_text
from backend.durability.service import HybridConversationService
from backend.state.service import ConversationStateManager
from tests.durability.conftest import chat, new_id, rows, triage
from tests.durability.test_refused import message_rows, poison


async def test_repair_replaces_unstorable_text_everywhere_and_the_session_is_written(
    manager: ConversationStateManager, hybrid: HybridConversationService, engine: AsyncEngine
) -> None:
    sid = new_id()
    await chat(manager, sid, 3)
    await triage(manager, sid, {"area": "trabalhista", "summary": "ok"}, "escritorio-1")
    await poison(manager, sid)
    orch_key = manager.keys.orchestration(sid)
    orch = await manager.redis.client.hget(orch_key, "doc")
    await manager.redis.client.hset(orch_key, "doc", orch.replace('"ok"', '"o\\u0000k"'))
    assert (await hybrid.flush_dirty()).refused == 1
    version = (await manager.get_conversation_state(sid)).version  # type: ignore[union-attr]

    report = await repair_text(hybrid, sid)

    assert report.repaired == ["messages[seq=2].content", "orchestration.triage_result"]
    assert report.flush is not None and report.flush.recovered == 1
    assert await message_rows(engine, sid) == [1, 2, 3]
    (message,) = await rows(
        engine, "SELECT content FROM messages WHERE session_id = :id AND seq = 2", id=sid
    )
    assert message.content == "mensagem 2: fui demitido \ufffd sem justa causa"
    (result,) = await rows(
        engine, "SELECT triage_result FROM orchestrations WHERE session_id = :id", id=sid
    )
    assert result.triage_result["summary"] == "o\ufffdk"
    assert await hybrid.refused.count() == 0
    state = await manager.get_conversation_state(sid)
    assert state is not None and state.version == version + 1  # an ordinary versioned write
    assert state.messages[0].content == "mensagem 1: fui demitido sem justa causa"

    again = await repair_text(hybrid, sid)
    assert again.found and again.repaired == []
