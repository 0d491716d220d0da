"""What a state write carries besides its document, and how it can end (`StateStore`).

Kept apart from the store so its read and write path reads in one sitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.state.schemas import Event, OrchestrationState


@dataclass(frozen=True)
class WriteResult:
    version: int
    event_id: str | None


@dataclass(frozen=True)
class IdempotentWrite:
    """Tags a write with a client's Idempotency-Key: at most one write per key and session.

    `record` (a JSON object) is stored with the write, in the same script, under the session's
    hash tag; the script adds the write's `event_id` and `version`. A later write carrying the
    same key writes nothing and raises `AlreadyWritten` with that record instead.
    """

    key: str
    record: dict[str, Any]


@dataclass(frozen=True)
class RateLimit:
    """A fixed-window counter a write counts one hit on, in its own script (single node)."""

    key: str
    limit: int
    window_ms: int


class OverLimit(Exception):
    """A write's rate-limit counter (`limits[index]`) is past its limit: nothing was written.

    Not a TriageError: the caller that asked for the limit turns it into its 429.
    """

    def __init__(self, index: int, retry_after_ms: int) -> None:
        super().__init__("rate limit exceeded")
        self.index = index
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True)
class Companion:
    """The session's orchestration, written by a conversation write in its own script.

    `state` is the orchestration as read (its `version` is the one the script checks) and
    changed; it is stored at version + 1 with `event`. A stale one fails the whole write with
    `CompanionConflict` (nothing written).
    """

    state: OrchestrationState
    event: Event | None


class CompanionConflict(Exception):
    """The companion's document changed since it was read: nothing was written."""


class AlreadyWritten(Exception):
    """A write carried an Idempotency-Key already used in this session (nothing was written).

    Not a TriageError: callers turn it into the first write's answer (or a 422).
    """

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__("idempotency key already used")
        self.record = record
