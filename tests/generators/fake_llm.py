"""A local stand-in for an OpenAI-compatible chat-completions API, speaking its real wire format.

The only outside service the project cannot run here is the LLM provider, so its tests talk to
this server over real HTTP (uvicorn on a loopback port, in a background thread). It answers
`POST /{scenario}/v1/chat/completions` the way OpenAI does: an SSE stream of
`chat.completion.chunk` objects (role first, then content deltas, then a chunk with
`finish_reason: "stop"`), `data: [DONE]`, and OpenAI-shaped error bodies. The scenario in the
path picks the behaviour under test; every request is recorded for the test to inspect.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

VALID_KEY = "sk-test-0123456789abcdef"
MODEL = "gpt-4o-mini"
REPLY_PIECES = ["Entendi", ", sinto muito", " pelo ocorrido.", " Quando isso", " aconteceu?"]
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "rate-limited": (
        429,
        {
            "message": "Rate limit reached for gpt-4o-mini in organization org-test on "
            "requests per min (RPM): Limit 3, Used 3, Requested 1.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    ),
    "server-error": (
        500,
        {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
}


class SimulatedCrash(Exception):
    """Raised inside a streaming body: uvicorn then drops the connection mid-response."""


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
    body = {
        "id": "chatcmpl-AbC123fake",
        "object": "chat.completion.chunk",
        "created": 1_732_000_000,
        "model": f"{MODEL}-2024-07-18",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _content_events() -> list[str]:
    return [_chunk({"role": "assistant", "content": ""})] + [
        _chunk({"content": piece}) for piece in REPLY_PIECES
    ]


async def _stream(scenario: str) -> AsyncIterator[str]:
    events = _content_events()
    if scenario == "drop":
        for event in events[:3]:
            yield event
        raise SimulatedCrash("connection dropped by the fake provider")
    if scenario == "malformed":
        yield events[0]
        yield events[1]
        yield 'data: {"id": "chatcmpl-AbC123fake", "choices": [\n\n'
        return
    if scenario == "error-event":
        yield events[0]
        yield events[1]
        error = {"error": {"message": "The model is overloaded.", "type": "server_error"}}
        yield f"data: {json.dumps(error)}\n\n"
        return
    if scenario == "unstorable":
        # Valid JSON escapes of text PostgreSQL cannot store (a NUL) or UTF-8 cannot encode
        # (a lone surrogate), as a misbehaving provider could send.
        yield events[0]
        yield 'data: {"choices": [{"index": 0, "delta": {"content": "x\\u0000y\\ud800z"}}]}\n\n'
        yield _chunk({}, finish_reason="stop")
        yield "data: [DONE]\n\n"
        return
    if scenario == "stall":
        yield events[0]
        yield events[1]
        await asyncio.sleep(30)  # Cut short when the client gives up and disconnects.
        return
    for event in events:
        yield event
    yield _chunk({}, finish_reason="stop")
    if scenario != "no-done":
        yield "data: [DONE]\n\n"


@dataclass
class FakeLLM:
    """The app plus what it received; `url` is set once the server listens."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/{scenario}/v1/chat/completions", self.completions, methods=["POST"])]
        )

    async def completions(self, request: Request) -> Response:
        scenario = request.path_params["scenario"]
        body = await request.json()
        self.requests.append({"scenario": scenario, "headers": dict(request.headers), "json": body})
        if request.headers.get("authorization") != f"Bearer {VALID_KEY}":
            return JSONResponse(
                {
                    "error": {
                        "message": "Incorrect API key provided: sk-wro***key. You can find "
                        "your API key at https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
                status_code=401,
            )
        if scenario in ERRORS:
            status, error = ERRORS[scenario]
            return JSONResponse({"error": error}, status_code=status)
        if scenario == "slow":
            # No headers until the client gives up; stop as soon as it disconnects.
            for _ in range(600):
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.05)
            return Response(status_code=204)
        return StreamingResponse(
            _stream(scenario), media_type="text/event-stream", headers=STREAM_HEADERS
        )


class FakeLLMServer:
    """Runs a `FakeLLM` under uvicorn in a thread, on a socket bound before start (no race)."""

    def __init__(self) -> None:
        self.fake = FakeLLM()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.fake.app(),
            log_level="critical",
            log_config=None,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self.fake.url = f"http://127.0.0.1:{port}"

    def start(self) -> FakeLLMServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake LLM server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()

    def base_url(self, scenario: str) -> str:
        return f"{self.fake.url}/{scenario}/v1"
