"""The replica's event-loop lag and GC pauses, as an operator sees them on GET /metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from backend.core.config import Settings
from tests.conftest import client_for
from tests.core.test_metrics import moved, scrape, value


async def test_a_blocked_loop_shows_as_lag_and_is_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async for api in client_for(settings):
        await asyncio.sleep(0.6)  # at least one sample of an idle loop
        before = await scrape(api)
        assert value(before, "triage_event_loop_lag_seconds_count") >= 1
        with caplog.at_level(logging.WARNING, logger="backend.core.loop_monitor"):
            time.sleep(1.2)  # noqa: ASYNC251 -- the point: a long callback blocks the loop
            await asyncio.sleep(0.6)
        after = await scrape(api)
        late = moved(before, after, "triage_event_loop_lag_seconds_count") - moved(
            before, after, "triage_event_loop_lag_seconds_bucket", le="0.5"
        )
        assert late >= 1, "the 1.2 s block was not seen as lag past 0.5 s"
        assert any("event loop" in r.getMessage() for r in caplog.records)


async def test_collections_are_timed_by_generation_and_the_thresholds_set(
    settings: Settings,
) -> None:
    wanted = settings.model_copy(update={"gc_young_threshold": 12_345})
    default = gc.get_threshold()
    try:
        async for api in client_for(wanted):
            assert gc.get_threshold()[0] == 12_345
            before = await scrape(api)
            gc.collect()
            gc.collect(0)
            after = await scrape(api)
            assert moved(before, after, "triage_gc_pause_seconds_count", generation="2") == 1
            assert moved(before, after, "triage_gc_pause_seconds_count", generation="0") >= 1
            assert moved(before, after, "triage_gc_pause_seconds_sum", generation="2") > 0
        # The app's callback goes with its lifespan: nothing is recorded for a closed app.
        assert not any(
            getattr(cb, "__qualname__", "").startswith("LoopMonitor") for cb in gc.callbacks
        )
    finally:
        gc.set_threshold(*default)
