"""Decoded conversations kept per process: never stale, never shared with a caller."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.state.decoded import DecodedConversations
from backend.state.schemas import ConversationState, Event
from backend.state.service import ConversationStateManager


def conversation() -> ConversationState:
    state = ConversationState(session_id=uuid.uuid4().hex, user_id="ana", tenant_id="esc-1")
    state.append_message("user", "Fui demitido sem justa causa", max_history=100)
    return state


async def test_a_write_by_another_process_is_read_not_the_cached_state(
    manager: ConversationStateManager, settings: Settings
) -> None:
    saved = await manager.save_conversation_state(conversation())
    assert (await manager.get_conversation_state(saved.session_id)) == saved  # now cached

    other_service = RedisService.from_settings(settings)  # another replica, its own cache
    try:
        other = ConversationStateManager(other_service, settings)
        theirs = await other.get_conversation_state(saved.session_id)
        assert theirs is not None
        theirs.append_message("assistant", "Quando foi a demissão?", max_history=100)
        await other.save_conversation_state(theirs)
    finally:
        await other_service.close()

    mine = await manager.get_conversation_state(saved.session_id)
    assert mine is not None and mine.version == 2
    assert [m.content for m in mine.messages][-1] == "Quando foi a demissão?"


async def test_changing_a_state_that_was_read_or_saved_changes_no_later_read(
    manager: ConversationStateManager,
) -> None:
    state = conversation()
    state.data["collected_info"] = {"empresa": "ACME", "datas": ["2026-01-05"]}
    saved = await manager.save_conversation_state(state)
    # The saved state stays with its caller, who keeps changing it without saving.
    saved.data["collected_info"]["empresa"] = "outra"
    saved.append_message("user", "nunca salva", max_history=100)

    first = await manager.get_conversation_state(saved.session_id)
    assert first is not None
    first.data["collected_info"]["datas"].append("2026-02-01")
    first.messages.clear()
    first.title = "mudado"

    again = await manager.get_conversation_state(saved.session_id)
    assert again is not None
    assert again.data == {"collected_info": {"empresa": "ACME", "datas": ["2026-01-05"]}}
    assert [m.content for m in again.messages] == ["Fui demitido sem justa causa"]
    assert again.title == "Fui demitido sem justa causa"


async def test_a_cached_read_equals_a_fresh_decode(
    manager: ConversationStateManager, settings: Settings
) -> None:
    state = conversation()
    # Values JSON turns into something else: what every reader sees is what JSON gives back.
    state.data["pair"] = ("a", 1)
    state.append_message("assistant", "Certo.", max_history=100, metadata={"ids": (1, 2)})
    saved = await manager.save_conversation_state(state, event=Event(type="state.updated"))

    cached = await manager.get_conversation_state(saved.session_id)
    fresh = ConversationStateManager(manager.redis, settings.model_copy())  # empty cache
    decoded = await fresh.get_conversation_state(saved.session_id)
    assert cached == decoded
    assert cached is not None and cached.data["pair"] == ["a", 1]
    assert cached.messages[-1].metadata == {"ids": [1, 2]}


def test_messages_cannot_be_changed_in_place() -> None:
    message = conversation().messages[0]
    with pytest.raises(AttributeError):
        message.content = "outra coisa"  # type: ignore[misc]
    changed = msgspec.structs.replace(message, content="outra coisa")
    assert (message.content, changed.content) == ("Fui demitido sem justa causa", "outra coisa")


def test_the_cache_keeps_at_most_its_capacity() -> None:
    cache = DecodedConversations(capacity=2)
    states = [conversation() for _ in range(3)]
    for state in states:
        cache.decoded(state.session_id, b"doc-" + state.session_id.encode(), state)
    assert len(cache) == 2
    oldest, *rest = states
    assert cache.get(oldest.session_id, b"doc-" + oldest.session_id.encode()) is None
    for state in rest:
        assert cache.get(state.session_id, b"doc-" + state.session_id.encode()) == state
    assert cache.get(rest[0].session_id, b"other bytes") is None
    assert len(DecodedConversations(capacity=0)) == 0
