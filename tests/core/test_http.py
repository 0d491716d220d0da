"""The one error shape for what no route raises itself: routing, body decoding, unexpected
exceptions (in a route or in a middleware), and the request id that ties a 500 to its log."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.core.config import Settings
from backend.main import create_app
from tests.redis_cluster import free_port
from tests.sse_helpers import bearer

SESSION = "/api/conversations/sessions/s-missing"


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


async def test_an_unknown_route_is_404_in_the_error_shape(api: httpx.AsyncClient) -> None:
    assert_error(await api.get("/api/nothing-here"), 404, "not_found")
    assert_error(await api.post("/nope", json={}), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", SESSION, ["DELETE", "GET"]),
        ("PUT", SESSION, ["DELETE", "GET"]),
        ("OPTIONS", "/api/conversations/sessions", ["DELETE", "GET"]),
        ("GET", "/api/triage", ["POST"]),
        ("PATCH", f"{SESSION}/messages", ["GET", "POST"]),
    ],
)
async def test_a_wrong_method_is_405_allowing_every_method_the_path_serves(
    api: httpx.AsyncClient, method: str, path: str, allowed: list[str]
) -> None:
    response = await api.request(method, path, headers=bearer())
    error = assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == ", ".join(allowed)
    assert error["allowed"] == allowed
    for other in allowed:  # each method it names is served (here: the session is missing)
        answer = await api.request(other, path, headers=bearer(), json={"message": "oi"})
        assert answer.status_code != 405, (other, answer.text)


async def test_responses_carry_a_request_id(api: httpx.AsyncClient) -> None:
    generated = (await api.get("/health/live")).headers["x-request-id"]
    assert uuid.UUID(generated)
    mine = uuid.uuid4().hex
    echoed = await api.get("/api/nothing-here", headers={"X-Request-ID": mine})
    assert echoed.headers["x-request-id"] == mine


class FailingMiddleware:
    """A middleware that fails before any response starts (added outermost, so outside the
    app's own error middleware: Starlette's last resort must answer in the shape too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/boom-in-middleware":
            raise RuntimeError("middleware failed")
        await self.app(scope, receive, send)


@pytest.fixture
async def failing_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a route and a middleware that raise (as a bug would)."""
    app: FastAPI = create_app(settings)

    async def boom() -> None:
        raise ValueError("a bug")

    app.add_api_route("/boom", boom)
    app.add_middleware(FailingMiddleware)
    # Starlette's last resort re-raises after answering, for the server to see; the client
    # still gets the answer.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_an_unexpected_exception_is_a_500_in_the_error_shape_logged_with_its_request_id(
    failing_app: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    request_id = uuid.uuid4().hex
    with caplog.at_level(logging.ERROR, logger="backend.core.http"):
        response = await failing_app.get("/boom", headers={"X-Request-ID": request_id})
    error = assert_error(response, 500, "internal_error")
    assert error["request_id"] == request_id
    assert response.headers["x-request-id"] == request_id
    assert "a bug" not in response.text  # internals stay in the log
    [record] = [r for r in caplog.records if r.name == "backend.core.http"]
    assert request_id in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_an_exception_in_a_middleware_is_a_500_in_the_error_shape(
    failing_app: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="backend.core.http"):
        response = await failing_app.get("/boom-in-middleware")
    assert_error(response, 500, "internal_error")
    assert any(
        r.exc_info is not None and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records
    )


async def test_an_exception_in_a_started_stream_cuts_the_connection_and_is_logged_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Once a streamed body has begun no 500 can be sent: the client must see a broken
    response, not a clean end it would take for the whole answer."""
    app = create_app(settings)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first part\n"
        raise ValueError("a bug in the middle of a stream")

    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="text/plain")

    app.add_api_route("/stream", stream)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.02)
        request_id = uuid.uuid4().hex
        with caplog.at_level(logging.ERROR, logger="backend.core.http"):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get("/stream", headers={"X-Request-ID": request_id})
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
    [record] = [r for r in caplog.records if r.name == "backend.core.http"]
    assert request_id in record.getMessage()
