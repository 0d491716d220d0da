"""Response bodies of the durability routes."""

from __future__ import annotations

from pydantic import BaseModel

from backend.state.schemas import MessageOut


class MessagePage(BaseModel):
    """A page of a session's history, oldest first; `next_before` fetches the page before it."""

    session_id: str
    items: list[MessageOut]
    message_count: int
    next_before: int | None


class PurgeReport(BaseModel):
    """Which tiers held the session when it was purged (all of them hold nothing now)."""

    session_id: str
    hot: bool
    warm: bool
    cold: bool
