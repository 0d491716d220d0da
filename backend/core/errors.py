"""Typed domain errors.

Each carries its HTTP status; `register_error_handlers` maps them to JSON in one place.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class TriageError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class StoreUnavailable(TriageError):
    """Redis (hot state) could not be reached or answered too slowly."""

    status_code = 503
    code = "store_unavailable"


class StateNotReplicated(StoreUnavailable):
    """A state write reached the master but not STATE_WRITE_REPLICAS replicas in time.

    Not an acknowledgement: the write may yet be lost in a failover, or may survive it. A
    retry with the same Idempotency-Key stores it at most once either way.
    """

    code = "state_not_replicated"


class VersionConflict(TriageError):
    """A write carried a stale version, and the bounded retries (if any) ran out."""

    status_code = 409
    code = "version_conflict"

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message, expected=expected, actual=actual)
        self.expected = expected
        self.actual = actual


class SessionNotFound(TriageError):
    status_code = 404
    code = "session_not_found"


class InvalidState(TriageError):
    """A state document failed validation (e.g. a malformed legacy record)."""

    status_code = 422
    code = "invalid_state"


def register_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TriageError)
        headers = None
        if exc.status_code in (409, 429, 503):
            headers = {"Retry-After": str(exc.details.get("retry_after", 1))}
        if exc.status_code == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message, **exc.details}},
            status_code=exc.status_code,
            headers=headers,
        )

    app.add_exception_handler(TriageError, handle)
