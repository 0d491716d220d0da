"""`triage serve`: the API under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from backend.cli import app
from backend.cli.common import load_settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Worker processes (each one is a full, stateless replica).", min=1)
    ] = 1,
    proxy_headers: Annotated[
        bool,
        typer.Option(
            help="Trust X-Forwarded-For/-Proto from the addresses in FORWARDED_ALLOW_IPS "
            "(behind nginx)."
        ),
    ] = False,
    graceful_timeout: Annotated[
        int,
        typer.Option(
            help="Seconds to let open requests finish on shutdown. SSE streams never finish "
            "on their own; they are closed after this and clients resume elsewhere with "
            "Last-Event-ID.",
            min=0,
        ),
    ] = 10,
    timeout_keep_alive: Annotated[
        int,
        typer.Option(
            help="Seconds an idle kept-alive connection stays open. Longer than the proxy's own "
            "upstream keep-alive (nginx: 60 s), so the proxy always closes first: a replica "
            "closing a connection just as the proxy reuses it cuts that request (nginx answers "
            "502 and never retries a POST).",
            min=1,
        ),
    ] = 75,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the API (backend.main:app) with uvicorn."""
    load_settings()  # refuse bad settings here, before any worker process starts
    uvicorn.run(
        "backend.main:app",
        host=host,
        port=port,
        workers=workers,
        proxy_headers=proxy_headers,
        timeout_graceful_shutdown=graceful_timeout,
        timeout_keep_alive=timeout_keep_alive,
        log_level=log_level,
    )
