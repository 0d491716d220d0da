"""What this replica has done lately, kept in process memory for the operations page.

Counters of replies started / completed / failed, the SSE streams open now, and a small
reservoir of recent "chat POST received → first SSE event sent" latencies. They are cheap to
keep (no lock: one event loop per process) and are published by `backend/ops/service.py` in the
replica's heartbeat every few seconds, where the operations page reads every replica's.

Why a process-wide object and not one per app: a process is a replica, the code that counts
(reply runner, SSE streams) sits in layers below the operations package, and the Prometheus
metrics of issue 13 (`backend/core/metrics.py`) are process-wide for the same reason. The
counters are cumulative since the process started; rates are taken by whoever reads them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Recent latencies kept for the p99: enough for a stable tail over a few seconds of traffic,
# small enough to ride in every heartbeat.
RESERVOIR_SIZE = 256


@dataclass
class ReplicaStats:
    replies_started: int = 0
    replies_completed: int = 0
    replies_failed: int = 0
    streams_open: int = 0
    first_event_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=RESERVOIR_SIZE))

    def stream_opened(self) -> None:
        self.streams_open += 1

    def stream_closed(self) -> None:
        self.streams_open = max(0, self.streams_open - 1)

    def first_event(self, seconds: float) -> None:
        self.first_event_seconds.append(max(0.0, seconds))

    def snapshot(self) -> dict[str, Any]:
        return {
            "replies_started": self.replies_started,
            "replies_completed": self.replies_completed,
            "replies_failed": self.replies_failed,
            "streams_open": self.streams_open,
            "first_event_seconds": [round(s, 6) for s in self.first_event_seconds],
        }


def p99(samples: list[float]) -> float | None:
    """The 99th percentile (nearest rank) of `samples`; None without any."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


replica_stats = ReplicaStats()
