"""StreamHub: one shared tailer per replica that fans session streams out to SSE clients.

Why not one blocking XREAD per SSE client: an idle chat tab would then hold a Redis connection
(and its buffers) for hours, and 5,000 idle streams would mean 5,000 connections per replica.
Instead each replica runs a few *readers*; a reader issues one `XREAD BLOCK` over up to
`STREAM_KEYS_PER_READER` session streams and hands what it reads to in-process subscriptions.
Several clients of one session share one cursor ("tail").

A reader must re-issue its XREAD when a new session joins it. Rather than cancelling the
blocked call (redis-py would drop the connection), the reader also reads a tiny private "wake"
stream, and joining a reader whose XREAD is in flight appends one entry to it.

On Redis Cluster a multi-key XREAD must stay in one slot and every session has its own slot,
so there each tail gets its own reader reading one key (one blocked connection per streamed
session on that replica; the standalone figures in the README do not apply).

Subscriptions never lose events: a subscriber registers first, then back-fills with XRANGE
from its own position, and drops anything at or below the last id it has passed on, so the
hub's reads and the back-fill may overlap but never leave a hole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from backend.core.errors import StoreUnavailable
from backend.core.redis import RedisClient, translate_errors
from backend.state.keys import Keys
from backend.state.schemas import StreamEntry
from backend.streaming.events import check_resume, parse_stream_id
from backend.streaming.keys import StreamKeys
from backend.streaming.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_READ_COUNT = 500
_CHECK_BATCH = 500


@dataclass(frozen=True)
class Reload:
    """In-band marker: the stream lost events after this subscription's position."""

    after: str
    reason: str | None


Item = list[StreamEntry] | Reload


class Subscription:
    """One SSE client's view of a session stream: a queue of batches, closed with a reason.

    Also quacks like the `anyio.Event` sse-starlette sets on server shutdown (`set()`), so the
    SSE generator wakes up on shutdown without a watcher task per stream.
    """

    __slots__ = ("_items", "_ready", "_size", "max_backlog", "reason", "session_id")

    def __init__(self, session_id: str, max_backlog: int) -> None:
        self.session_id = session_id
        self.max_backlog = max_backlog
        self.reason: str | None = None
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
        self._ready.set()

    def set(self) -> None:
        """sse-starlette's shutdown signal."""
        self.close("shutdown")

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


class _Tail:
    __slots__ = ("cursor", "key", "reader", "session_id", "subs", "suspect")

    def __init__(self, session_id: str, key: str, cursor: str, reader: _Reader) -> None:
        self.session_id = session_id
        self.key = key
        self.cursor = cursor
        self.reader = reader
        self.subs: set[Subscription] = set()
        self.suspect = False


