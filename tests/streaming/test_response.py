"""The SSE response's own duties, over a real uvicorn: pings on an idle stream, a client that
goes away frees its stream, a client that stops reading is cut, and a replica that stops ends
its streams (and cuts one that cannot end after the grace)."""

from __future__ import annotations

import asyncio
import socket as stdlib_socket
from collections.abc import Awaitable, Callable

import httpx

from backend.core.config import Settings
from backend.core.metrics import M
from backend.state.schemas import Event
from backend.state.service import ConversationStateManager
from tests.conftest import SERVED_APPS
from tests.sse_helpers import GUARD, bearer

Serve = Callable[[Settings], Awaitable[str]]


async def _session(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=GUARD) as api:
        created = await api.post("/api/triage", json={"message": "Fui demitida."}, headers=bearer())
    assert created.status_code == 201, created.text
    return str(created.json()["session_id"])


def _events_request(base: str, sid: str) -> tuple[stdlib_socket.socket, bytes]:
    host, port = base.removeprefix("http://").split(":")
    raw = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    token = bearer()["Authorization"]
    request = (
        f"GET /api/conversations/sessions/{sid}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    return raw, request


async def _read_until(raw: stdlib_socket.socket, wanted: Callable[[bytes], bool]) -> bytes:
    received = bytearray()
    async with asyncio.timeout(GUARD):
        while not wanted(bytes(received)):
            chunk = await asyncio.to_thread(raw.recv, 1 << 16)
            if not chunk:
                break
            received += chunk
    return bytes(received)


async def _until(condition: Callable[[], bool]) -> None:
    """Polls `condition` (a replica's own counters: nothing to wait on)."""
    async with asyncio.timeout(GUARD):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def _open_streams() -> float:
    return float(M.sse_open._value.get())


async def test_an_idle_stream_is_pinged_until_its_client_leaves(
    settings: Settings, serve: Serve
) -> None:
    base = await serve(settings.model_copy(update={"sse_ping_seconds": 0.1}))
    sid = await _session(base)
    before = _open_streams()
    raw, request = _events_request(base, sid)
    host, port = base.removeprefix("http://").split(":")
    raw.connect((host, int(port)))
    try:
        raw.sendall(request)
        # Nothing happens in the session: nothing but keep-alive comments.
        got = await _read_until(raw, lambda b: b.count(b": ping") >= 3)
        assert got.startswith(b"HTTP/1.1 200")
        assert got.count(b": ping\r\n\r\n") >= 3 and b"event:" not in got
        assert _open_streams() == before + 1
    finally:
        raw.close()
    # The client went away without a word: the replica notices and lets the stream go.
    await _until(lambda: _open_streams() == before)


async def test_a_client_that_stops_reading_is_cut(
    settings: Settings, serve: Serve, manager: ConversationStateManager
) -> None:
    """A reader that stops reading is cut after SSE_SEND_TIMEOUT_SECONDS (counted), instead of
    holding the replica's memory, and the replica keeps serving others."""
    base = await serve(settings.model_copy(update={"sse_send_timeout_seconds": 0.5}))
    sid = await _session(base)
    cut = M.sse_cut.labels("send_timeout")
    cut_before = cut._value.get()
    raw, request = _events_request(base, sid)
    raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
    host, port = base.removeprefix("http://").split(":")
    raw.connect((host, int(port)))
    try:
        raw.sendall(request)
        # Events on the session's stream until the server's sends back up (the socket
        # buffers hold a few MB): 250 KB each, at most 100 MB.
        added = 0
        async with asyncio.timeout(GUARD * 4):
            while cut._value.get() == cut_before:
                assert added < 400, "the server never stopped sending to a client not reading"
                delta = {"seq": 1, "delta": f"{added:04d}" + "x" * 250_000}
                await manager.append_event(sid, Event(type="message.delta", data=delta))
                added += 1
                await asyncio.sleep(0.05)
        assert await _session(base)  # the replica still serves everybody else
        # The server closed the connection: draining what was buffered ends in EOF.
        received = await _read_until(raw, lambda _: False)
    finally:
        raw.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert len(received) < added * 250_000  # cut long before it had everything


async def test_a_stopping_replica_ends_its_streams(
    settings: Settings, serve: Serve, manager: ConversationStateManager
) -> None:
    """`going_away` (what SIGTERM runs) ends a stream that reads with a clean end of the
    response; one whose client does not read is cut after the grace."""
    from backend.core.replica_stats import replica_stats

    app_settings = settings.model_copy(
        update={"sse_shutdown_grace_seconds": 0.3, "sse_send_timeout_seconds": 60}
    )
    base = await serve(app_settings)
    sid = await _session(base)
    host, port = base.removeprefix("http://").split(":")
    reader, request = _events_request(base, sid)
    stuck, _ = _events_request(base, sid)
    stuck.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
    opened = replica_stats.streams_open
    try:
        reader.connect((host, int(port)))
        reader.sendall(request)
        await _read_until(reader, lambda b: b"\r\n\r\n" in b)  # the response started
        stuck.connect((host, int(port)))
        stuck.sendall(request)
        await _until(lambda: replica_stats.streams_open == opened + 2)
        # Fill the stuck client's buffers: its stream cannot send its goodbye.
        for n in range(24):
            delta = {"seq": 1, "delta": f"{n:04d}" + "x" * 250_000}
            await manager.append_event(sid, Event(type="message.delta", data=delta))
        await asyncio.sleep(0.5)

        SERVED_APPS[base].state.runtime.hub.going_away()  # what SIGTERM runs first

        # The reader gets what was queued for it, then the response's clean end (the client
        # reconnects elsewhere with its Last-Event-ID).
        ended = await _read_until(reader, lambda b: b.endswith(b"\r\n0\r\n\r\n"))
        assert ended.endswith(b"\r\n0\r\n\r\n")
        # The stuck one is cut too: its stream is closed and counted closed.
        await _until(lambda: replica_stats.streams_open == opened)
    finally:
        reader.close()
        stuck.close()
