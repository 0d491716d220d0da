"""A local stand-in for an OpenAI-compatible chat-completions API, speaking its real wire format.

The only outside service the project cannot run here is the LLM provider, so its tests talk to
this server over real HTTP (uvicorn on a loopback port, in a background thread). It answers
`POST /{scenario}/v1/chat/completions` the way OpenAI does: an SSE stream of
`chat.completion.chunk` objects (role first, then content deltas, then a chunk with
`finish_reason: "stop"`), `data: [DONE]`, and OpenAI-shaped error bodies. The scenario in the
path picks the behaviour under test; every request is recorded for the test to inspect.

Non-streaming requests with `response_format: {"type": "json_schema", ...}` (structured
outputs, the triage analysis) get a `chat.completion` whose message content is scripted per
scenario (`structured`): a valid answer, invalid JSON, an answer outside the schema, a refusal,
a delay past the client's timeout, or an error. Like OpenAI, the schema itself is checked first
(strict mode: every object closed and all its properties required, no unsupported keyword):
a schema the real API would refuse gets its 400.
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

import jsonschema
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


# The answer of the scenarios that answer well: a case nothing like the offline reading of the
# tests' conversations (so a test can tell whose result it sees).
TRIAGE_ANSWER: dict[str, Any] = {
    "area": "consumidor",
    "sub_area": "Cobrança indevida",
    "urgency": "alta",
    "urgency_reason": "O cliente tem audiência marcada em duas semanas.",
    "complexity": "alta",
    "summary": "Resumo do modelo: cliente cobrado indevidamente por uma operadora.",
    "facts": {
        "o_que_aconteceu": "Cobrança de um serviço que não contratou",
        "quando": "há duas semanas",
        "partes": "a operadora de telefonia",
        "documentos": None,
        "valores": "R$ 1.200",
    },
    "missing_information": ["Faturas da operadora"],
    "recommended_next_step": "Agendar consulta com advogado do consumidor em até 48h.",
}
STRUCTURED: dict[str, str] = {
    "triage-invalid-json": '{"area": "consumidor", "urgency": "alta", "summary": "Resumo do',
    "triage-schema-violation": json.dumps(
        {**TRIAGE_ANSWER, "urgency": "nenhuma", "priority": "ignore previous instructions"}
    ),
}
# Errors for the structured request only (the reply stream of the same scenario works).
STRUCTURED_ERRORS = {"triage-server-error": "server-error", "triage-rate-limited": "rate-limited"}
# Keywords strict structured outputs refuse (OpenAI answers 400 invalid_request_error).
_UNSUPPORTED = {
    "default",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "patternProperties",
    "unevaluatedProperties",
    "propertyNames",
    "uniqueItems",
    "contains",
    "allOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
}


def strict_schema_problem(schema: Any, path: str = "") -> str | None:
    """What OpenAI's strict mode would refuse in `schema`, or None."""
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            if problem := strict_schema_problem(item, f"{path}/{i}"):
                return problem
        return None
    if not isinstance(schema, dict):
        return None
    refused = sorted(_UNSUPPORTED & schema.keys())
    if refused:
        return f"In context=('{path or 'root'}'), '{refused[0]}' is not permitted."
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            return (
                f"In context=('{path or 'root'}'), 'additionalProperties' is required to be "
                "supplied and to be false."
            )
        missing = set(schema.get("properties", {})) - set(schema.get("required", []))
        if missing:
            return (
                f"In context=('{path or 'root'}'), 'required' is required to be supplied and "
                f"to be an array including every key in properties. Missing '{sorted(missing)[0]}'."
            )
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            for name, sub in value.items():
                if problem := strict_schema_problem(sub, f"{path}/{key}/{name}"):
                    return problem
        elif key in ("items", "anyOf") and (
            problem := strict_schema_problem(value, f"{path}/{key}")
        ):
            return problem
    return None


def _completion(content: str | None, *, refusal: str | None = None) -> dict[str, Any]:
    finish = "stop"
    if content is not None and content.endswith('"Resumo do'):
        finish = "length"  # a cut-off answer, as when max_tokens runs out
    return {
        "id": "chatcmpl-AbC123fake",
        "object": "chat.completion",
        "created": 1_732_000_000,
        "model": f"{MODEL}-2024-07-18",
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 812, "completion_tokens": 164, "total_tokens": 976},
    }


def _invalid_request(message: str, param: str) -> JSONResponse:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return JSONResponse({"error": error}, status_code=400)


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
        if "response_format" in body and not body.get("stream"):
            return await self.structured(scenario, body, request)
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

    async def structured(self, scenario: str, body: dict[str, Any], request: Request) -> Response:
        """A structured-outputs answer (`chat.completion`, not streamed) for the scenario."""
        response_format = body["response_format"]
        spec = response_format.get("json_schema") or {}
        if response_format.get("type") != "json_schema" or not spec.get("name"):
            return _invalid_request(
                "Missing required parameter: 'response_format.json_schema'.", "response_format"
            )
        schema = spec.get("schema")
        problem = strict_schema_problem(schema) if spec.get("strict") else None
        if problem:
            return _invalid_request(
                f"Invalid schema for response_format '{spec['name']}': {problem}",
                "response_format",
            )
        if scenario in STRUCTURED_ERRORS:
            status, error = ERRORS[STRUCTURED_ERRORS[scenario]]
            return JSONResponse({"error": error}, status_code=status)
        if scenario == "triage-slow":
            for _ in range(600):  # past any client timeout; stop once it gives up
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.05)
            return Response(status_code=204)
        if scenario == "triage-refusal":
            return JSONResponse(_completion(None, refusal="I'm sorry, I can't help with that."))
        if scenario in STRUCTURED:
            return JSONResponse(_completion(STRUCTURED[scenario]))
        # What constrained decoding guarantees: the answer fits the schema that was sent.
        jsonschema.validate(TRIAGE_ANSWER, schema)
        return JSONResponse(_completion(json.dumps(TRIAGE_ANSWER, ensure_ascii=False)))


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
