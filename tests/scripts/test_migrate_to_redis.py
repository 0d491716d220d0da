"""scripts/migrate_to_redis.py as an operator runs it: a real process, exit codes, output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from backend.core.config import Settings
from backend.state.service import ConversationStateManager
from tests.cli.helpers import FIXTURES, ROOT, arun, hot_keys, run_process
from tests.redis_cluster import free_port

SCRIPT = ROOT / "scripts" / "migrate_to_redis.py"
SAMPLE = FIXTURES / "legacy_state.json"
BAD = FIXTURES / "legacy_state_bad.json"


def script(settings: Settings, *args: str | Path, **kwargs: str):  # type: ignore[no-untyped-def]
    return run_process([sys.executable, SCRIPT, *args], settings, **kwargs)


def test_migrates_verifies_and_a_second_run_changes_nothing(ops_settings: Settings) -> None:
    first = script(ops_settings, SAMPLE, "--verify")
    assert first.returncode == 0, first.stderr
    assert "migrated: 8" in first.stdout
    assert "invalid: 0" in first.stdout
    assert "verified: 8 match" in first.stdout and "0 mismatches" in first.stdout
    # The progress bar goes to stderr, so stdout stays a clean summary.
    assert "migrating" in first.stderr and "8/8" in first.stderr
    keys = hot_keys(ops_settings)

    second = script(ops_settings, SAMPLE, "--verify", "--no-progress")
    assert second.returncode == 0, second.stderr
    assert "migrated: 0" in second.stdout
    assert "skipped (Redis already holds the same or a newer version): 8" in second.stdout
    assert second.stderr == ""
    assert hot_keys(ops_settings) == keys

    async def maria(manager: ConversationStateManager) -> tuple[int, int] | None:
        state = await manager.get_conversation_state("a0e19b44-7d2c-4f5b-8e61-93c0d7b2f418")
        return None if state is None else (state.version, len(state.messages))

    assert arun(ops_settings, maria) == (7, 5)


def test_bad_records_are_named_with_a_nonzero_exit(ops_settings: Settings) -> None:
    result = script(ops_settings, BAD, "--no-progress")
    assert result.returncode == 1
    assert "migrated: 3" in result.stdout and "invalid: 10" in result.stdout
    assert (
        "conversation:e81c2a5f-3b6d-4e9a-a7c1-0d8f4b2e6a19: user_id: Field required"
        in result.stdout
    )
    assert "conversation:sessão 12: invalid session id" in result.stdout
    assert "orchestration:e81c2a5f-3b6d-4e9a-a7c1-0d8f4b2e6a19: its conversation record is " in (
        result.stdout
    )

    async def valid_one(manager: ConversationStateManager) -> bool:
        sid = "d3a9f6b2-1c4e-4d7a-8b90-5e2f1a6c3d84"
        return await manager.get_conversation_state(sid) is not None

    assert arun(ops_settings, valid_one)


def test_dry_run_json_summary_writes_nothing(ops_settings: Settings) -> None:
    result = script(
        ops_settings, "-", "--dry-run", "--json", "--no-progress", input=BAD.read_text()
    )
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["dry_run"] is True
    assert summary["migrated"] == 3 and len(summary["invalid"]) == 10
    assert {"record": "conversation:sessão 12", "reason": "invalid session id 'sessão 12'"} in (
        summary["invalid"]
    )
    assert hot_keys(ops_settings) == []


def test_dry_run_verify_checks_an_earlier_migration(ops_settings: Settings) -> None:
    before = script(ops_settings, SAMPLE, "--dry-run", "--verify", "--no-progress")
    assert before.returncode == 1
    assert "would migrate: 8" in before.stdout
    assert "8 mismatches" in before.stdout and "missing from Redis" in before.stdout

    assert script(ops_settings, SAMPLE, "--no-progress").returncode == 0
    after = script(ops_settings, SAMPLE, "--dry-run", "--verify", "--no-progress")
    assert after.returncode == 0, after.stdout
    assert "verified: 8 match" in after.stdout


def test_unusable_input_exits_2_and_writes_nothing(ops_settings: Settings, tmp_path: Path) -> None:
    broken = tmp_path / "dump.json"
    broken.write_text('{"active_conversations": {"x": ')
    result = script(ops_settings, broken)
    assert result.returncode == 2
    assert "is not valid JSON" in result.stderr
    missing = script(ops_settings, tmp_path / "nope.json")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert hot_keys(ops_settings) == []


def test_unreachable_redis_exits_3(ops_settings: Settings) -> None:
    result = script(
        ops_settings,
        SAMPLE,
        "--no-progress",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        REDIS_RETRIES="0",
    )
    assert result.returncode == 3
    assert "Redis unavailable" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_documents_the_dump_format(ops_settings: Settings) -> None:
    result = script(ops_settings, "--help")
    assert result.returncode == 0
    for words in (
        "active_conversations",
        "active_orchestrations",
        "conversation_history",
        "--dry-run",
        "--verify",
        "Exit status",
    ):
        assert words in result.stdout


def test_records_with_unstorable_text_are_named_and_not_written(
    ops_settings: Settings, tmp_path: Path
) -> None:
    """A NUL or a lone surrogate anywhere in a record (message, fact, extra field, key) refuses
    that record with the field named; the clean record beside them is migrated."""
    message = {"role": "user", "content": "Fui demitido.", "timestamp": 1_700_000_000}
    records = {
        "nul-content": {"conversation_history": [{**message, "content": "a \u0000 b"}]},
        "surrogate-content": {"conversation_history": [{**message, "content": "a\ud800b"}]},
        "nul-fact": {"conversation_history": [message], "collected_info": {"partes": ["\x00"]}},
        "nul-key": {"conversation_history": [message], "collected_info": {"da\x00ta": 1}},
        "nul-extra": {"conversation_history": [{**message, "type": "pergunta\x00"}]},
        "clean": {"conversation_history": [message], "collected_info": {"partes": ["empresa"]}},
    }
    dump = {
        "active_conversations": {sid: {"user_id": "u1", **r} for sid, r in records.items()},
        "active_orchestrations": {
            "clean": {"user_id": "u1", "current_step": "interviewing"},
            "surrogate-step": {"user_id": "u1", "current_step": "\udfff"},
        },
    }
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(dump))  # ensure_ascii: the lone surrogate travels as \udfff

    result = script(ops_settings, path, "--no-progress", "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["migrated"] == 2  # the clean conversation and its orchestration
    reasons = {item["record"]: item["reason"] for item in summary["invalid"]}
    assert reasons == {
        "conversation:nul-content": "conversation_history.0.content: text holds a NUL character"
        " (\\u0000), which cannot be stored",
        "conversation:surrogate-content": "conversation_history.0.content: text holds a lone"
        " surrogate (\\ud800), which is not valid Unicode text",
        "conversation:nul-fact": "collected_info: partes.0 holds a NUL character (\\u0000),"
        " which cannot be stored",
        "conversation:nul-key": "collected_info: 'da\\x00ta' key holds a NUL character"
        " (\\u0000), which cannot be stored",
        "conversation:nul-extra": "conversation_history.0: type holds a NUL character"
        " (\\u0000), which cannot be stored",
        "orchestration:surrogate-step": "current_step: text holds a lone surrogate (\\udfff),"
        " which is not valid Unicode text",
    }
    keys = hot_keys(ops_settings)
    assert any("{clean}" in k for k in keys)
    for record in reasons:
        sid = record.split(":", 1)[1]
        assert not any(f"{{{sid}}}" in k for k in keys), record
