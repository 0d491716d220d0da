"""What the commands share: settings, the services per command (`backend.wiring`), clean exits.

A command fails with a one-line message and a distinct exit status, never a traceback:
2 for bad configuration or usage, 3 when Redis or PostgreSQL is unreachable.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from backend.core.config import Settings, get_settings
from backend.core.errors import TriageError
from backend.state.service import ConversationStateManager
from backend.wiring import open_services

EXIT_CONFIG = 2
EXIT_STORE = 3

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


def reflow(doc: str | None) -> str:
    """A docstring as help text: paragraphs kept, the line breaks inside them dropped.

    Typer's rich help keeps every newline, so a docstring wrapped at 100 columns would print
    as ragged lines on a narrower terminal.
    """
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` on stderr and return the Exit to raise (`raise fail(...)`)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).upper() or "settings"
        raise fail(f"configuration: {where}: {first['msg']}", EXIT_CONFIG) from None


@asynccontextmanager
async def open_manager(settings: Settings) -> AsyncIterator[ConversationStateManager]:
    """A state manager on Redis alone (no read-through to PostgreSQL) for one command."""
    async with open_services(settings, tiers=False) as services:
        yield services.manager


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; an unreachable Redis or PostgreSQL exits with EXIT_STORE,
    another typed error with 1, each with its message."""
    try:
        return asyncio.run(coro)
    except TriageError as exc:
        raise fail(exc.message, EXIT_STORE if exc.status_code == 503 else 1) from None
