"""The chat endpoint: post a message and stream its reply as Server-Sent Events."""

from __future__ import annotations

import time

from fastapi import APIRouter
from sse_starlette import EventSourceResponse

from backend.api.deps import RuntimeDep
from backend.conversations.idempotency import IdempotencyKey
from backend.conversations.schemas import ChatRequest
from backend.core.auth import PrincipalDep
from backend.core.http import BODY_ERRORS, error_responses
from backend.core.logging import bind_session
from backend.state.schemas import StreamEntry
from backend.streaming.events import ResumePoint, resume_point
from backend.streaming.sse import SSE_RESPONSES, EntryTest, session_batches, sse_response

router = APIRouter(prefix="/api/agents", tags=["agents"])
_ERRORS = error_responses(*BODY_ERRORS, 401, 404, 409, 429, 503)

_REPLY_EVENTS = {"message.started", "message.delta", "message.completed", "error"}


def reply_filters(seq: int) -> tuple[EntryTest, EntryTest]:
    """(ends, skip) for the stream of the reply to user message `seq`.

    The stream ends with the first reply that answers `seq` (a reply answers every message
    stored before it started): its `message.completed`, or an `error` that is not followed by
    another attempt. Events of an earlier reply still running when the message arrived are
    skipped, so a client can concatenate every `message.delta` it gets.
    """

    def answers(entry: StreamEntry) -> bool:
        return int(entry.data.get("in_reply_to") or 0) >= seq

    def ends(entry: StreamEntry) -> bool:
        if entry.type == "message.completed":
            return answers(entry)
        if entry.type == "error":
            return answers(entry) and not entry.data.get("retrying")
        return False

    def skip(entry: StreamEntry) -> bool:
        return entry.type in _REPLY_EVENTS and not answers(entry)

    return ends, skip


@router.post("/chat", response_class=EventSourceResponse, responses={**SSE_RESPONSES, **_ERRORS})
async def chat(
    body: ChatRequest,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> EventSourceResponse:
    """Send a message (new session without session_id) and stream its reply as SSE."""
    posted_at = time.monotonic()
    manager = runtime.manager
    if body.session_id is None:
        _, posted = await runtime.interviewer.start_conversation(
            principal, body.message, idempotency_key=idempotency_key
        )
        assert posted is not None
    else:
        posted = await runtime.interviewer.continue_conversation(
            principal, body.session_id, body.message, idempotency_key=idempotency_key
        )
    bind_session(posted.session_id)
    point = ResumePoint(after=posted.entry.id)
    if posted.replayed:
        # A retry: the reply may have gone on (or be over) since. Stream it from the stored
        # message on, as a reconnect with Last-Event-ID would (a `reload` if the stream lost it).
        point = await resume_point(manager, posted.session_id, posted.entry.id)
    ends, skip = reply_filters(posted.message.seq)
    sub = runtime.hub.new_subscription(posted.session_id)
    content = session_batches(
        runtime.hub,
        manager,
        sub,
        point,
        first=[] if point.reload else [posted.entry],
        ends=ends,
        skip=skip,
        posted_at=posted_at,
    )
    return sse_response(content, sub, runtime.settings, headers={"X-Session-Id": posted.session_id})
