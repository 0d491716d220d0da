"""`triage stats`."""

from __future__ import annotations

import json
import uuid

from backend.core.config import Settings
from backend.state.schemas import ConversationState
from backend.state.service import ConversationStateManager
from tests.cli.helpers import arun, invoke, new_session
from tests.redis_cluster import free_port


async def seed(manager: ConversationStateManager) -> None:
    for user, messages in (("ana", 3), ("ana", 1), ("bia", 2)):
        state = ConversationState(session_id=uuid.uuid4().hex, user_id=user, tenant_id="t1")
        for i in range(messages):
            state.append_message("user", f"mensagem {i}", max_history=100)
        await manager.save_conversation_state(state)


def test_json_counts_the_hot_tier(ops_settings: Settings) -> None:
    arun(ops_settings, seed)
    result = invoke(ops_settings, "stats", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["conversations"] == 3 and stats["users"] == 2
    assert stats["messages_total"] == 6
    assert stats["dirty_sessions"] == 3
    assert stats["redis_used_memory"] > 0


def test_table(ops_settings: Settings) -> None:
    arun(ops_settings, seed)
    result = invoke(ops_settings, "stats")
    assert result.exit_code == 0, result.output
    rows = {
        line.strip("│ ").split("│")[0].strip(): line.strip("│ ").split("│")[-1].strip()
        for line in result.stdout.splitlines()
        if line.startswith("│")
    }
    assert rows["conversations"] == "3"
    assert rows["messages (hot)"] == "6"
    assert rows["dirty sessions (not yet snapshotted)"] == "3"


def test_unreachable_redis_is_a_clear_error(ops_settings: Settings) -> None:
    result = invoke(
        ops_settings, "stats", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_RETRIES="0"
    )
    assert result.exit_code == 3
    assert "Redis unavailable" in result.stderr and result.stdout == ""


def test_refused_sessions_are_listed_by_flush_stats_and_monitor(ops_settings: Settings) -> None:
    """A session PostgreSQL refuses (a NUL written straight into Redis) makes `triage flush`
    exit 1, and `triage stats` and `triage monitor` show it with its reason."""
    sid = new_session(ops_settings, "Fui demitido sem justa causa.")

    async def poison(manager: ConversationStateManager) -> None:
        key = manager.keys.conversation(sid)
        doc = await manager.redis.client.hget(key, "doc")
        await manager.redis.client.hset(key, "doc", doc.replace("demitido", "demi\\u0000tido"))

    arun(ops_settings, poison)
    flushed = invoke(ops_settings, "flush")
    assert flushed.exit_code == 1, flushed.output
    assert "1 refused by PostgreSQL" in flushed.stdout

    stats = json.loads(invoke(ops_settings, "stats", "--json").stdout)
    assert stats["refused_sessions"] == 1 and stats["dirty_sessions"] == 1
    (entry,) = stats["refused"]
    # 22021 (the NUL reached the title, a text column) or 22P05 (a jsonb message).
    assert entry["session_id"] == sid and entry["code"] in ("22021", "22P05")
    assert entry["attempts"] == 1 and entry["reason"].startswith("PostgreSQL refused it: ")

    table = invoke(ops_settings, "stats").stdout
    assert "refused by PostgreSQL (kept dirty, retried)" in table and sid in table
    frame = invoke(ops_settings, "monitor", "--once", "--no-ping").stdout
    assert "refused by PostgreSQL (kept dirty, retried)" in frame and sid in frame
