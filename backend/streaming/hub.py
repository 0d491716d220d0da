"""StreamHub: one shared tailer per replica that fans session streams out to SSE clients.

Why not one blocking XREAD per streamed session: an idle chat tab would then hold a Redis
connection (and its buffers) for hours, and 10,000 open tabs would mean 10,000 connections
per replica, past Redis's default `maxclients`. A multi-key XREAD over many session streams
does not help on a cluster either: it must stay in one slot, and each session has its own.

So readers block on *notifications*, not on session streams (as Centrifugo does on a
cluster: a fixed number of partitions, each with its own hash tag). Every write that appends
to a session's stream also appends a notification to the stream of the session's partition
(`backend.state.notify`; `STREAM_PARTITIONS`, a stable hash of the session id). A replica runs
one reader per partition on a cluster (one connection per partition, routed and failed over by
the cluster client) and one reader for all partitions on a single node: its blocking reads
grow with the partitions, never with the streamed sessions. Several clients of one session
share one cursor ("tail"), moved by a single fetcher.

A wake-up is one read, the reader's. A notification names the events its write appended and,
when it can, carries them with the id of the session stream's entry they follow (`prev`: the
write scripts keep the stream's last id in the conversation hash). For a tail whose cursor is
there (or at one of those events), the fetcher passes them on as they are, with no read of the
session's stream. Otherwise (events too large to carry, a write that did not know `prev`, a
cursor elsewhere because a notification was lost or trimmed, a notification that names no
event) it reads the session's stream after the cursor (non-blocking, pipelined). The stream
stays the truth: carried events are exactly its next entries after `prev`, so both ways pass
on the same thing, with no gap and no duplicate. A new tail reads its stream once to start
(its events may have been notified before it existed), unless the notifications the hub read
lately for the session end exactly at its start (`_seen`): a chat POST's stream, which starts
at the event its write has just appended; what follows comes with notifications still to read.

A notification can be lost (a writer that dies between its script and the notification on a
cluster, a reader that reconnects after an outage, a reader so far behind that its partition
was trimmed past it). No stream stays silent because of it: a reader that (re)connects starts
from its partitions' ends and re-reads every tail in them; every `STREAM_CHECK_SECONDS` the
tails whose session owes a reply (or did at the previous check) are re-read; every
`STREAM_SWEEP_SECONDS` every tail is.

Checks look only at the tails that can have changed: every `STREAM_CHECK_SECONDS`, those
that are new, had events since the last check, owed a reply at it, or sit in a partition
whose reader has just (re)connected (one `HMGET` of the session's `owes` flag each: is the
session still there, does it owe a reply); every `STREAM_SWEEP_SECONDS`, all of them. A
deleted, purged or evicted session's notification says `gone` (`backend.state.notify`): its
streams end at once, not at a check. An expired session has no notification (a TTL ends it):
its streams end at the next sweep. So an idle stream costs the hub two commands per sweep
(its re-read and its check) and nothing in between; what is left of its cost is
sse-starlette's keep-alive ping (`SSE_PING_SECONDS`, see `backend.streaming.sse`).

Subscriptions never lose events: a subscriber registers first, then back-fills with XRANGE
from its own position, and drops anything at or below the last id it has passed on, so the
hub's reads and the back-fill may overlap but never leave a hole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from backend.core import metrics
from backend.core.errors import StoreUnavailable
from backend.core.redis import RedisClient, translate_errors
from backend.state.keys import Keys, stream_partition
from backend.state.notify import Notification
from backend.state.schemas import StreamEntry
from backend.streaming.events import InvalidLastEventId, StreamId, check_resume, parse_stream_id
from backend.streaming.subscription import Reload, Subscription
from backend.streaming.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_READ_COUNT = 500  # entries of one session stream per read
_NOTIFY_COUNT = 1_000  # notifications per read (NOTIFY_MAXLEN: what a partition keeps)
_FETCH_BATCH = 200  # session streams read in one pipeline
_CHECK_BATCH = 500
# How long, and for how many sessions at most, the hub remembers how far the notifications it
# read went for a session (see `StreamHub._seen`): long enough for a chat POST's stream to
# attach after its write's notification was read.
_SEEN_SECONDS = 10.0
_SEEN_MAX = 50_000


class _Tail:
    __slots__ = ("cursor", "key", "owed", "partition", "session_id", "subs", "suspect")

    def __init__(self, session_id: str, key: str, cursor: str, partition: int) -> None:
        self.session_id = session_id
        self.key = key
        self.cursor = cursor
        self.partition = partition
        self.subs: set[Subscription] = set()
        self.suspect = False  # Redis was unreachable: check the stream still follows the cursor
        self.owed = False  # the session owed a reply at the last check


class _Wake:
    """Why a tail is due: whether a notification asked (False: a catch-up read, which finds
    events only if one was lost), and the events notifications carried since, contiguous from
    `prev` (`entries` None: read the stream)."""

    __slots__ = ("entries", "notified", "prev")

    def __init__(self, notified: bool, note: Notification | None = None) -> None:
        self.notified = notified
        carried = _carried(note) if note is not None else None
        self.prev: str | None = carried[0] if carried is not None else None
        self.entries: list[StreamEntry] | None = carried[1] if carried is not None else None

    def add(self, note: Notification) -> None:
        """Another notification of the same session before the fetcher got to this one."""
        self.notified = True
        carried = _carried(note) if self.entries is not None else None
        if self.entries is not None and carried is not None and carried[0] == self.entries[-1].id:
            self.entries = self.entries + carried[1]
        else:
            self.entries = None

    def inline(self, cursor: str) -> list[StreamEntry] | None:
        """The carried events after `cursor`, or None when they cannot say (read instead)."""
        if self.prev is None or self.entries is None:
            return None
        at = parse_stream_id(cursor)
        ids = [parse_stream_id(self.prev), *(parse_stream_id(e.id) for e in self.entries)]
        if at in ids:
            return self.entries[ids.index(at) :]
        if at > ids[-1]:
            return []  # passed already
        return None


def _carried(note: Notification) -> tuple[str, list[StreamEntry]] | None:
    """A notification's events when they can stand for a read: they follow `prev` in the
    stream (not so in a stream created anew after it was lost, whose ids may start lower)."""
    carried = note.events()
    if carried is None:
        return None
    try:
        follows = parse_stream_id(carried[1][0].id) > parse_stream_id(carried[0])
    except InvalidLastEventId:  # not written by this code: read the stream instead
        return None
    return carried if follows else None


def _stream_id(value: str | None) -> StreamId | None:
    try:
        return parse_stream_id(value) if value is not None else None
    except InvalidLastEventId:
        return None


class _Reader:
    """One blocking XREAD over notification streams (its partitions' keys, one slot each on a
    cluster), handing the notified sessions to the hub's fetcher."""

    def __init__(self, hub: StreamHub, partitions: list[int]) -> None:
        self.hub = hub
        self.partitions = set(partitions)
        self.keys = [hub.keys.notify(p) for p in partitions]
        self.cursors: dict[str, str] = {}
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        hub = self.hub
        backoff = 0.05
        synced = False
        while not hub.closed:
            try:
                if not synced:
                    await self._sync()
                    synced = True
                streams: dict[Any, Any] = dict(self.cursors)
                with translate_errors():
                    reply = await hub.client.xread(streams, count=_NOTIFY_COUNT, block=hub.block_ms)
            except StoreUnavailable as exc:
                log.warning("stream reader: %s; retrying in %.2fs", exc, backoff)
                synced = False
                hub._suspect(self.partitions)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            for key, rows in _rows(reply):
                if not rows:
                    continue
                self.cursors[key] = rows[-1][0]
                for _, fields in rows:
                    if fields.get("gone"):
                        hub._gone(fields.get("s"))
                    else:
                        hub._notified(fields)

    async def _sync(self) -> None:
        """Start from the partitions' current ends, then re-read every tail in them: whatever
        was notified before these ends is already in the sessions' streams.

        Also after a reconnect: Redis may have restarted or failed over and lost the newest
        notifications, and the cursors must not point past what the streams will generate.
        """
        with translate_errors():
            pipe = self.hub.client.pipeline(transaction=False)
            for key in self.keys:
                pipe.xrevrange(key, count=1)
            ends = await pipe.execute()
        self.cursors = {
            key: (rows[0][0] if rows else "0-0") for key, rows in zip(self.keys, ends, strict=True)
        }
        self.hub._catch_up(self.partitions)


