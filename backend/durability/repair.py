"""Repairing text PostgreSQL refuses in a session Redis holds (`triage repair-text`).

Sessions written before text was checked at the boundary can hold a NUL or a lone surrogate:
their snapshots are refused (backend/state/refused.py) and they stay hot until fixed.
This replaces each such character with U+FFFD, the Unicode replacement character, in every
string of the session's documents (message contents and metadata, title, collected data, the
orchestration's result), as one ordinary versioned write: the session is marked dirty, and a
snapshot is taken at once. Nothing else changes; message text is never logged or printed,
only where a character was replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from backend.core.text import find_unstorable, make_storable, make_storable_json
from backend.durability.service import FlushReport, HybridConversationService
from backend.state.schemas import ConversationState, OrchestrationState


@dataclass
class RepairReport:
    session_id: str
    found: bool = False
    repaired: list[str] = field(default_factory=list)  # where a character was replaced
    flush: FlushReport | None = None  # the snapshot taken afterwards


def _repair_fields(doc: Any, names: tuple[str, ...], prefix: str, repaired: list[str]) -> None:
    for name in names:
        value = getattr(doc, name)
        if find_unstorable(value) is not None:
            repaired.append(f"{prefix}{name}")
            setattr(doc, name, make_storable_json(value))


def repair_conversation(state: ConversationState) -> list[str]:
    """Make every string of the conversation storable, in place; returns where it changed."""
    repaired: list[str] = []
    _repair_fields(state, ("title", "status", "data"), "", repaired)
    for i, message in enumerate(state.messages):
        content, metadata = message.content, message.metadata
        if find_unstorable(content) is not None:
            repaired.append(f"messages[seq={message.seq}].content")
            content = make_storable(content)
        if find_unstorable(metadata) is not None:
            repaired.append(f"messages[seq={message.seq}].metadata")
            metadata = make_storable_json(metadata)
        if content is not message.content or metadata is not message.metadata:
            # Messages are frozen (shared with the decoded cache): replaced, never changed.
            state.messages[i] = msgspec.structs.replace(message, content=content, metadata=metadata)
    return repaired


def repair_orchestration(state: OrchestrationState) -> list[str]:
    repaired: list[str] = []
    _repair_fields(state, ("stage", "status", "triage_result", "data"), "orchestration.", repaired)
    return repaired


async def repair_text(hybrid: HybridConversationService, session_id: str) -> RepairReport:
    """Repair the session's documents in Redis (versioned writes), then snapshot it."""
    report = RepairReport(session_id)
    manager = hybrid.manager
    conversation = await manager.get_hot_conversation_state(session_id)
    orchestration = await manager.get_orchestration_state(session_id)
    report.found = conversation is not None or orchestration is not None
    if not report.found:
        return report
    if conversation is not None and repair_conversation(conversation.clone()):
        changed: list[str] = []

        def fix_conversation(state: ConversationState) -> None:
            changed[:] = repair_conversation(state)

        await manager.update(session_id, fix_conversation)
        report.repaired += changed
    if orchestration is not None and repair_orchestration(orchestration.copy()):
        changed_orch: list[str] = []

        def fix_orchestration(state: OrchestrationState) -> None:
            changed_orch[:] = repair_orchestration(state)

        await manager.update(session_id, fix_orchestration, kind="orchestration")
        report.repaired += changed_orch
    report.flush = await hybrid.snapshot_and_release([session_id])
    return report
