"""One session's reply job in a replica (`ReplyRunner`): its lease token and its flags."""

from __future__ import annotations

import asyncio

from backend.state.schemas import ConversationState


class Job:
    __slots__ = ("again", "fresh", "lease_lost", "released", "task", "token")

    def __init__(self, token: str) -> None:
        self.again = False
        # The state the kicking write just stored: the job starts from it instead of reading
        # it back (a stale one only costs a version conflict, which re-reads).
        self.fresh: ConversationState | None = None
        self.lease_lost = False
        self.released = False  # by the write that completed its last reply
        self.task: asyncio.Task[None] | None = None
        # One lease token for the job's whole life: after an outage it takes its lease back,
        # and a marker with this token is its own, not a dead generator's.
        self.token = token
