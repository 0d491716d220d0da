"""Per worker process: one event loop, one Redis pool, one engine, the services on top.

Mirrors the API's lifespan: clients are created once per process (`worker_process_init` for
prefork children, lazily on the first task otherwise, e.g. the solo pool) and closed on
`worker_process_shutdown`. Tasks run their coroutine on this one loop; never `asyncio.run` per
task, which would strand pooled connections on a dead loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from backend.core.config import Settings, get_settings
from backend.wiring import build_services

log = logging.getLogger(__name__)
T = TypeVar("T")


class WorkerContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.services = build_services(settings, pool_size=2, max_overflow=2)
        self.redis = self.services.redis
        self.manager = self.services.manager
        self.engine = self.services.engine
        self.hybrid = self.services.hybrid
        self.summaries = self.services.summaries
        self.stats = self.services.stats

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            self.run(self.services.close())
        finally:
            self.loop.close()


_context: WorkerContext | None = None


def get_context() -> WorkerContext:
    """This process's context, created on first use (and again after a fork)."""
    global _context
    if _context is None or _context.pid != os.getpid():
        _context = WorkerContext(get_settings())
        log.info("worker process %d: clients ready", _context.pid)
    return _context


def close_context() -> None:
    global _context
    if _context is not None and _context.pid == os.getpid():
        _context.close()
        log.info("worker process %d: clients closed", _context.pid)
    _context = None
