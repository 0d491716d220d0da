"""The one-off migration of the legacy in-memory state into Redis, and its verification.

The engine behind `scripts/migrate_to_redis.py` and `triage migrate` (both are thin: they parse
options and render progress and the summary). The dump format is described in
`backend/state/legacy.py`; the writes are `write_legacy_records`, also the manager's
`migrate_memory_to_redis` (restore semantics: never over a newer version; every migrated
session is marked dirty, which hands it to the snapshot worker that makes it durable in
PostgreSQL).

Checks that span two records live here, before anything is written: an orchestration whose
conversation in the same dump is invalid, or belongs to another user or tenant, is refused
too, so a migration never leaves half a session or a session readable by the wrong user.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.state.legacy import convert_conversation, convert_orchestration, trim_history
from backend.state.schemas import ConversationState, Event, OrchestrationState
from backend.state.store import Kind, StateStore


@dataclass
class MigrationReport:
    migrated: int = 0
    skipped: int = 0
    invalid: list[tuple[str, str]] = field(default_factory=list)


async def write_legacy_records(
    manager: StateStore,
    active_conversations: dict[str, dict[str, Any]],
    active_orchestrations: dict[str, dict[str, Any]],
    *,
    dry_run: bool = False,
    on_record: Callable[[str, str], None] | None = None,
) -> MigrationReport:
    """Write legacy records into Redis; idempotent, never over a newer state.

    Each valid record is written with restore semantics at its legacy version (1 when it had
    none), so a second run, or a session that moved on since, is left alone; each is marked
    dirty, which hands it to snapshotting.
    """
    report = MigrationReport()
    jobs: list[tuple[Kind, str, dict[str, Any], Callable[[str, dict[str, Any]], Any]]] = [
        *(("conversation", k, v, convert_conversation) for k, v in active_conversations.items()),
        *(("orchestration", k, v, convert_orchestration) for k, v in active_orchestrations.items()),
    ]
    for kind, key, record, convert in jobs:
        try:
            state = convert(key, record)
            if isinstance(state, ConversationState):
                trim_history(state, manager.settings.max_conversation_history)
            manager.keys.user_index(state.tenant_id, state.user_id)  # validates the ids
        except (ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            report.invalid.append((f"{kind}:{key}", reason))
            if on_record:
                on_record(key, "invalid")
            continue
        if dry_run:
            wrote = state.version > await manager.get_version(state.session_id, kind)
        else:
            event = Event(type="session.migrated", data={"kind": kind})
            wrote = await manager.restore_state(kind, state, event, mark_dirty=True)
        if wrote:
            report.migrated += 1
        else:
            report.skipped += 1
        if on_record:
            on_record(key, "migrated" if wrote else "skipped")
    return report


CONVERSATIONS = "active_conversations"
ORCHESTRATIONS = "active_orchestrations"

# Exit statuses of the script and of `triage migrate` (2 and 3 are in backend/cli/common.py:
# an unusable dump or configuration, an unreachable Redis).
EXIT_OK = 0
EXIT_RECORDS = 1  # some records were invalid or failed verification (the valid ones migrated)


class DumpError(Exception):
    """The dump file is unusable as a whole (missing, not JSON, wrong shape)."""


@dataclass
class LegacyDump:
    conversations: dict[str, Any]
    orchestrations: dict[str, Any]

    @property
    def total(self) -> int:
        return len(self.conversations) + len(self.orchestrations)


@dataclass
class MigrationOutcome:
    dry_run: bool
    conversations: int
    orchestrations: int
    migrated: int = 0
    skipped: int = 0
    invalid: list[tuple[str, str]] = field(default_factory=list)
    verified: int | None = None  # None: --verify was not asked for
    newer_in_redis: int = 0
    mismatches: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_RECORDS if self.invalid or self.mismatches else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "records": {"conversations": self.conversations, "orchestrations": self.orchestrations},
            "migrated": self.migrated,
            "skipped": self.skipped,
            "invalid": [{"record": name, "reason": reason} for name, reason in self.invalid],
            "verified": self.verified,
            "newer_in_redis": self.newer_in_redis,
            "mismatches": [{"record": name, "reason": reason} for name, reason in self.mismatches],
        }


def load_dump(path: Path) -> LegacyDump:
    """Read and shape-check a dump; `-` reads standard input."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise DumpError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DumpError(f"{path} is not UTF-8 text") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DumpError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise DumpError(f"{path}: the dump must be a JSON object")
    if CONVERSATIONS not in raw and ORCHESTRATIONS not in raw:
        raise DumpError(f"{path}: neither {CONVERSATIONS!r} nor {ORCHESTRATIONS!r} is present")
    parts = {}
    for name in (CONVERSATIONS, ORCHESTRATIONS):
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise DumpError(f"{path}: {name!r} must be an object keyed by session id")
        parts[name] = value
    return LegacyDump(conversations=parts[CONVERSATIONS], orchestrations=parts[ORCHESTRATIONS])


def cross_check(dump: LegacyDump) -> tuple[LegacyDump, list[tuple[str, str]]]:
    """Refuse orchestrations that do not fit their conversation; return what remains."""
    invalid: list[tuple[str, str]] = []
    orchestrations: dict[str, Any] = {}
    for sid, record in dump.orchestrations.items():
        reason = _orchestration_conflict(sid, record, dump.conversations.get(sid))
        if reason:
            invalid.append((f"orchestration:{sid}", reason))
        else:
            orchestrations[sid] = record
    return LegacyDump(dump.conversations, orchestrations), invalid


