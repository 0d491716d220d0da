"""Subscription: one SSE or WebSocket client's queue of a session's events, fed by the hub.

The hub (`backend.streaming.hub`) pushes batches of stream entries (or a `Reload` marker when
the stream lost events after the client's position); the client's generator takes them with
`next()`. Bounded: a client that reads slower than its session produces is cut off
("overflow") rather than buffered without limit, and resumes from its Last-Event-ID.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from backend.state.schemas import StreamEntry


@dataclass(frozen=True)
class Reload:
    """In-band marker: the stream lost events after this subscription's position."""

    after: str
    reason: str | None


Item = list[StreamEntry] | Reload


class Subscription:
    """One SSE client's view of a session stream: a queue of batches, closed with a reason.

    `on_shutdown`: called when it is closed because the replica is stopping (the SSE response
    bounds how long its stream may take to end, see `backend.streaming.response`).
    """

    __slots__ = ("_items", "_ready", "_size", "max_backlog", "on_shutdown", "reason", "session_id")

    def __init__(self, session_id: str, max_backlog: int) -> None:
        self.session_id = session_id
        self.max_backlog = max_backlog
        self.reason: str | None = None
        self.on_shutdown: Callable[[], None] | None = None
        self._items: deque[Item] = deque()
        self._size = 0
        self._ready = asyncio.Event()

    def push(self, item: Item) -> None:
        if self.reason is not None:
            return
        self._items.append(item)
        self._size += len(item) if isinstance(item, list) else 1
        if self._size > self.max_backlog:
            # The client reads slower than the session produces: cut it off rather than
            # buffer without bound; it resumes from its Last-Event-ID without a gap.
            self._items.clear()
            self.close("overflow")
        self._ready.set()

    def close(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            if reason == "shutdown" and self.on_shutdown is not None:
                self.on_shutdown()
        self._ready.set()

    async def next(self) -> Item | None:
        """The next batch (or Reload); None once closed and drained (see `reason`)."""
        while True:
            if self._items:
                item = self._items.popleft()
                self._size -= len(item) if isinstance(item, list) else 1
                return item
            if self.reason is not None:
                return None
            self._ready.clear()
            await self._ready.wait()
