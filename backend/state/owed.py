"""What a conversation owes: pure functions over its document, no I/O.

The state write that leaves a session owing a reply puts it in the replies' due set, in the
same round trip (see `StateStore._write`), so the state package reads this bookkeeping itself;
the reply runtime (`backend/replies/`) writes it. The fields (`replied_through`, `generation`)
are described in `backend/replies/bookkeeping.py`.
"""

from __future__ import annotations

from typing import Any

from backend.state.schemas import ConversationState


def answered_through(conversation: ConversationState) -> int:
    value = conversation.data.get("replied_through")
    if isinstance(value, int):
        return value
    # Sessions written before this bookkeeping (e.g. migrated legacy ones): the latest
    # assistant message answers everything before it.
    for message in reversed(conversation.messages):
        if message.role == "assistant":
            return int(message.metadata.get("in_reply_to", message.seq))
    return 0


def pending_seq(conversation: ConversationState) -> int | None:
    """The seq of the newest user message still waiting for a reply, if any."""
    for message in reversed(conversation.messages):
        if message.role == "user":
            return message.seq if message.seq > answered_through(conversation) else None
    return None


def marker(conversation: ConversationState) -> dict[str, Any] | None:
    value = conversation.data.get("generation")
    return value if isinstance(value, dict) else None


def owes_reply(conversation: ConversationState) -> bool:
    return pending_seq(conversation) is not None or marker(conversation) is not None
