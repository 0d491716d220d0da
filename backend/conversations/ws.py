"""WebSocket transport: two-way chat on one connection, next to the SSE routes.

The socket carries the very events of the SSE stream (`streaming.sse.session_batches`: same
types, ids and JSON, same back-fill, resume and `reload` rule), each as a JSON frame
`{"type": "event", "event", "id", "data"}`, and takes `{"type": "message"}` frames whose
`client_id` is the post's Idempotency-Key: a frame resent after a dropped socket is stored
once, and acknowledged again with the first `seq` and `event_id`.

Authentication is a bearer token in the `Authorization` header or, for browsers (which cannot
set headers on a WebSocket), a first `{"type": "auth", "token"}` frame; never the URL, which
ends up in logs. Errors of one frame (rate limit, size, a reused client_id) answer an `error`
frame in the REST error shape and keep the socket open; errors of the connection close it
with a code that says why (see `CLOSE_*`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from sse_starlette import ServerSentEvent
from starlette.websockets import WebSocketState

from backend.conversations.idempotency import IDEMPOTENCY_KEY_MAX_LENGTH, IDEMPOTENCY_KEY_PATTERN
from backend.conversations.schemas import SESSION_ID_PATTERN
from backend.conversations.service import Posted
from backend.core import metrics
from backend.core.auth import Principal, Unauthorized, decode_token
from backend.core.errors import TriageError
from backend.core.logging import bind_session
from backend.state.schemas import StreamEntry
from backend.streaming.events import (
    ResumePoint,
    format_stream_id,
    parse_stream_id,
    resume_point,
)
from backend.streaming.sse import one_at_a_time, session_batches
from backend.streaming.tasks import cancel_and_wait

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

CLOSE_GOING_AWAY = 1001  # server shutdown: reconnect (to any replica) with the last id
CLOSE_POLICY = 1008  # a malformed frame, or a reader too slow for the send timeout
CLOSE_TOO_BIG = 1009  # a frame over MAX_BODY_BYTES
CLOSE_TRY_AGAIN = 1013  # Redis or PostgreSQL unavailable while opening (HTTP 503)
CLOSE_UNAUTHORIZED = 4401  # no, a bad or an expired token (HTTP 401)
CLOSE_NOT_FOUND = 4404  # not the caller's session, or deleted (HTTP 404)

_CLIENT_ID = re.compile(IDEMPOTENCY_KEY_PATTERN)
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


class _Closed(Exception):
    """End the connection with this close code (after an `error` frame saying why)."""

    def __init__(self, code: int, error: str, message: str) -> None:
        super().__init__(message)
        self.code, self.error, self.message = code, error, message


def _error_frame(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"type": "error", "error": {"code": code, "message": message, **details}}


def event_frame(event: ServerSentEvent) -> dict[str, Any]:
    """One SSE event as a frame: the same `event`, `id` and JSON `data`."""
    data = event.data
    return {
        "type": "event",
        "event": event.event,
        "id": event.id,
        "data": json.loads(data) if isinstance(data, str) else data,
    }


class _Socket:
    """Serialised, time-limited, counted sends on one accepted WebSocket."""

    def __init__(self, ws: WebSocket, send_timeout: float, max_bytes: int) -> None:
        self.ws = ws
        self.send_timeout = send_timeout
        self.max_bytes = max_bytes
        self._lock = asyncio.Lock()

    async def send(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        async with self._lock:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands as the send completes (see backend/streaming/tasks.py), which left
                # a cancelled pump waiting for the next event forever.
                async with asyncio.timeout(self.send_timeout):
                    await self.ws.send_text(text)
            except TimeoutError:
                # A reader this slow holds the replica's memory: cut it; it resumes by id.
                raise _Closed(
                    CLOSE_POLICY, "send_timeout", "the client read too slowly; reconnect"
                ) from None
        metrics.ws_frame("out")

    async def receive(self) -> dict[str, Any]:
        """The next client frame as a JSON object (a malformed one closes the socket)."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        metrics.ws_frame("in")
        raw = message.get("text")
        if raw is None:
            raw = (message.get("bytes") or b"").decode("utf-8", "replace")
        if len(raw.encode("utf-8", "surrogatepass")) > self.max_bytes:
            raise _Closed(
                CLOSE_TOO_BIG, "frame_too_large", f"a frame may hold at most {self.max_bytes} bytes"
            )
        try:
            frame = json.loads(raw)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise _Closed(CLOSE_POLICY, "invalid_frame", 'frames are JSON objects with a "type"')
        return frame

    async def close(self, code: int, reason: str = "") -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            metrics.ws_server_closed(reason)
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason[:120])


