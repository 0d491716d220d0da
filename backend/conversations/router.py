"""Conversation API: the caller's sessions, their history, posting and the event stream.

Every route is scoped to the authenticated user and tenant; another user's session answers
404 exactly like a missing one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sse_starlette import EventSourceResponse

from backend.api.deps import RuntimeDep, SessionId, SettingsDep, StateManagerDep
from backend.conversations.idempotency import IdempotencyKey
from backend.conversations.schemas import (
    DeletedSessions,
    PostedMessage,
    PostMessageRequest,
    SessionHistory,
    SessionInfo,
)
from backend.core.auth import Principal, PrincipalDep, Unauthorized, decode_token
from backend.core.http import BODY_ERRORS, error_responses
from backend.core.logging import session_from_path
from backend.state.schemas import SessionPage
from backend.streaming.events import (
    STREAM_ID_SCHEMA,
    format_stream_id,
    parse_stream_id,
    resume_point,
)
from backend.streaming.sse import SSE_RESPONSES, session_batches, sse_response

router = APIRouter(
    dependencies=[Depends(session_from_path)],
    prefix="/api/conversations",
    tags=["conversations"],
    responses=error_responses(401, 422, 503),
)
_SESSION = error_responses(404)
_POST = error_responses(*BODY_ERRORS, 404, 409, 429)

_stream_bearer = HTTPBearer(auto_error=False)


async def stream_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_stream_bearer)],
    access_token: Annotated[
        str | None,
        Query(
            max_length=4096,
            description="The bearer token, for clients that cannot set headers (a browser "
            "EventSource). Prefer the Authorization header: URLs end up in logs.",
        ),
    ] = None,
) -> Principal:
    """Bearer token from the Authorization header, or from `?access_token=` on streams."""
    settings = request.app.state.settings
    if credentials is not None:
        return decode_token(settings, credentials.credentials)
    if access_token:
        return decode_token(settings, access_token)
    raise Unauthorized("missing bearer token (Authorization: Bearer <jwt> or ?access_token=)")


@router.get("/sessions", response_model=SessionPage)
async def list_sessions(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SessionPage:
    """The caller's sessions, most recently updated first, paginated."""
    return await runtime.interviewer.list_sessions(principal, offset, limit)


@router.delete("/sessions", response_model=DeletedSessions)
async def delete_all_sessions(principal: PrincipalDep, runtime: RuntimeDep) -> DeletedSessions:
    """Delete every session of the caller (except those PostgreSQL has not stored yet)."""
    return await runtime.interviewer.delete_all(principal)


@router.get("/sessions/{session_id}", response_model=SessionHistory, responses=_SESSION)
async def get_history(
    session_id: SessionId, principal: PrincipalDep, runtime: RuntimeDep
) -> SessionHistory:
    """The session's messages (hot window) and the stream position they cover."""
    return await runtime.interviewer.get_history(principal, session_id)


@router.get("/sessions/{session_id}/info", response_model=SessionInfo, responses=_SESSION)
async def get_info(
    session_id: SessionId, principal: PrincipalDep, runtime: RuntimeDep
) -> SessionInfo:
    """Status, counts, timestamps, version and reply progress of the session."""
    return await runtime.interviewer.get_conversation_status(principal, session_id)


@router.post(
    "/sessions/{session_id}/messages",
    status_code=202,
    response_model=PostedMessage,
    responses=_POST,
)
async def post_message(
    session_id: SessionId,
    body: PostMessageRequest,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> PostedMessage:
    """Store a user message; its reply streams on the session's events (from `event_id`)."""
    posted = await runtime.interviewer.continue_conversation(
        principal, session_id, body.message, idempotency_key=idempotency_key
    )
    return posted.public()


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404, 409),
)
async def delete_session(
    session_id: SessionId, principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    """Delete the session (its state, history window and event stream)."""
    await runtime.interviewer.delete_session(principal, session_id)
    return Response(status_code=204)


@router.get(
    "/sessions/{session_id}/events",
    response_class=EventSourceResponse,
    responses={**SSE_RESPONSES, **error_responses(400, 404)},
)
async def stream_events(
    session_id: SessionId,
    principal: Annotated[Principal, Depends(stream_principal)],
    runtime: RuntimeDep,
    manager: StateManagerDep,
    settings: SettingsDep,
    last_event_id_header: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Resume after this event id (as sent in an event's `id`).",
            json_schema_extra=STREAM_ID_SCHEMA,
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        # Checked by the route (400, as for the header), not by FastAPI (422): the schema
        # only documents the form.
        Query(
            description="Resume after this event id (when no header).",
            json_schema_extra=STREAM_ID_SCHEMA,
        ),
    ] = None,
) -> EventSourceResponse:
    """The session's event stream (SSE); resumes after Last-Event-ID (header or query)."""
    raw = last_event_id_header or last_event_id or None  # the header wins: it is fresher
    after = format_stream_id(parse_stream_id(raw)) if raw is not None else None
    conversation = await runtime.interviewer.get_owned(principal, session_id)
    await runtime.runner.ensure(conversation)
    point = await resume_point(manager, session_id, after)
    sub = runtime.hub.new_subscription(session_id)
    return sse_response(session_batches(runtime.hub, manager, sub, point), sub, settings)
