"""SSE responses over session streams: back-fill, live tail, reload, clean endings.

A stream starts at a resume point (see `events.check_resume`): it subscribes to the replica's
hub first, back-fills from Redis with XRANGE when the session's tail is already past that point
(a new tail starts there and reads everything itself), then passes on what the hub reads,
skipping ids it has already sent. It ends when the client goes away, when `ends(entry)` says
so (the chat POST's stream ends with its reply), when the session is deleted, when the client
is too slow, or on server shutdown (`StreamHub.going_away` closes the subscription; the
generator returns, so the response ends cleanly instead of being cancelled, and the client
resumes elsewhere). The response itself is `backend.streaming.response.StreamResponse`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any

from sse_starlette import ServerSentEvent

from backend.core import metrics
from backend.core.config import Settings
from backend.core.errors import StoreUnavailable
from backend.core.replica_stats import replica_stats
from backend.state.schemas import StreamEntry
from backend.state.service import ConversationStateManager
from backend.streaming.events import (
    RECONNECT_MS,
    STREAM_ID_SCHEMA,
    ResumePoint,
    error_event,
    format_stream_id,
    parse_stream_id,
    reload_event,
    to_sse,
)
from backend.streaming.hub import StreamHub
from backend.streaming.response import StreamResponse
from backend.streaming.subscription import Reload, Subscription

_BACKFILL_PAGE = 500

EntryTest = Callable[[StreamEntry], bool]

_CLOSE_REASONS = {
    "gone": ("session_not_found", "the session was deleted or has expired"),
    "overflow": (
        "stream_overflow",
        "the client read events too slowly; reconnect with Last-Event-ID to resume",
    ),
}


async def one_at_a_time(
    batches: AsyncGenerator[list[ServerSentEvent]],
) -> AsyncIterator[ServerSentEvent]:
    """The events of `session_batches`, one at a time (the WebSocket sends each in its own
    frame)."""
    try:
        async for batch in batches:
            for event in batch:
                yield event
    finally:
        await batches.aclose()


async def session_batches(
    hub: StreamHub,
    manager: ConversationStateManager,
    sub: Subscription,
    point: ResumePoint,
    *,
    first: Iterable[StreamEntry] = (),
    ends: EntryTest | None = None,
    skip: EntryTest | None = None,
    posted_at: float | None = None,
) -> AsyncGenerator[list[ServerSentEvent]]:
    """The SSE events of one session after `point` (see module doc). Unsubscribes on exit.

    Events come in batches: those ready together (the entries one read returned, the `first`
    ones), which an SSE response writes to its socket at once (one write, one pass through
    the middlewares, instead of one per event: a chat message's five events take three).
    `posted_at` (`time.monotonic()` when a chat POST arrived): the time to the first event is
    recorded for the operations page."""
    sid = sub.session_id
    last = parse_stream_id(point.after)
    retry_sent = False

    def emit(event: ServerSentEvent) -> ServerSentEvent:
        nonlocal retry_sent
        if not retry_sent:
            event.retry = RECONNECT_MS
            retry_sent = True
            if posted_at is not None:
                replica_stats.first_event(time.monotonic() - posted_at)
        return event

    replica_stats.stream_opened()
    try:
        # Attach before the back-fill, so nothing falls in between.
        backfill = hub.attach(sub, point.after)
        batch: list[ServerSentEvent] = []
        if point.reload:
            batch.append(emit(reload_event(sid, point)))
        for entry in first:
            last = max(last, parse_stream_id(entry.id))
            batch.append(emit(to_sse(sid, entry)))
            if ends is not None and ends(entry):
                yield batch
                return
        if batch:
            # Now, not with the back-fill: the first event is the post's acknowledgement.
            yield batch
        after = format_stream_id(last)
        try:
            while backfill:
                page = await manager.read_events(sid, after=after, count=_BACKFILL_PAGE)
                batch = []
                for entry in page:
                    last = parse_stream_id(entry.id)
                    if skip is None or not skip(entry):
                        batch.append(emit(to_sse(sid, entry)))
                    if ends is not None and ends(entry):
                        yield batch
                        return
                if batch:
                    yield batch
                if len(page) < _BACKFILL_PAGE:
                    break
                after = page[-1].id
        except StoreUnavailable:
            yield [error_event(sid, "store_unavailable", "the event store is unavailable; retry")]
            return
        while True:
            item = await sub.next()
            if item is None:
                if sub.reason in ("overflow", "shutdown"):
                    metrics.stream_cut(sub.reason)
                if sub.reason in _CLOSE_REASONS:
                    yield [error_event(sid, *_CLOSE_REASONS[sub.reason])]
                return
            if isinstance(item, Reload):
                last = parse_stream_id(item.after)
                yield [emit(reload_event(sid, ResumePoint(item.after, True, item.reason)))]
                if ends is not None and item.reason == "stream_lost":
                    # A stream that waits for one reply (the chat POST): Redis may have lost
                    # the message it answers, so the reply may never come. The client reloads
                    # the history and sends it again if it is gone.
                    return
                continue
            batch = []
            for entry in item:
                entry_id = parse_stream_id(entry.id)
                if entry_id <= last:
                    continue  # already sent by the back-fill
                last = entry_id
                if skip is None or not skip(entry):
                    batch.append(emit(to_sse(sid, entry)))
                if ends is not None and ends(entry):
                    yield batch
                    return
            if batch:
                yield batch
    finally:
        replica_stats.stream_closed()
        hub.unsubscribe(sub)


# The keep-alive comment, the same bytes every time: it only has to reach the proxies, and a
# constant spares each ping of each open stream sse-starlette's default timestamp formatting.
_PING = ServerSentEvent(comment="ping").encode()


async def _written(batches: AsyncIterator[list[ServerSentEvent]]) -> AsyncIterator[bytes]:
    """Each batch as one chunk of the response (the events' wire format, concatenated),
    counted, with the stream counted open meanwhile."""
    metrics.sse_opened()
    try:
        async for batch in batches:
            metrics.sse_events_sent(len(batch))
            yield b"".join([event.encode() for event in batch])
    finally:
        metrics.sse_closed()
        # Closed now, not when collected: its own clean-up (unsubscribing) must not wait.
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()


def sse_response(
    content: AsyncIterator[list[ServerSentEvent]],
    sub: Subscription,
    settings: Settings,
    headers: dict[str, str] | None = None,
) -> StreamResponse:
    """The SSE response of `session_batches` with the service's pings, send timeout and
    shutdown grace."""
    return StreamResponse(
        _written(content),
        subscription=sub,
        headers=headers,
        ping_seconds=settings.sse_ping_seconds,
        ping=_PING,
        send_timeout=settings.sse_send_timeout_seconds,
        shutdown_grace=settings.sse_shutdown_grace_seconds,
    )


# One event of the stream. Before OpenAPI 3.2 (`itemSchema`), the convention is that the
# `schema` of `text/event-stream` describes each event, as an object of its fields.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "description": "The event type (see the SSE contract)."},
        "id": {
            **STREAM_ID_SCHEMA,
            "type": "string",
            "description": "The Redis Stream entry id: resume after it with Last-Event-ID. "
            "Absent on events that are not stored in the stream.",
        },
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"type": "object", "required": ["session_id"]},
        },
        "retry": {"type": "integer", "minimum": 0},
    },
}

SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events (see the README's SSE contract): each event has "
        "`id` (the Redis Stream entry id), `event` (its type) and JSON `data`.",
        "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
    }
}