def _header_token(ws: WebSocket) -> str | None:
    value = ws.headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <jwt>'")
    return token.strip()


async def _authenticate(ws: WebSocket, sock: _Socket) -> tuple[Principal, str | None]:
    """(principal, last_event_id): from the headers, or from a first `auth` frame."""
    settings = ws.app.state.settings
    after = ws.headers.get("last-event-id") or ws.query_params.get("last_event_id")
    token = _header_token(ws)
    if token is None:
        try:
            async with asyncio.timeout(settings.ws_auth_timeout_seconds):
                frame = await sock.receive()
        except TimeoutError:
            raise Unauthorized("no auth frame in time") from None
        if frame["type"] != "auth" or not isinstance(frame.get("token"), str):
            raise Unauthorized(
                "send the bearer token in the Authorization header or a first frame "
                '{"type": "auth", "token": "<jwt>"}'
            )
        token = frame["token"]
        if isinstance(frame.get("last_event_id"), str):
            after = frame["last_event_id"]
    return decode_token(settings, token), after


async def _serve(ws: WebSocket, session_id: str | None) -> None:
    settings = ws.app.state.settings
    runtime = ws.app.state.runtime
    manager = ws.app.state.state_manager
    sock = _Socket(ws, settings.ws_send_timeout_seconds, settings.max_body_bytes)
    await ws.accept()
    metrics.ws_opened()
    pump: asyncio.Task[None] | None = None
    try:
        principal, raw_after = await _authenticate(ws, sock)
        after = format_stream_id(parse_stream_id(raw_after)) if raw_after else None
        if session_id is not None:
            pump = await _start_pump(sock, runtime, manager, principal, session_id, after)
        while True:
            frame = await sock.receive()
            if frame["type"] == "ping":
                await sock.send({"type": "pong"})
                continue
            if frame["type"] != "message":
                unknown = f"unknown frame type {frame['type']!r}"
                raise _Closed(CLOSE_POLICY, "invalid_frame", unknown)
            posted = await _post(sock, runtime, principal, session_id, frame)
            if posted is not None and session_id is None:
                # The first message opened the session: stream it from that message on, as
                # the chat POST does (a replayed one as a reconnect after it would).
                session_id = posted.session_id
                first = [] if posted.replayed else [posted.entry]
                pump = await _start_pump(
                    sock, runtime, manager, principal, session_id, posted.entry.id, first
                )
            if pump is not None and pump.done():
                pump.result()  # re-raises a close decided by the stream
    except _Closed as closed:
        with contextlib.suppress(Exception):
            await sock.send(_error_frame(closed.error, closed.message))
        await sock.close(closed.code, closed.error)
    except TriageError as exc:
        code = {401: CLOSE_UNAUTHORIZED, 404: CLOSE_NOT_FOUND, 503: CLOSE_TRY_AGAIN}.get(
            exc.status_code, CLOSE_POLICY
        )
        with contextlib.suppress(Exception):
            await sock.send(_error_frame(exc.code, exc.message, **exc.details))
        await sock.close(code, exc.code)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away (RuntimeError: a send raced its close)
    finally:
        if pump is not None:
            # Its clean-up (unsubscribing) normally runs before we return; a bounded wait, so
            # a send stuck on a dead peer never holds the handler (and a server shutdown).
            await cancel_and_wait([pump], 1.0)
        metrics.ws_closed()