def _orchestration_conflict(sid: str, record: Any, conversation: Any) -> str | None:
    if conversation is None:
        return None  # an orchestration alone is migrated on its own
    try:
        conv = convert_conversation(sid, conversation)
        orch = convert_orchestration(sid, record)
    except (ValueError, TypeError):
        try:
            convert_orchestration(sid, record)
        except (ValueError, TypeError):
            return None  # its own reason is reported by the migration
        return "its conversation record is invalid"
    if (orch.tenant_id, orch.user_id) != (conv.tenant_id, conv.user_id):
        return (
            f"belongs to {orch.tenant_id}/{orch.user_id} but its conversation to "
            f"{conv.tenant_id}/{conv.user_id}"
        )
    return None


async def migrate(
    manager: StateStore,
    dump: LegacyDump,
    *,
    dry_run: bool = False,
    on_record: Callable[[str, str], None] | None = None,
) -> MigrationOutcome:
    """Cross-check, then write every valid record (or only count, with `dry_run`)."""
    checked, refused = cross_check(dump)
    outcome = MigrationOutcome(
        dry_run=dry_run,
        conversations=len(dump.conversations),
        orchestrations=len(dump.orchestrations),
    )
    for name, _ in refused:
        if on_record:
            on_record(name.split(":", 1)[1], "invalid")
    report = await write_legacy_records(
        manager, checked.conversations, checked.orchestrations, dry_run=dry_run, on_record=on_record
    )
    outcome.migrated, outcome.skipped = report.migrated, report.skipped
    outcome.invalid = sorted([*report.invalid, *refused])
    return outcome


async def verify(
    manager: StateStore,
    dump: LegacyDump,
    outcome: MigrationOutcome,
    *,
    on_record: Callable[[str, str], None] | None = None,
) -> None:
    """Read every valid record back from Redis and compare it with the dump.

    At the dump's version the stored state must match it exactly (identity, status, data,
    every message's sequence, role, content and metadata; the orchestration's stage and
    result). A newer version means the session moved on since: it must still belong to the
    same user and tenant and agree on every message both still hold. Missing, older or
    differing records are mismatches. Timestamps are not compared: a record without one got
    the time of the migration.
    """
    invalid = {name for name, _ in outcome.invalid}
    outcome.verified = 0
    jobs: list[tuple[Kind, str, Any]] = [
        *(("conversation", sid, rec) for sid, rec in dump.conversations.items()),
        *(("orchestration", sid, rec) for sid, rec in dump.orchestrations.items()),
    ]
    for kind, sid, record in jobs:
        name = f"{kind}:{sid}"
        if name in invalid:
            continue
        status = await _verify_one(manager, kind, sid, record)
        if status in ("ok", "newer"):
            outcome.verified += 1
            outcome.newer_in_redis += status == "newer"
        else:
            outcome.mismatches.append((name, status))
        if on_record:
            on_record(sid, "ok" if status in ("ok", "newer") else "mismatch")


async def _verify_one(manager: StateStore, kind: Kind, sid: str, record: Any) -> str:
    expected: ConversationState | OrchestrationState
    stored: ConversationState | OrchestrationState | None
    if kind == "conversation":
        expected = trim_history(
            convert_conversation(sid, record), manager.settings.max_conversation_history
        )
        stored = await manager.get_conversation_state(sid)
    else:
        expected = convert_orchestration(sid, record)
        stored = await manager.get_orchestration_state(sid)
    if stored is None:
        return "missing from Redis"
    if (stored.tenant_id, stored.user_id) != (expected.tenant_id, expected.user_id):
        return (
            f"Redis holds it for {stored.tenant_id}/{stored.user_id}, "
            f"the dump for {expected.tenant_id}/{expected.user_id}"
        )
    if stored.version < expected.version:
        return f"Redis holds older version {stored.version} < {expected.version}"
    if stored.version > expected.version:
        if isinstance(stored, ConversationState) and isinstance(expected, ConversationState):
            held = {m.seq: (m.role, m.content) for m in stored.messages}
            for m in expected.messages:
                if m.seq in held and held[m.seq] != (m.role, m.content):
                    return f"message {m.seq} differs from the dump (newer version {stored.version})"
        return "newer"
    for name, want, got in _fields(expected, stored):
        if want != got:
            return f"{name} differs: dump {_short(want)}, Redis {_short(got)}"
    return "ok"


def _fields(
    expected: ConversationState | OrchestrationState, stored: ConversationState | OrchestrationState
) -> list[tuple[str, Any, Any]]:
    rows: list[tuple[str, Any, Any]] = [
        ("status", expected.status, stored.status),
        ("data", expected.data, stored.data),
    ]
    if isinstance(expected, ConversationState) and isinstance(stored, ConversationState):
        rows += [
            ("message_count", expected.message_count, stored.message_count),
            ("title", expected.title, stored.title),
        ]
        got = {m.seq: m for m in stored.messages}
        for m in expected.messages:
            have = got.get(m.seq)
            rows.append(
                (
                    f"message {m.seq}",
                    (m.role, m.content, m.metadata),
                    None if have is None else (have.role, have.content, have.metadata),
                )
            )
        extra = sorted(set(got) - {m.seq for m in expected.messages})
        rows.append(("messages", [], extra))
    elif isinstance(expected, OrchestrationState) and isinstance(stored, OrchestrationState):
        rows += [
            ("stage", expected.stage, stored.stage),
            ("triage_result", expected.triage_result, stored.triage_result),
        ]
    return rows


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
