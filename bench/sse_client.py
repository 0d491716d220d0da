"""A minimal HTTP/1.1 SSE client on raw asyncio streams, for the benchmarks.

httpx costs far more CPU per event than the server under test on this 2-core machine, and
5,000 idle httpx streams would measure the client. This reads just enough of HTTP/1.1
(status line, headers, chunked transfer coding) and of SSE (blank-line separated fields).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class SSE:
    event: str
    id: str
    data: str


class SSEConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self._buffer = b""

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        method: str,
        path: str,
        *,
        token: str,
        body: dict[str, object] | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> SSEConnection:
        reader, writer = await asyncio.open_connection(host, port)
        payload = json.dumps(body).encode() if body is not None else b""
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Accept: text/event-stream",
            f"Authorization: Bearer {token}",
            *(f"{k}: {v}" for k, v in (extra_headers or {}).items()),
        ]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        connection = cls(reader, writer)
        await connection._read_head()
        return connection

    async def _read_head(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            if ":" in line:
                key, value = line.split(":", 1)
                self.headers[key.strip().lower()] = value.strip()

    async def _chunk(self) -> bytes:
        size_line = await self.reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def events(self) -> AsyncIterator[SSE]:
        """Events until the server ends the response (comments such as pings are skipped)."""
        while True:
            while b"\r\n\r\n" not in self._buffer:
                chunk = await self._chunk()
                if not chunk:
                    return
                self._buffer += chunk
            block, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            fields: dict[str, str] = {}
            for line in block.decode().split("\r\n"):
                if line and not line.startswith(":") and ":" in line:
                    key, value = line.split(":", 1)
                    fields[key] = value[1:] if value.startswith(" ") else value
            if "event" in fields or "data" in fields:
                yield SSE(
                    fields.get("event", "message"), fields.get("id", ""), fields.get("data", "")
                )

    async def read_body(self) -> bytes:
        length = int(self.headers.get("content-length", "0"))
        return await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()
