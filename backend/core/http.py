"""HTTP plumbing shared by every route: body size limit, request ids, and every error that
does not come from a domain error (validation, routing, body decoding, unexpected exceptions).

All of them answer in the service's one error shape, `{"error": {"code", "message", ...}}`, so
a client handles every 4xx and 5xx the same way; `error_responses` declares that shape in the
OpenAPI for the statuses a route can answer.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_BODY_METHODS = {"POST", "PUT", "PATCH"}
REQUEST_ID_HEADER = "X-Request-ID"


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorBody(BaseModel):
    """The one error shape of the API (extra fields carry details, e.g. `retry_after`)."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer, all with the one error
    schema. Routes declare their statuses through this (and `BODY_ERRORS`), never by hand."""
    return {s: {"model": ErrorBody, **_ERROR_RESPONSES[s]} for s in statuses}


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    400: {
        "description": "Malformed input: a body that is not UTF-8 JSON (or is nested too "
        "deeply), a bad Content-Length, a bad Last-Event-ID"
    },
    401: {"description": "Missing, expired or invalid bearer token"},
    403: {"description": "Not allowed for this caller (e.g. another tenant's stats)"},
    404: {"description": "No such session for this user (another user's session looks the same)"},
    409: {
        "description": "Conflict, see the code: `version_conflict` (the session kept changing "
        "under this write) or `session_not_durable` (PostgreSQL does not hold the session's "
        "latest version yet); retry after Retry-After",
        "headers": _RETRY_AFTER,
    },
    413: {"description": "Request body larger than MAX_BODY_BYTES"},
    422: {"description": "Invalid input (types, lengths, ids, pagination)"},
    429: {
        "description": "Rate limited (messages, new sessions, development tokens); see Retry-After",
        "headers": _RETRY_AFTER,
    },
    503: {
        "description": "A store (Redis, PostgreSQL, archive) or the workers are unavailable, "
        "or (`state_not_replicated`) a write reached Redis's master but not "
        "STATE_WRITE_REPLICAS replicas in time; retry later with the same Idempotency-Key",
        "headers": _RETRY_AFTER,
    },
}

# The statuses every route with a JSON body can answer before its own code runs.
BODY_ERRORS = (400, 413, 422)


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
        # A scan, not dict(headers), on every POST; the last one counts, as with dict().
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
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


def _body_problem(exc: HTTPException) -> str:
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return "the body is not valid UTF-8"
    if isinstance(cause, RecursionError):
        return "the body's JSON is nested too deeply"
    return "the body could not be decoded as JSON"


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    # Starlette answers 405 from the first route whose path matches and lists only that
    # route's methods; a path served by several routes (GET and DELETE of a session) allows
    # the union of them. Ask every route whether it would take the request with each method
    # (mounts take any method: they answer their own 405s).
    allowed = []
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        for route in request.app.router.routes:
            if not isinstance(route, Mount) and route.matches(probe)[0] is Match.FULL:
                allowed.append(method)
                break
    return allowed


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Errors Starlette and FastAPI raise themselves: unknown route, wrong method, undecodable
    body, and the static file mount's."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    details: dict[str, Any] = {}
    method, path = request.method, request.url.path[:200]
    if exc.status_code == 404:
        code, message = "not_found", f"no route matches {method} {path}"
    elif exc.status_code == 405:
        allowed = _allowed_methods(request) or [
            m.strip() for m in headers.get("Allow", "").split(",") if m.strip()
        ]
        headers["Allow"] = ", ".join(allowed)
        code = "method_not_allowed"
        message = f"{method} is not allowed on {path}; allowed: {headers['Allow'] or 'none'}"
        details["allowed"] = allowed
    elif exc.status_code == 400:
        code, message = "invalid_body", _body_problem(exc)
    else:
        try:
            phrase = HTTPStatus(exc.status_code).phrase
        except ValueError:  # a status the standard does not name
            phrase = "HTTP error"
        code, message = phrase.lower().replace(" ", "_").replace("-", "_"), str(exc.detail)
    return JSONResponse(
        {"error": {"code": code, "message": message, **details}},
        status_code=exc.status_code,
        headers=headers,
    )


class UnhandledErrors:
    """Any exception that escapes the app answers a 500 in the error shape, never plain text.

    The outermost of the app's middlewares, so it also catches what the others and the body of
    a response raise. It logs the traceback once, with the request id, and puts that id in the
    body so a client's report can be matched to the log. When the response had already started
    (a stream) nothing can be sent any more: the exception goes on to the server, which cuts
    the connection so the client sees a broken response rather than a clean end.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            response = _internal_error(scope)
            if started:
                raise
            await response(scope, receive, send)


_LOGGED = "triage.error_logged"  # scope key: this request's exception is in the log already


def _internal_error(scope: Scope) -> JSONResponse:
    """Log the exception being handled with its traceback and request id; the 500 to send."""
    # Set by CorrelationIdMiddleware, inside which the exception was raised (same task).
    request_id = correlation_id.get() or "-"
    if not scope.get(_LOGGED):  # Starlette's last resort sees what UnhandledErrors re-raises
        scope[_LOGGED] = True
        logger.exception(
            "unhandled error in %s %s (request_id=%s)", scope["method"], scope["path"], request_id
        )
    return JSONResponse(
        {
            "error": {
                "code": "internal_error",
                "message": "internal server error; quote the request_id when reporting it",
                "request_id": request_id,
            }
        },
        status_code=500,
        headers={REQUEST_ID_HEADER: request_id},
    )


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's last resort (its ServerErrorMiddleware wraps every middleware), for an
    # exception raised outside `UnhandledErrors`, e.g. by a middleware added after it.
    return _internal_error(request.scope)


def install_http_plumbing(app: FastAPI, max_body_bytes: int) -> None:
    # add_middleware wraps: the last one added is the outermost.
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(CorrelationIdMiddleware, header_name=REQUEST_ID_HEADER)
    app.add_middleware(UnhandledErrors)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)
