"""A TCP proxy on loopback that delivers requests and drops the answers.

It forwards what a client sends to the upstream server, waits until the server starts
answering (so the request was handled: whatever it writes is written), then closes the
client's connection without passing on a single byte: the client sees a dropped connection
and cannot tell whether its request was stored. The situation an Idempotency-Key is for.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.redis_cluster import free_port


class CutProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cut = 0  # connections whose answer was dropped
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> CutProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def forward() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await client_r.read(65536):
                    up_w.write(data)
                    await up_w.drain()

        task = asyncio.create_task(forward())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            await up_r.read(1)  # the server has started its answer: the request was handled
            self.cut += 1
        finally:
            task.cancel()
            for writer in (client_w, up_w):
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