async def _post(
    sock: _Socket,
    runtime: Any,
    principal: Principal,
    session_id: str | None,
    frame: dict[str, Any],
) -> Posted | None:
    """Store one `message` frame and acknowledge it (None: refused, an error frame said why)."""
    client_id, text = frame.get("client_id"), frame.get("message")
    if (
        not isinstance(client_id, str)
        or len(client_id) > IDEMPOTENCY_KEY_MAX_LENGTH
        or not (_CLIENT_ID.match(client_id))
    ):
        raise _Closed(
            CLOSE_POLICY,
            "invalid_frame",
            "a message frame needs a client_id: printable ASCII, 1-255 characters (a UUID)",
        )
    if not isinstance(text, str):
        raise _Closed(CLOSE_POLICY, "invalid_frame", 'a message frame needs a "message" string')
    try:
        if session_id is None:
            _, posted = await runtime.interviewer.start_conversation(
                principal, text, idempotency_key=client_id
            )
            assert posted is not None
        else:
            posted = await runtime.interviewer.continue_conversation(
                principal, session_id, text, idempotency_key=client_id
            )
    except TriageError as exc:
        if exc.status_code in (401, 404):
            raise
        # One bad frame changes nothing and leaves the socket open, as a 4xx would.
        await sock.send(
            {**_error_frame(exc.code, exc.message, **exc.details), "client_id": client_id}
        )
        return None
    except ValidationError as exc:
        await sock.send({**_error_frame("invalid_message", str(exc)), "client_id": client_id})
        return None
    bind_session(posted.session_id)
    await sock.send(
        {
            "type": "ack",
            "client_id": client_id,
            "session_id": posted.session_id,
            "seq": posted.message.seq,
            "event_id": posted.entry.id,
            "version": posted.entry.version,
            "replayed": posted.replayed,
        }
    )
    return posted


async def _start_pump(
    sock: _Socket,
    runtime: Any,
    manager: Any,
    principal: Principal,
    session_id: str,
    after: str | None,
    first: list[StreamEntry] | None = None,
) -> asyncio.Task[None]:
    conversation = await runtime.interviewer.get_owned(principal, session_id)
    bind_session(session_id)
    await runtime.runner.ensure(conversation)
    point = (
        ResumePoint(after=after)
        if first and after
        else await resume_point(manager, session_id, after)
    )
    sub = runtime.hub.new_subscription(session_id)
    events = one_at_a_time(session_batches(runtime.hub, manager, sub, point, first=first or ()))
    task = asyncio.create_task(_pump(sock, events, sub))
    return task


async def _pump(sock: _Socket, events: AsyncIterator[ServerSentEvent], sub: Any) -> None:
    """Send the session's events until the stream ends, then close with the reason."""
    try:
        async for event in events:
            await sock.send(event_frame(event))
    except _Closed as closed:
        await sock.close(closed.code, closed.error)
        return
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
    # The stream ended: its last event (an `error`) said why.
    # (No reason: the event store failed during the back-fill; reconnecting resumes.)
    closes = {"shutdown": CLOSE_GOING_AWAY, "gone": CLOSE_NOT_FOUND, "overflow": CLOSE_POLICY}
    code = closes.get(sub.reason or "", CLOSE_TRY_AGAIN)
    await sock.close(code, sub.reason or "")


@router.websocket("/sessions/{session_id}/ws")
async def session_socket(websocket: WebSocket, session_id: str) -> None:
    """Two-way chat on a session: message frames in; acks and the session's events out."""
    if not _SESSION_ID.match(session_id):
        await websocket.close(CLOSE_POLICY, "invalid session id")
        return
    await _serve(websocket, session_id)


@router.websocket("/ws")
async def new_session_socket(websocket: WebSocket) -> None:
    """Two-way chat that opens a new session with its first message frame."""
    await _serve(websocket, None)
