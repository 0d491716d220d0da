"""Waiting out store outages in the reply runner.

An outage (Redis full under `noeviction` or unreachable, PostgreSQL down for a restore) is not
a failure of the reply: the step that met it is tried again after a bounded, jittered
exponential backoff (0.1 s doubling up to a third of the lease: the renewer's pace, so a lease
kept through the outage never lapses in one wait), and nothing is counted against
`GENERATION_MAX_ATTEMPTS`. The time of the last outage seen also tells the runner that a lease
which lapsed meanwhile may belong to a generator that is waiting too (see `recent`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.backoff import EqualJitterBackoff

from backend.core.db import DatabaseUnavailable
from backend.core.errors import StoreUnavailable

log = logging.getLogger(__name__)

# A store that cannot answer right now: the step waits and is tried again, never counted.
OUTAGES = (StoreUnavailable, DatabaseUnavailable)

_FIRST_WAIT_S = 0.1


class OutageWaits:
    def __init__(self, lease_ms: int) -> None:
        self._backoff = EqualJitterBackoff(cap=max(lease_ms / 3000, _FIRST_WAIT_S), base=0.1)
        self._window_s = 2 * lease_ms / 1000
        self._last = float("-inf")

    def seen(self) -> None:
        """A store was unavailable just now."""
        self._last = time.monotonic()

    def recent(self) -> bool:
        """Within two leases of an outage seen here: a generator whose lease lapsed may be
        waiting it out, and takes its lease back within a third of a lease once the store
        answers."""
        return time.monotonic() - self._last < self._window_s

    async def pause(self, failures: int, what: str, exc: Exception) -> None:
        """Wait before try `failures + 1` of a step; logged on the first and every tenth."""
        self.seen()
        wait = self._backoff.compute(failures)
        if failures == 1 or failures % 10 == 0:
            log.warning(
                "%s: store unavailable (try %d), retrying in %.1fs: %s", what, failures, wait, exc
            )
        await asyncio.sleep(wait)
