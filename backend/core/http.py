"""HTTP plumbing shared by every route: body size limit and validation errors as JSON.

Both answer in the service's one error shape, `{"error": {"code", "message", ...}}`, so a
client handles every 4xx the same way.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BODY_METHODS = {"POST", "PUT", "PATCH"}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorBody(BaseModel):
    """The one error shape of the API (extra fields carry details, e.g. `retry_after`)."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    meaning = {
        400: "Malformed input (bad JSON, bad Last-Event-ID)",
        401: "Missing, expired or invalid bearer token",
        404: "No such session for this user (another user's session looks the same)",
        409: "Conflict: see the code (session_not_durable: PostgreSQL has not stored the "
        "session's latest version yet; see Retry-After)",
        413: "Request body too large",
        422: "Invalid input (types, lengths, ids, pagination)",
        429: "Rate limit on posting messages; see Retry-After",
        503: "Redis unavailable; retry later",
    }
    return {s: {"model": ErrorBody, "description": meaning[s]} for s in statuses}


def _error_body(code: str, message: str, **details: Any) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, **details}}).encode()


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413 before any route sees them.

    Content-Length is checked up front; a chunked body is buffered up to the limit (bodies of
    this API are small JSON documents), then replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._reject(send, 400, "invalid_content_length", "bad Content-Length")
                return
            if int(declared) > self.max_bytes:
                await self._too_large(send)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await self._reject(
            send,
            413,
            "body_too_large",
            f"request body is larger than {self.max_bytes} bytes",
            max_bytes=self.max_bytes,
        )

    @staticmethod
    async def _reject(send: Send, status: int, code: str, message: str, **details: Any) -> None:
        body = _error_body(code, message, **details)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    # Only JSON-safe parts: `ctx` may hold exception objects, and `input` may be large.
    return {
        "location": [str(part) for part in error.get("loc", ())],
        "message": str(error.get("msg", "")),
        "type": str(error.get("type", "")),
    }


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_describe(e) for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        return JSONResponse(
            {"error": {"code": "invalid_json", "message": "the body is not valid JSON"}},
            status_code=400,
        )
    first = errors[0] if errors else {"location": [], "message": "invalid request"}
    where = ".".join(first["location"])
    return JSONResponse(
        {
            "error": {
                "code": "invalid_request",
                "message": f"{where}: {first['message']}" if where else first["message"],
                "errors": errors,
            }
        },
        status_code=422,
    )


def install_http_plumbing(app: FastAPI, max_body_bytes: int) -> None:
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)
