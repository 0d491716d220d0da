"""How long the replica's event loop keeps everyone waiting: its lag and the GC's pauses.

A replica serves every request and stream from one event loop: a callback that runs for
200 ms delays every other client by as much, whatever the average CPU says. `LoopMonitor`
samples the lag (how late a timer fires) twice a second and times every cyclic garbage
collection (`gc.callbacks`), into `triage_event_loop_lag_seconds` and
`triage_gc_pause_seconds{generation}`; a lag past `SLOW_SECONDS` is also logged (at most once
a minute) with the pauses that explain it, if any.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import Any

from backend.core import metrics

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5
SLOW_SECONDS = 0.5
LOG_EVERY_SECONDS = 60.0


class LoopMonitor:
    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._gc_started = 0.0
        self._gc_seconds = 0.0  # paused by the GC since the last sample
        self._logged = float("-inf")

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._sample(), name="loop-monitor")

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        paused = time.perf_counter() - self._gc_started
        self._gc_seconds += paused
        metrics.gc_paused(info["generation"], paused)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - due)
            metrics.loop_lagged(lag)
            in_gc, self._gc_seconds = self._gc_seconds, 0.0
            now = time.monotonic()
            if lag >= SLOW_SECONDS and now - self._logged >= LOG_EVERY_SECONDS:
                self._logged = now
                log.warning(
                    "event loop %.0f ms late (GC pauses since the last sample: %.0f ms)",
                    lag * 1000,
                    in_gc * 1000,
                )