class StreamHub:
    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        *,
        cluster: bool,
        partitions: int,
        block_ms: int,
        check_seconds: float,
        sweep_seconds: float,
        max_backlog: int,
        on_owing: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.cluster = cluster
        self.partitions = partitions
        self.block_ms = block_ms
        self.check_seconds = check_seconds
        self.sweep_seconds = sweep_seconds
        self.max_backlog = max_backlog
        self.closed = False
        self._tails: dict[str, _Tail] = {}  # by session id
        self._readers: list[_Reader] = []
        # Tails due, in order (a dict as an ordered set), each with why (see `_Wake`).
        self._due: dict[str, _Wake] = {}
        self._has_due = asyncio.Event()
        # By session, the last event id of the notifications read (since the last reader sync,
        # within _SEEN_SECONDS; None: one named no event), and when: a new tail whose start is
        # that id has nothing to read yet (what follows has notifications still to come).
        self._seen: OrderedDict[str, tuple[float, StreamId | None]] = OrderedDict()
        # Tails the next check looks at (see the module doc): new, read with events, or owing.
        self._watched: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.leaving = False  # `going_away` was called
        # Called with open streams' sessions that owe a reply (the reply runner's `recheck`).
        self.on_owing = on_owing

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        # A multi-key XREAD must stay in one slot on a cluster: one reader per partition there.
        groups = (
            [[p] for p in range(self.partitions)]
            if self.cluster
            else [list(range(self.partitions))]
        )
        for group in groups:
            reader = _Reader(self, group)
            reader.task = self._spawn(reader.run())
            self._readers.append(reader)
        self._spawn(self._fetch_loop())
        self._spawn(self._check_loop())

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
        self._has_due.set()
        # The readers sit in a blocking XREAD: cancelling drops their connections, which the
        # client is about to close anyway.
        await cancel_and_wait(list(self._tasks), deadline_s=2)

    # ------------------------------------------------------------ subscriptions

    def new_subscription(self, session_id: str) -> Subscription:
        """A subscription that receives nothing until `attach`ed (by the SSE generator, once
        the response streams: a HEAD request, which never streams, leaves nothing behind)."""
        return Subscription(session_id, self.max_backlog)

    def attach(self, sub: Subscription, after: str) -> bool:
        """Start passing the session's events after stream id `after` to `sub`.

        Returns whether the subscriber must back-fill: an existing tail may already be past
        `after`, and the subscriber then reads that part itself. A new tail starts at `after`
        and is read at once (its events may all have been notified before it existed), unless
        the notifications read lately for the session end at `after` (a chat POST's stream,
        which starts at the event it has just written).
        """
        if self.closed or self.leaving:
            sub.close("shutdown")
            return False
        sid = sub.session_id
        tail = self._tails.get(sid)
        if tail is None:
            partition = stream_partition(sid, self.partitions)
            tail = _Tail(sid, self.keys.events(sid), after, partition)
            self._tails[sid] = tail
            seen = self._seen.get(sid)
            fresh = seen is not None and time.monotonic() - seen[0] < _SEEN_SECONDS
            if not (fresh and seen is not None and seen[1] == parse_stream_id(after)):
                self._mark_due(tail, notified=True)
            self._watched.add(sid)  # it may owe a reply: the client waits for it
        tail.subs.add(sub)
        return parse_stream_id(tail.cursor) > parse_stream_id(after)

    def unsubscribe(self, sub: Subscription) -> None:
        tail = self._tails.get(sub.session_id)
        if tail is None or sub not in tail.subs:
            return
        tail.subs.discard(sub)
        if not tail.subs:
            del self._tails[sub.session_id]

    def stats(self) -> dict[str, int]:
        return {
            "sessions": len(self._tails),
            "subscriptions": sum(len(t.subs) for t in self._tails.values()),
            "readers": sum(1 for r in self._readers if r.task is not None and not r.task.done()),
        }

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ reading

    def _mark_due(self, tail: _Tail, *, notified: bool) -> None:
        """Read the tail's stream after its cursor."""
        wake = self._due.get(tail.session_id)
        self._due[tail.session_id] = _Wake(notified or (wake is not None and wake.notified))
        self._has_due.set()

    def _notified(self, fields: dict[str, str]) -> None:
        note = Notification(fields)
        session_id = note.session_id
        if not session_id:
            return
        self._saw(session_id, note)
        if session_id not in self._tails:
            return
        wake = self._due.get(session_id)
        if wake is None:
            self._due[session_id] = _Wake(True, note)
        else:
            wake.add(note)
        self._has_due.set()

    def _saw(self, session_id: str, note: Notification) -> None:
        """Remember how far the notifications of a session went (the highest id: on a cluster
        two writers' notifications may come in either order)."""
        now = time.monotonic()
        last = _stream_id(note.last)
        old = self._seen.pop(session_id, None)
        if old is not None and (old[1] is None or last is None):
            last = None
        elif old is not None and old[1] is not None and last is not None:
            last = max(old[1], last)
        self._seen[session_id] = (now, last)
        while self._seen:
            oldest = next(iter(self._seen.values()))[0]
            if now - oldest < _SEEN_SECONDS and len(self._seen) <= _SEEN_MAX:
                break
            self._seen.popitem(last=False)

    def _gone(self, session_id: str | None) -> None:
        """The session's keys were deleted: its streams end (the client is told why)."""
        if session_id:
            self._seen.pop(session_id, None)  # a session created again starts with a read
        tail = self._tails.get(session_id) if session_id else None
        if tail is not None:
            for sub in tuple(tail.subs):
                sub.close("gone")

    def _catch_up(self, partitions: set[int]) -> None:
        # Notifications were skipped: what `_seen` says of these partitions is not all.
        for sid in [s for s in self._seen if stream_partition(s, self.partitions) in partitions]:
            del self._seen[sid]
        for tail in self._tails.values():
            if tail.partition in partitions:
                self._mark_due(tail, notified=False)
                # A `gone` notification may be among those lost: the next check looks.
                self._watched.add(tail.session_id)

    def _suspect(self, partitions: set[int]) -> None:
        for tail in self._tails.values():
            if tail.partition in partitions:
                tail.suspect = True

    async def _fetch_loop(self) -> None:
        """Read the due tails' session streams after their cursors, a pipeline at a time.

        The only place that reads session streams for tails, so a tail's cursor has one
        writer: no read overlaps another of the same tail.
        """
        backoff = 0.05
        while not self.closed:
            if not self._due:
                self._has_due.clear()
                await self._has_due.wait()
                continue
            batch: list[tuple[_Tail, _Wake]] = []
            for sid in list(self._due)[:_FETCH_BATCH]:
                wake = self._due.pop(sid)
                tail = self._tails.get(sid)
                if tail is not None:
                    batch.append((tail, wake))
            if not batch:
                continue
            try:
                await self._check_suspects([tail for tail, _ in batch])
                to_read = []
                for tail, wake in batch:
                    carried = wake.inline(tail.cursor)
                    if carried is None:
                        to_read.append((tail, wake))
                    elif carried:
                        metrics.stream_tail_read("notification")
                        self._deliver(tail, carried)
                replies = await self._read([tail for tail, _ in to_read])
            except StoreUnavailable as exc:
                log.warning("stream fetch: %s; retrying in %.2fs", exc, backoff)
                for tail, wake in batch:
                    tail.suspect = True
                    self._mark_due(tail, notified=wake.notified)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            for (tail, wake), reply in zip(to_read, replies, strict=True):
                rows = [row for _, entries in _rows(reply) for row in entries]
                if not rows:
                    continue
                if not wake.notified:
                    metrics.stream_caught_up()
                self._deliver(tail, [StreamEntry.from_redis(i, fields) for i, fields in rows])
                if len(rows) >= _READ_COUNT:
                    self._mark_due(tail, notified=True)  # more to read

    def _deliver(self, tail: _Tail, entries: list[StreamEntry]) -> None:
        tail.cursor = entries[-1].id
        self._watched.add(tail.session_id)  # it may owe a reply now
        for sub in tuple(tail.subs):
            sub.push(entries)

    async def _read(self, tails: list[_Tail]) -> list[Any]:
        if not tails:
            return []
        with translate_errors():
            pipe = self.client.pipeline(transaction=False)
            for tail in tails:
                streams: dict[Any, Any] = {tail.key: tail.cursor}
                pipe.xread(streams, count=_READ_COUNT)
                metrics.stream_tail_read("stream")
            return list(await pipe.execute())

    async def _check_suspects(self, tails: list[_Tail]) -> None:
        """After a Redis outage, check each tail's stream still holds what follows its cursor.

        A restarted Redis may have come back from an older snapshot or without the stream.
        """
        for tail in [t for t in tails if t.suspect]:
            point = await check_resume(self.client, tail.key, tail.cursor)
            tail.suspect = False
            if point.reload:
                tail.cursor = point.after
                for sub in tuple(tail.subs):
                    sub.push(Reload(point.after, point.reason))

    # ------------------------------------------------------------------- checks

    async def _check_loop(self) -> None:
        """End the streams of sessions that are gone, re-read the ones that owe a reply (or
        did at the last check: the notification of the write that settled it may be lost),
        and hand those that owe one to `on_owing` (the reply runner checks someone is
        generating it: a client is waiting on this stream).

        Every `check_seconds` for the watched tails (new, read with events, or owing), every
        `sweep_seconds` for all of them, which are also re-read (see the module doc).
        """
        now = time.monotonic()
        next_check, next_sweep = now + self.check_seconds, now + self.sweep_seconds
        while not self.closed:
            await asyncio.sleep(max(0.0, min(next_check, next_sweep) - time.monotonic()))
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep, next_check = now + self.sweep_seconds, now + self.check_seconds
                self._watched.clear()
                tails = list(self._tails.values())
                for tail in tails:
                    self._mark_due(tail, notified=False)
            elif now >= next_check:
                next_check = now + self.check_seconds
                watched, self._watched = self._watched, set()
                tails = [t for sid in watched if (t := self._tails.get(sid)) is not None]
            else:
                continue
            for start in range(0, len(tails), _CHECK_BATCH):
                if not await self._check(tails[start : start + _CHECK_BATCH]):
                    # Redis is unreachable: look at them again next time.
                    self._watched.update(t.session_id for t in tails[start:])
                    break

    async def _check(self, tails: list[_Tail]) -> bool:
        """One pipelined look at the tails' sessions; False when Redis was unreachable."""
        try:
            with translate_errors():
                pipe = self.client.pipeline(transaction=False)
                for tail in tails:
                    # `owes` is kept by the state writes (write_state.lua) next to the meta
                    # JSON, which is only parsed for a session last written without it.
                    pipe.hmget(self.keys.conversation(tail.session_id), ["owes", "meta"])
                rows = await pipe.execute()
        except StoreUnavailable:
            return False
        owing = []
        for tail, (owes_flag, meta) in zip(tails, rows, strict=True):
            if meta is None:
                for sub in tuple(tail.subs):
                    sub.close("gone")
                continue
            if owes_flag is not None:
                owes = owes_flag == "1"
            else:
                owes = bool(json.loads(meta).get("owes_reply"))
            if owes or tail.owed:
                self._mark_due(tail, notified=False)
            tail.owed = owes
            if owes:
                owing.append(tail.session_id)
                self._watched.add(tail.session_id)
        if owing and self.on_owing is not None:
            try:
                await self.on_owing(owing)
            except StoreUnavailable:
                return False
        return True


def _rows(reply: Any) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
    # RESP2 answers a list of [key, entries]; RESP3 a mapping of key -> entries.
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(k, v) for k, v in reply]
