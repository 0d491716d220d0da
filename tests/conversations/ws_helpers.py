"""A WebSocket chat client for tests (the `websockets` library), with hang guards."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.sse_helpers import GUARD, Ev

Frame = dict[str, Any]


def ws_url(base: str, session_id: str | None = None) -> str:
    base = base.replace("http://", "ws://", 1)
    if session_id is None:
        return f"{base}/api/conversations/ws"
    return f"{base}/api/conversations/sessions/{session_id}/ws"


@asynccontextmanager
async def socket(
    url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientConnection]:
    async with connect(url, additional_headers=headers or {}, open_timeout=GUARD) as ws:
        yield ws


async def send(ws: ClientConnection, frame: Frame) -> None:
    await ws.send(json.dumps(frame))


def message(text: str, client_id: str | None = None) -> Frame:
    return {"type": "message", "message": text, "client_id": client_id or uuid.uuid4().hex}


async def recv(ws: ClientConnection) -> Frame:
    return json.loads(await asyncio.wait_for(ws.recv(), GUARD))


async def read_until(ws: ClientConnection, stop: Callable[[Frame], bool]) -> list[Frame]:
    """Frames until `stop(frame)` (included)."""
    got: list[Frame] = []
    while True:
        frame = await recv(ws)
        got.append(frame)
        if stop(frame):
            return got


async def closed_with(ws: ClientConnection) -> tuple[int | None, list[Frame]]:
    """Read until the server closes; (close code, frames read meanwhile)."""
    got: list[Frame] = []
    try:
        while True:
            got.append(await recv(ws))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), got


def as_events(frames: list[Frame]) -> list[Ev]:
    return [Ev(f["event"], f["id"], f["data"]) for f in frames if f["type"] == "event"]
