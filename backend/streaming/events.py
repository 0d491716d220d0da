"""Stream ids, resume checks and the SSE wire format of session events.

Every SSE event carries as `id` the Redis Stream entry id it came from, so `Last-Event-ID` is a
position in the session's stream that any replica understands. Before resuming after an id we
check that the stream still holds everything after it (`check_resume`); when it does not, the
client gets an explicit `reload` event and reloads the history over REST.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic.config import JsonDict
from redis import exceptions as redis_errors
from sse_starlette import ServerSentEvent

from backend.core.errors import TriageError
from backend.core.redis import RedisClient, translate_errors
from backend.state.schemas import StreamEntry
from backend.state.service import ConversationStateManager

StreamId = tuple[int, int]

ZERO_ID = "0-0"
_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
# OpenAPI only: the form of a stream id (`parse_stream_id` checks it, and its range, with 400).
STREAM_ID_SCHEMA: JsonDict = {"pattern": _ID.pattern, "maxLength": 41}
_MAX_PART = 2**64 - 1  # Redis stream ids are two unsigned 64-bit integers

# Sent as the first event's `retry:` field: an EventSource whose replica went away reconnects
# (to any replica, with Last-Event-ID) after one second instead of the browser default of ~3 s.
RECONNECT_MS = 1_000


class InvalidLastEventId(TriageError):
    status_code = 400
    code = "invalid_last_event_id"


def parse_stream_id(value: str) -> StreamId:
    """Parse `<ms>-<seq>`; raise `InvalidLastEventId` on anything else (never a Redis error)."""
    match = _ID.match(value.strip())
    if match is None:
        raise InvalidLastEventId(
            "Last-Event-ID must be a stream id of the form <milliseconds>-<sequence> "
            "(e.g. 1700000000000-0), as sent in the `id` field of an event; use 0-0 for the "
            "start of the stream",
            last_event_id=value[:64],
        )
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms > _MAX_PART or seq > _MAX_PART:
        raise InvalidLastEventId(
            "Last-Event-ID is out of range for a stream id", last_event_id=value[:64]
        )
    return ms, seq


def format_stream_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


@dataclass(frozen=True)
class ResumePoint:
    """Where a stream of events for a client starts.

    `after`: the id to stream after. `reload`: the client missed events (trimmed, lost or
    foreign id) and must reload the history; `after` is then the stream's current end.
    """

    after: str
    reload: bool = False
    reason: str | None = None


# Runs one Redis command (a tuple of its arguments) and returns its parsed reply.
Run = Callable[[tuple[Any, ...]], Awaitable[Any]]


async def resume_point(
    manager: ConversationStateManager, session_id: str, after: str | None
) -> ResumePoint:
    """`check_resume` on a session's event stream, for routes: through the state store's
    auto-pipeline, so a burst of stream opens (clients reconnecting after a deploy) shares
    round trips and connections instead of growing the pool by one per open."""
    return await _check_resume(manager.run_command, manager.keys.events(session_id), after)


async def check_resume(client: RedisClient, stream_key: str, after: str | None) -> ResumePoint:
    """Decide where to resume a client that has seen everything up to `after` (None: new client).

    The stream holds every entry after `after` only when `after` lies within what it retains.
    Redis 7.0 records no id for entries removed by MAXLEN trimming, so a trimmed stream is
    recognised by `entries-added > length` and then anything older than the first retained
    entry is a gap. An id newer than the last one ever generated, or one within the stream's
    range that it does not hold, means the stream lost entries the client saw (`stream_lost`:
    Redis came back from an older state, and may have taken new entries since); one before the
    first entry of an untrimmed stream is not from this stream's lifetime (`unknown_id`): both
    are gaps. A missing stream (its state
    restored from PostgreSQL, or Redis lost it) has nothing to resume from except its very
    start, `0-0`.
    """

    async def run(command: tuple[Any, ...]) -> Any:
        return await client.execute_command(*command)

    return await _check_resume(run, stream_key, after)


async def _check_resume(run: Run, stream_key: str, after: str | None) -> ResumePoint:
    with translate_errors():
        try:
            # "XINFO STREAM" as one name: redis-py parses the reply by it (and splits it).
            info = await run(("XINFO STREAM", stream_key))
        except redis_errors.ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            info = None
    if info is None:
        if after is None or after == ZERO_ID:
            return ResumePoint(after=ZERO_ID)
        return ResumePoint(after=ZERO_ID, reload=True, reason="stream_lost")
    last = str(info["last-generated-id"])
    if after is None:
        return ResumePoint(after=last)
    wanted, last_id = parse_stream_id(after), parse_stream_id(last)
    trimmed = int(info.get("entries-added", 0)) > int(info["length"])
    first = info.get("first-entry")
    first_id = parse_stream_id(str(first[0])) if first else None
    if wanted > last_id:
        # Never generated by this stream: it lost its newest entries (a Redis restart from an
        # older snapshot, or an AOF that lost its last second), and the client may be waiting
        # for a reply to a message that is gone.
        return ResumePoint(after=last, reload=True, reason="stream_lost")
    if first_id is not None and wanted >= first_id:
        if wanted != (0, 0) and not await _holds(run, stream_key, after):
            # Within the stream's range yet not in it (entries leave only by trimming, from
            # the oldest end): Redis lost it, and newer entries were written since.
            return ResumePoint(after=last, reload=True, reason="stream_lost")
        return ResumePoint(after=after)
    if wanted == (0, 0) and not trimmed:
        return ResumePoint(after=after)
    if first_id is None and wanted == last_id:
        return ResumePoint(after=after)
    return ResumePoint(after=last, reload=True, reason="trimmed" if trimmed else "unknown_id")


async def _holds(run: Run, stream_key: str, entry_id: str) -> bool:
    with translate_errors():
        return bool(await run(("XRANGE", stream_key, entry_id, entry_id, "COUNT", 1)))


def to_sse(session_id: str, entry: StreamEntry) -> ServerSentEvent:
    """One stream entry as an SSE event: `id` = entry id, `event` = type, `data` = JSON."""
    payload = {"session_id": session_id, "version": entry.version, **entry.data}
    return ServerSentEvent(
        id=entry.id,
        event=entry.type,
        data=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
    )


def reload_event(session_id: str, point: ResumePoint) -> ServerSentEvent:
    """Tell the client it missed events: reload the history, then keep reading this stream.

    Its id is the stream position the history reload covers, so an EventSource that reconnects
    afterwards resumes from there instead of from its stale id (which would reload again).
    """
    payload = {
        "session_id": session_id,
        "reason": point.reason,
        "message": "events after your Last-Event-ID are no longer available; reload the "
        "history (GET /api/conversations/sessions/{session_id}) and keep reading this stream",
        "history_url": f"/api/conversations/sessions/{session_id}",
    }
    return ServerSentEvent(
        id=point.after, event="reload", data=json.dumps(payload, ensure_ascii=False)
    )


def error_event(session_id: str, code: str, message: str) -> ServerSentEvent:
    """A transient error of this connection (not stored in the stream, so no id)."""
    payload = {"session_id": session_id, "code": code, "message": message}
    return ServerSentEvent(event="error", data=json.dumps(payload, ensure_ascii=False))
