"""The SSE response: sse-starlette's `EventSourceResponse` with less machinery per stream.

sse-starlette runs every response as an anyio task group of four tasks: the body, the pings,
a shutdown listener and a disconnect listener, and its pings take an anyio lock whose acquire
yields to the event loop. Measured here (uvloop, one process): a task group of four tasks
costs ~190 µs to start and end, of two ~90 µs, an anyio lock ~16 µs a use (asyncio's 1.5).
A chat POST opens one response per message, and every replica holds thousands of streams
open, so this response keeps sse-starlette's headers, wire format, HEAD handling and
`SendTimeoutError`, and runs with less:

- the body is sent by the request's own task; one more task only waits for the client's
  disconnect, and cancels the body when it comes;
- a ping is an event-loop timer (`call_later`) that starts a short task when one is due,
  instead of a task sleeping for the whole stream;
- no shutdown listener: on SIGTERM the replica ends its streams itself
  (`StreamHub.going_away`, see `shutdown.py`; sse-starlette's listener never saw that signal
  under our handler). A stream that has not ended `shutdown_grace` seconds later (its client
  is not reading) is cancelled;
- the send lock is asyncio's (no yield when it is free), the send timeout `asyncio.timeout`.

A failed ping send (a client that stopped reading: `SendTimeoutError`) ends the response with
that error, as a failed event send does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from backend.streaming.subscription import Subscription


class StreamResponse(EventSourceResponse):
    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        subscription: Subscription,
        ping_seconds: float,
        ping: bytes,
        send_timeout: float,
        shutdown_grace: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, headers=headers, ping=ping_seconds, send_timeout=send_timeout)
        self._send_lock = asyncio.Lock()  # type: ignore[assignment]
        self._ping_bytes = ping
        self._subscription = subscription
        self._shutdown_grace = shutdown_grace
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._pinging: asyncio.Task[None] | None = None
        self._stopped = False  # this response cancelled its own task (see `_stop`)
        self._failure: BaseException | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"].upper() == "HEAD":
            await super().__call__(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        task = self._task = asyncio.current_task()
        assert task is not None
        watcher = loop.create_task(self._watch_disconnect(receive))
        self._subscription.on_shutdown = self._shutting_down
        if self.ping_interval:
            self._timer = loop.call_later(self.ping_interval, self._ping_due, send)
        try:
            await self._stream_response(send)
        except asyncio.CancelledError:
            # Ours (the client left, a ping failed, the shutdown grace ran out) unless the
            # server cancelled the request too.
            if not self._stopped or task.uncancel() > 0:
                raise
            if self._failure is not None:
                raise self._failure from None
        finally:
            self.active = False
            self._subscription.on_shutdown = None
            watcher.cancel()
            if self._timer is not None:
                self._timer.cancel()
            if self._pinging is not None:
                self._pinging.cancel()
        if self.background is not None:
            await self.background()

    def _stop(self, failure: BaseException | None = None) -> None:
        """End the response from outside its task: cancel the body, once."""
        if not self.active or self._stopped or self._task is None:
            return
        self.active = False
        self._stopped = True
        self._failure = failure
        self._task.cancel()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):
                await send(message)
        except TimeoutError:
            raise SendTimeoutError() from None

    async def _watch_disconnect(self, receive: Receive) -> None:
        try:
            while self.active:
                if (await receive())["type"] == "http.disconnect":
                    break
        except Exception:  # a receive that fails has no client behind it either
            pass
        self._stop()

    def _ping_due(self, send: Send) -> None:
        self._timer = None
        if self.active:
            self._pinging = asyncio.get_running_loop().create_task(self._send_ping(send))

    async def _send_ping(self, send: Send) -> None:
        try:
            async with self._send_lock:
                if not self.active:
                    return
                ping = {"type": "http.response.body", "body": self._ping_bytes, "more_body": True}
                await self._send_with_timeout(send, ping)
        except Exception as exc:  # the client stopped reading (or the connection broke)
            self._stop(exc)
            return
        finally:
            self._pinging = None
        if self.active:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.ping_interval, self._ping_due, send)

    def _shutting_down(self) -> None:
        """The replica is stopping and has told the stream so (`Subscription.close`): the
        generator ends; a stream still sending after the grace is cancelled."""
        if self._shutdown_grace <= 0:
            self._stop()
        else:
            asyncio.get_running_loop().call_later(self._shutdown_grace, self._stop)
