"""The snapshot writer's count of messages lost from the hot window before any snapshot."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.config import Settings
from backend.durability.repository import Snapshot, WriteReport, write_snapshots
from backend.durability.service import HybridConversationService
from backend.state.schemas import ConversationState, Message
from backend.state.service import ConversationStateManager
from tests.conftest import make_settings
from tests.durability.conftest import chat, new_id, rows

WINDOW = 10
LOGGER = "backend.durability.repository"
WARNING = "left the hot window before being snapshotted"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A short window, so a conversation outgrows it in a few dozen writes.
    return make_settings(archive_dir=str(tmp_path / "archive"), max_conversation_history=WINDOW)


def document(sid: str, version: int, first: int, last: int) -> ConversationState:
    """A conversation whose hot window holds messages `first`..`last` of `last`."""
    return ConversationState(
        session_id=sid,
        user_id="ana",
        tenant_id="escritorio-1",
        version=version,
        message_count=last,
        messages=[
            Message(seq=seq, role="user", content=f"mensagem {seq}")
            for seq in range(first, last + 1)
        ],
    )


async def write(engine: AsyncEngine, state: ConversationState) -> WriteReport:
    async with engine.begin() as conn:
        return await write_snapshots(
            conn, [Snapshot.of(state)], retention=timedelta(days=1), max_history=WINDOW
        )


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    return [m for m in messages if WARNING in m]


async def test_a_long_window_written_whole_is_not_reported_missed(
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Workers were down: 56 messages, never snapshotted, all still hot (the window keeps
    # unsnapshotted messages up to 10x its size). The first snapshot writes all of them.
    sid = new_id()
    state = await chat(manager, sid, 56)
    assert [m.seq for m in state.messages] == list(range(1, 57))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        report = await hybrid.flush_dirty()
    assert report.messages_written == 56
    seqs = await rows(engine, "SELECT seq FROM messages WHERE session_id = :id", id=sid)
    assert len(seqs) == 56
    assert warnings(caplog) == []


async def test_messages_postgres_never_got_are_counted_and_logged_with_the_session(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    sid = new_id()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        # A window that starts at 41 of 60, and nothing in PostgreSQL: 1-40 are lost.
        report = await write(engine, document(sid, 60, 41, 60))
    assert report.messages_written == 20
    assert report.messages_missed == 40
    (message,) = warnings(caplog)
    assert sid in message and "40 message(s)" in message


async def test_only_what_postgres_does_not_hold_counts(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    sid = new_id()
    assert (await write(engine, document(sid, 30, 1, 30))).messages_missed == 0
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        # PostgreSQL holds 1-30; the window now starts at 41 of 60: only 31-40 are lost.
        report = await write(engine, document(sid, 60, 41, 60))
    assert report.messages_written == 20
    assert report.messages_missed == 10
    (message,) = warnings(caplog)
    assert "10 message(s)" in message and "PostgreSQL holds 30 of seq 1-40" in message
    # A window that reaches back to what PostgreSQL holds loses nothing.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        report = await write(engine, document(sid, 90, 61, 90))
    assert report.messages_written == 30 and report.messages_missed == 0
    assert warnings(caplog) == []