class _Reader:
    def __init__(self, hub: StreamHub, wake_key: str | None) -> None:
        self.hub = hub
        self.wake_key = wake_key
        self.wake_cursor = "0-0"
        self.tails: dict[str, _Tail] = {}  # by stream key
        self.changed = asyncio.Event()
        self.in_flight = False  # an XREAD is out that may not include the newest tail
        self.wake_sent = False
        self.task: asyncio.Task[None] | None = None

    def add(self, tail: _Tail) -> None:
        self.tails[tail.key] = tail
        self.changed.set()
        if self.in_flight and self.wake_key is not None and not self.wake_sent:
            self.wake_sent = True
            self.hub._spawn(self._wake())

    async def _wake(self) -> None:
        assert self.wake_key is not None
        try:
            with translate_errors():
                pipe = self.hub.client.pipeline(transaction=False)
                pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1, approximate=False)
                pipe.expire(self.wake_key, 3600)
                await pipe.execute()
        except StoreUnavailable:
            log.warning("could not wake a stream reader; it picks up new sessions on its own")

    async def run(self) -> None:
        hub = self.hub
        backoff = 0.05
        while not hub.closed:
            if not self.tails:
                if self.wake_key is None:
                    return  # a cluster reader lives as long as its one tail
                self.changed.clear()
                await self.changed.wait()
                continue
            await self._check_suspects()
            asked = dict(self.tails)  # the tails this read is for, at these cursors
            streams: dict[Any, Any] = {key: t.cursor for key, t in asked.items()}
            if self.wake_key is not None:
                streams[self.wake_key] = self.wake_cursor
            self.wake_sent = False
            self.in_flight = True
            try:
                with translate_errors():
                    reply = await hub.client.xread(streams, count=_READ_COUNT, block=hub.block_ms)
            except StoreUnavailable as exc:
                log.warning("stream reader: %s; retrying in %.2fs", exc, backoff)
                for tail in self.tails.values():
                    tail.suspect = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            finally:
                self.in_flight = False
            backoff = 0.05
            for key, rows in _rows(reply):
                if key == self.wake_key:
                    self.wake_cursor = rows[-1][0]
                    continue
                target = self.tails.get(key)
                if target is None or target is not asked.get(key) or not rows:
                    # Gone, or replaced by a new tail at its own position while this read was
                    # out: these rows follow the old cursor, the next read serves the new one.
                    continue
                batch = [StreamEntry.from_redis(entry_id, fields) for entry_id, fields in rows]
                target.cursor = batch[-1].id
                for sub in tuple(target.subs):
                    sub.push(batch)

    async def _check_suspects(self) -> None:
        """After a Redis outage, check each tail's stream still holds what follows its cursor.

        A restarted Redis may have come back from an older snapshot or without the stream.
        """
        for tail in [t for t in self.tails.values() if t.suspect]:
            try:
                point = await check_resume(self.hub.client, tail.key, tail.cursor)
            except StoreUnavailable:
                return
            tail.suspect = False
            if point.reload:
                tail.cursor = point.after
                for sub in tuple(tail.subs):
                    sub.push(Reload(point.after, point.reason))


def _rows(reply: Any) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
    # RESP2 answers a list of [key, entries]; RESP3 a mapping of key -> entries.
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(k, v) for k, v in reply]


