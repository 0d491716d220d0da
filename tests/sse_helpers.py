"""Reading SSE responses in tests (httpx + httpx-sse), with hang guards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from backend.core.auth import create_token
from tests.conftest import make_settings

GUARD = 30.0  # seconds: a hang guard, never a timing assertion


@dataclass
class Ev:
    event: str
    id: str
    data: dict[str, Any]


def bearer(user: str = "alice", tenant: str = "acme") -> dict[str, str]:
    settings = make_settings()
    return {"Authorization": f"Bearer {create_token(settings, user, tenant)}"}


async def events(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    stop: Callable[[Ev], bool] | None = None,
    headers: dict[str, str] | None = None,
    guard: float = GUARD,
    **kwargs: Any,
) -> tuple[httpx.Response, list[Ev]]:
    """Open an SSE request and read events until `stop(event)` or the end of the stream."""
    got: list[Ev] = []
    async with aconnect_sse(client, method, url, headers=dict(headers or {}), **kwargs) as source:
        response = source.response
        if response.status_code != 200:
            await response.aread()
            return response, got

        async def read() -> None:
            async for sse in source.aiter_sse():
                event = Ev(sse.event, sse.id, json.loads(sse.data) if sse.data else {})
                got.append(event)
                if stop is not None and stop(event):
                    return

        await asyncio.wait_for(read(), guard)
        return response, got


async def stream(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> AsyncIterator[Ev]:
    """Events one by one (the caller breaks out to disconnect)."""
    async with aconnect_sse(client, method, url, **kwargs) as source:
        assert source.response.status_code == 200, await source.response.aread()
        async for sse in source.aiter_sse():
            yield Ev(sse.event, sse.id, json.loads(sse.data) if sse.data else {})


def completed(event: Ev) -> bool:
    return event.event == "message.completed"


def text_of(evs: list[Ev], reply_id: str) -> str:
    return "".join(
        e.data["delta"]
        for e in evs
        if e.event == "message.delta" and e.data["reply_id"] == reply_id
    )
