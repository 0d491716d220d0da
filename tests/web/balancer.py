"""A small HTTP load balancer on loopback for the browser tests: one origin, several replicas.

Run as `python -m tests.web.balancer --port P --streams URL_A,URL_B --others URL_B,URL_A`.
Each request goes to the first backend of its preference list that accepts a connection:
session event streams (`GET .../events`) use `--streams`, everything else `--others`. Path
routing makes the test deterministic where it matters: with `--streams A,B --others B,A` the
page's event stream is served by A while its posts (and so the reply generation) land on B, so
killing A cuts the stream in the middle of a reply without stopping the reply itself.

Like a real balancer it cannot repair a response a backend dies in the middle of: the client's
response is cut off too (no terminating chunk), and the client reconnects; the next connection
skips the dead backend (connection refused). Responses stream through unbuffered (SSE).

`GET /__balancer/requests` lists what was forwarded where (`open` while a response streams),
so the test can tell which replica serves the page's stream.

`--lose-answers N`: for the first N `Idempotency-Key`s seen (the page's message posts), the
first request is forwarded and handled, but its answer is lost on the way back (the client
gets a 502, as from a proxy whose upstream connection broke after the request went through):
the client cannot tell whether its message was stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

import httpx
import uvicorn

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "host",
    "content-length",
}


class Balancer:
    def __init__(self, streams: list[str], others: list[str], lose_answers: int = 0) -> None:
        self.streams = streams
        self.others = others
        self.lose_answers = lose_answers
        self.lost: set[str] = set()  # keys whose first answer was lost
        self.requests: list[dict[str, Any]] = []
        self.client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["path"] == "/__balancer/requests":
                await _respond(send, 200, json.dumps(self.requests).encode())
            else:
                await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                timeout = httpx.Timeout(connect=2.0, read=None, write=10.0, pool=10.0)
                self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert self.client is not None
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        path = scope["path"]
        target = scope["raw_path"].decode()
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode()
        headers = [
            (k.decode(), v.decode())
            for k, v in scope["headers"]
            if k.decode().lower() not in _HOP_BY_HOP
        ]
        client_host = (scope.get("client") or ("", 0))[0]
        headers.append(("x-forwarded-for", client_host))
        is_stream = scope["method"] == "GET" and path.endswith("/events")
        response: httpx.Response | None = None
        backend = ""
        for backend in self.streams if is_stream else self.others:
            request = self.client.build_request(
                scope["method"], backend + target, headers=headers, content=bytes(body)
            )
            try:
                response = await self.client.send(request, stream=True)
                break
            except httpx.TransportError:
                continue  # down: try the next one
        if response is None:
            await _respond(send, 502, b'{"error":{"code":"bad_gateway","message":"no backend"}}')
            return
        record = {
            "method": scope["method"],
            "path": path,
            "backend": backend,
            "status": response.status_code,
            "open": True,
            "idempotency_key": dict(headers).get("idempotency-key"),
        }
        self.requests.append(record)
        key = record["idempotency_key"]
        if key and key not in self.lost and len(self.lost) < self.lose_answers:
            self.lost.add(key)
            await response.aread()  # the backend answered: the request went through
            await response.aclose()
            record.update(open=False, lost=True)
            await _respond(send, 502, b'{"error":{"code":"bad_gateway","message":"lost"}}')
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.encode(), v.encode())
                        for k, v in response.headers.multi_items()
                        if k.lower() not in _HOP_BY_HOP or k.lower() == "content-length"
                    ],
                }
            )
            await _pump(response, receive, send)
        finally:
            record["open"] = False
            await response.aclose()


async def _pump(response: httpx.Response, receive: Any, send: Any) -> None:
    """Copy the backend's body to the client until either side goes away.

    A backend that dies mid-body raises here; the exception propagates so uvicorn drops the
    client connection without ending the response, as the backend's own connection ended.
    """

    async def copy() -> None:
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def client_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    copying = asyncio.create_task(copy())
    watching = asyncio.create_task(client_gone())
    try:
        await asyncio.wait({copying, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (copying, watching):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if not watching.done() or watching.cancelled():
        copying.result()  # re-raises a backend that died mid-body


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--streams", required=True, help="comma-separated backend URLs")
    parser.add_argument("--others", required=True, help="comma-separated backend URLs")
    parser.add_argument("--lose-answers", type=int, default=0, help="lose N keyed answers")
    args = parser.parse_args()
    app = Balancer(args.streams.split(","), args.others.split(","), args.lose_answers)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
