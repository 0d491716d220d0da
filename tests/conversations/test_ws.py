"""The WebSocket transport on a live uvicorn server: auth, close codes, limits, tenancy."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket as stdlib_socket
from collections.abc import Awaitable, Callable

import httpx
import pytest

from backend.core.config import Settings
from backend.core.metrics import M
from backend.state.schemas import Event
from backend.state.service import ConversationStateManager
from tests.conversations.ws_helpers import (
    closed_with,
    message,
    read_until,
    recv,
    send,
    socket,
    ws_url,
)
from tests.sse_helpers import GUARD, bearer

pytestmark = pytest.mark.e2e

Serve = Callable[[Settings], Awaitable[str]]


def _token(user: str = "alice") -> str:
    return bearer(user)["Authorization"].removeprefix("Bearer ")


async def _open_session(base: str, user: str = "alice") -> str:
    async with socket(ws_url(base), bearer(user)) as ws:
        await send(ws, message("Fui despejado sem aviso."))
        ack = await recv(ws)
    assert ack["type"] == "ack"
    return str(ack["session_id"])


async def test_browser_auth_by_first_frame_with_resume(live_api: str) -> None:
    sid = await _open_session(live_api)
    async with socket(ws_url(live_api, sid)) as ws:  # no header: a browser
        await send(ws, {"type": "auth", "token": _token(), "last_event_id": "0-0"})
        frames = await read_until(ws, lambda f: f.get("event") == "message.completed")
    events = [f for f in frames if f["type"] == "event"]
    # From the very start (0-0): the first message, then its whole reply.
    assert events[0]["event"] == "message.created"
    assert events[0]["data"]["message"]["seq"] == 1
    assert events[-1]["data"]["in_reply_to"] == 1


@pytest.mark.parametrize(
    "first",
    [
        {"type": "auth", "token": "not-a-jwt"},
        {"type": "message", "message": "oi", "client_id": "x"},  # no auth frame first
    ],
)
async def test_no_valid_token_closes_4401(live_api: str, first: dict) -> None:
    async with socket(ws_url(live_api)) as ws:
        await send(ws, first)
        code, frames = await closed_with(ws)
    assert code == 4401
    assert frames[-1]["error"]["code"] == "unauthorized"


async def test_a_bad_header_token_closes_4401(live_api: str) -> None:
    async with socket(ws_url(live_api), {"Authorization": "Bearer forged"}) as ws:
        code, _ = await closed_with(ws)
    assert code == 4401


async def test_another_users_session_closes_like_a_missing_one(live_api: str) -> None:
    sid = await _open_session(live_api, "alice")
    for target in (sid, "nao-existe"):
        async with socket(ws_url(live_api, target), bearer("mallory")) as ws:
            code, frames = await closed_with(ws)
        assert code == 4404
        assert frames[-1]["error"]["code"] == "session_not_found"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", 1008),
        (json.dumps({"type": "subscribe"}), 1008),
        (json.dumps({"type": "message", "message": "sem client_id"}), 1008),
        (json.dumps({"type": "message", "message": "x" * 70_000, "client_id": "big"}), 1009),
    ],
)
async def test_malformed_or_oversized_frames_close_with_policy_codes(
    live_api: str, raw: str, code: int
) -> None:
    async with socket(ws_url(live_api), bearer()) as ws:
        await ws.send(raw)
        got, _ = await closed_with(ws)
    assert got == code
    async with httpx.AsyncClient(timeout=GUARD) as client:
        page = await client.get(f"{live_api}/api/conversations/sessions", headers=bearer())
    assert page.json()["total"] == 0  # nothing was stored


async def test_frame_errors_answer_in_the_rest_shape_and_keep_the_socket(
    settings: Settings, serve: Serve
) -> None:
    base = await serve(settings.model_copy(update={"rate_limit_messages": 2}))
    sid = await _open_session(base)  # one message of the two allowed
    async with socket(ws_url(base, sid), bearer()) as ws:
        await send(ws, message("   ", "blank"))
        blank = await read_until(ws, lambda f: f["type"] == "error")
        await send(ws, message("x" * (settings.max_message_chars + 1), "long"))
        long = await read_until(ws, lambda f: f["type"] == "error")
        await send(ws, message("Segunda mensagem.", "ok"))
        ok = await read_until(ws, lambda f: f["type"] == "ack")
        await send(ws, message("Terceira mensagem.", "limited"))
        limited = await read_until(ws, lambda f: f["type"] == "error")
    assert (blank[-1]["client_id"], blank[-1]["error"]["code"]) == ("blank", "invalid_message")
    assert long[-1]["error"]["code"] == "invalid_message"
    assert ok[-1]["replayed"] is False and ok[-1]["seq"] > 1  # after the first reply
    assert (limited[-1]["client_id"], limited[-1]["error"]["code"]) == ("limited", "rate_limited")


async def test_open_sockets_and_frames_are_counted(live_api: str) -> None:
    before_in = M.ws_frames.labels("in")._value.get()
    async with socket(ws_url(live_api), bearer()) as ws:
        await send(ws, message("Quero saber dos meus direitos."))
        await recv(ws)
        async with httpx.AsyncClient(timeout=GUARD) as client:
            scraped = (await client.get(f"{live_api}/metrics")).text
    assert "triage_ws_connections_open 1.0" in scraped
    assert M.ws_frames.labels("in")._value.get() == before_in + 1


async def test_a_resent_opening_frame_opens_one_session(live_api: str) -> None:
    opening = message("Meu vizinho invadiu meu terreno.", "abre-1")
    async with socket(ws_url(live_api), bearer()) as ws:
        await send(ws, opening)
        first = await recv(ws)
    async with socket(ws_url(live_api), bearer()) as ws:
        await send(ws, opening)
        again = await recv(ws)
        # The socket streams the session the replayed frame opened.
        rest = await read_until(ws, lambda f: f.get("event") == "message.completed")
    assert (again["session_id"], again["event_id"]) == (first["session_id"], first["event_id"])
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert rest[-1]["data"]["session_id"] == first["session_id"]
    async with httpx.AsyncClient(timeout=GUARD) as client:
        page = await client.get(f"{live_api}/api/conversations/sessions", headers=bearer())
    assert page.json()["total"] == 1


async def test_an_id_the_stream_never_generated_gets_reload(live_api: str) -> None:
    sid = await _open_session(live_api)
    headers = {**bearer(), "Last-Event-ID": "99999999999999-0"}
    async with socket(ws_url(live_api, sid), headers) as ws:
        frame = await recv(ws)
    assert (frame["type"], frame["event"]) == ("event", "reload")
    assert frame["data"]["reason"] == "stream_lost"
    assert frame["data"]["history_url"] == f"/api/conversations/sessions/{sid}"


async def test_a_browser_that_never_authenticates_is_closed(
    settings: Settings, serve: Serve
) -> None:
    base = await serve(settings.model_copy(update={"ws_auth_timeout_seconds": 0.2}))
    async with socket(ws_url(base)) as ws:
        code, frames = await closed_with(ws)
    assert code == 4401
    assert frames[-1]["error"]["code"] == "unauthorized"


async def test_a_client_that_stops_reading_is_cut(
    settings: Settings, serve: Serve, manager: ConversationStateManager
) -> None:
    """A reader that stops reading is cut after WS_SEND_TIMEOUT_SECONDS (counted) instead of
    piling its events up in the replica's memory, and the replica keeps serving others."""
    base = await serve(settings.model_copy(update={"ws_send_timeout_seconds": 0.5}))
    sid = await _open_session(base)
    cut_before = M.ws_closed.labels("send_timeout")._value.get()

    # A client that upgrades and then never reads a byte, with a tiny receive window.
    host, port = base.removeprefix("http://").split(":")
    raw = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
    raw.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (
            f"GET /api/conversations/sessions/{sid}/ws HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {_token()}\r\n"
            "Last-Event-ID: 0-0\r\n\r\n"
        ).encode()
    )
    try:
        # Events on the session's own stream until the server's sends back up (the socket
        # buffers hold a few MB): 250 KB each, at most 100 MB.
        added = 0
        async with asyncio.timeout(GUARD * 4):
            while M.ws_closed.labels("send_timeout")._value.get() == cut_before:
                assert added < 400, "the server never stopped sending to a client not reading"
                delta = {"seq": 1, "delta": f"{added:04d}" + "x" * 250_000}
                await manager.append_event(sid, Event(type="message.delta", data=delta))
                added += 1
                await asyncio.sleep(0.05)

        # The replica still serves everybody else.
        assert await _open_session(base, "bob")

        # The server closed the connection: draining what was buffered ends in EOF.
        raw.settimeout(GUARD)
        received = bytearray()
        while chunk := await asyncio.to_thread(raw.recv, 1 << 20):
            received += chunk
    finally:
        raw.close()
    assert received.startswith(b"HTTP/1.1 101")
    assert len(received) < added * 250_000  # cut long before it had everything
