"""Stopping background tasks reliably.

On Python 3.11 `asyncio.wait_for` (which redis-py uses around socket writes) can swallow a
cancellation that arrives just as the wrapped operation completes (CPython gh-86296, fixed in
3.12 by the rewrite on `asyncio.timeout`). A task cancelled once in the middle of a Redis call
may therefore carry on. Loops check a stop flag too, and `cancel_and_wait` cancels again until
the tasks are done or the deadline passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], deadline_s: float
) -> set[asyncio.Task[Any]]:
    """Cancel `tasks` (repeatedly) until done; returns those still running at the deadline."""
    pending = {t for t in tasks if not t.done()}
    deadline = time.monotonic() + deadline_s
    while pending and time.monotonic() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.1, deadline_s))
    return pending