class StreamHub:
    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        stream_keys: StreamKeys,
        *,
        replica_id: str,
        cluster: bool,
        block_ms: int,
        keys_per_reader: int,
        check_seconds: float,
        max_backlog: int,
        on_owing: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.stream_keys = stream_keys
        self.replica_id = replica_id
        self.cluster = cluster
        # Cluster readers hold one key each and never need waking; a short block bounds how
        # long an abandoned one lingers.
        self.block_ms = min(block_ms, 1_000) if cluster else block_ms
        self.keys_per_reader = 1 if cluster else keys_per_reader
        self.check_seconds = check_seconds
        self.max_backlog = max_backlog
        self.closed = False
        self._tails: dict[str, _Tail] = {}  # by session id
        self._readers: list[_Reader] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._checker: asyncio.Task[None] | None = None
        self.leaving = False  # `going_away` was called
        # Called with open streams' sessions that owe a reply (the reply runner's `recheck`).
        self.on_owing = on_owing

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._checker = asyncio.create_task(self._check_loop(), name="stream-hub-check")

    def going_away(self) -> None:
        """The process is stopping: end every stream now (clients reconnect elsewhere), before
        the server drops the connections itself; the readers stop later, in `close`."""
        self.leaving = True
        for tail in self._tails.values():
            for sub in tuple(tail.subs):
                sub.close("shutdown")

    async def close(self) -> None:
        """Close every subscription (their SSE responses end) and stop the readers."""
        self.closed = True
        for tail in self._tails.values():
            for sub in tuple(tail.subs):
                sub.close("shutdown")
        # Wake the readers rather than only cancelling them: a cancellation can be swallowed
        # (see `tasks`), and the reader would then sit in a blocking XREAD for the block time.
        for reader in self._readers:
            reader.changed.set()
            if reader.wake_key is not None:
                await reader._wake()
        readers = [r.task for r in self._readers if r.task is not None and not r.task.done()]
        if readers:
            await asyncio.wait(readers, timeout=2)
        await cancel_and_wait(
            [t for t in (self._checker, *self._tasks) if t is not None], deadline_s=2
        )
        wake_keys = [r.wake_key for r in self._readers if r.wake_key is not None]
        if wake_keys:
            with contextlib.suppress(StoreUnavailable), translate_errors():
                await self.client.delete(*wake_keys)

    # ------------------------------------------------------------ subscriptions

    def new_subscription(self, session_id: str) -> Subscription:
        """A subscription that receives nothing until `attach`ed (by the SSE generator, once
        the response streams: a HEAD request, which never streams, leaves nothing behind)."""
        return Subscription(session_id, self.max_backlog)

    def attach(self, sub: Subscription, after: str) -> bool:
        """Start passing the session's events after stream id `after` to `sub`.

        Returns whether the subscriber must back-fill: an existing tail may already be past
        `after`, and the subscriber then reads that part itself. A new tail starts at `after`.
        """
        if self.closed or self.leaving:
            sub.close("shutdown")
            return False
        tail = self._tails.get(sub.session_id)
        if tail is None:
            reader = self._reader_with_room()
            tail = _Tail(sub.session_id, self.keys.events(sub.session_id), after, reader)
            self._tails[sub.session_id] = tail
            reader.add(tail)
        tail.subs.add(sub)
        return parse_stream_id(tail.cursor) > parse_stream_id(after)

    def unsubscribe(self, sub: Subscription) -> None:
        tail = self._tails.get(sub.session_id)
        if tail is None or sub not in tail.subs:
            return
        tail.subs.discard(sub)
        if not tail.subs:
            del self._tails[sub.session_id]
            tail.reader.tails.pop(tail.key, None)

    def stats(self) -> dict[str, int]:
        return {
            "sessions": len(self._tails),
            "subscriptions": sum(len(t.subs) for t in self._tails.values()),
            "readers": sum(1 for r in self._readers if r.tails),
        }

    def _reader_with_room(self) -> _Reader:
        if not self.cluster:
            for reader in self._readers:
                if len(reader.tails) < self.keys_per_reader:
                    return reader
        self._readers = [r for r in self._readers if r.tails or r.wake_key is not None]
        wake_key = (
            None
            if self.cluster
            else self.stream_keys.reader_wake(self.replica_id, len(self._readers))
        )
        reader = _Reader(self, wake_key)
        self._readers.append(reader)
        reader.task = self._spawn(reader.run())
        return reader

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------- checks

    async def _check_loop(self) -> None:
        """Every few seconds, end the streams of sessions that were deleted or expired, and
        hand the ones that owe a reply to `on_owing` (the reply runner checks someone is
        generating it: a client is waiting on this stream).

        A blocking XREAD on a deleted stream would otherwise wait forever.
        """
        while not self.closed:
            await asyncio.sleep(self.check_seconds)
            tails = list(self._tails.values())
            for start in range(0, len(tails), _CHECK_BATCH):
                chunk = tails[start : start + _CHECK_BATCH]
                try:
                    with translate_errors():
                        pipe = self.client.pipeline(transaction=False)
                        for tail in chunk:
                            pipe.hget(self.keys.conversation(tail.session_id), "meta")
                        metas = await pipe.execute()
                except StoreUnavailable:
                    break
                owing = []
                for tail, meta in zip(chunk, metas, strict=True):
                    if meta is None:
                        for sub in tuple(tail.subs):
                            sub.close("gone")
                    elif json.loads(meta).get("owes_reply"):
                        owing.append(tail.session_id)
                if owing and self.on_owing is not None:
                    try:
                        await self.on_owing(owing)
                    except StoreUnavailable:
                        break
