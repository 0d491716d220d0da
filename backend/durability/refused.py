"""Refusals of a snapshot that come from PostgreSQL itself, and the 409 they lead to.

The record of refused sessions (kept in Redis beside the dirty set) is
`backend/state/refused.py`; this module tells which database errors are a session's own data
(`data_refusal`) and names the refusals the snapshot path makes itself.
"""

from __future__ import annotations

import re

from sqlalchemy import exc as sa_errors

from backend.state.refused import Refusal, RefusedSession, RefusedSessions, SessionNotDurable

__all__ = [
    "ARCHIVE_UNAVAILABLE",
    "INVALID_DOCUMENT",
    "Refusal",
    "RefusedSession",
    "RefusedSessions",
    "SessionNotDurable",
    "data_refusal",
]

# SQLSTATE classes a session's own data can cause (22 data exception, 23 integrity constraint,
# 54 program limit such as an oversized value): one session is refused, the rest are written.
# Anything else (a connection lost, a serialization failure) fails the batch and is retried.
_DATA_CLASSES = ("22", "23", "54")
_QUOTED = re.compile(r'"[^"]*"')

INVALID_DOCUMENT = "invalid_document"
ARCHIVE_UNAVAILABLE = "archive_unavailable"


def data_refusal(exc: sa_errors.DBAPIError) -> Refusal | None:
    """The refusal when PostgreSQL refused the data itself; None for other failures."""
    orig = exc.orig
    sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    if not sqlstate.startswith(_DATA_CLASSES):
        return None
    cause: BaseException | None = getattr(orig, "__cause__", None) or orig
    message = str(getattr(cause, "message", "") or cause).splitlines()
    # PostgreSQL quotes the values it cites ("invalid input syntax ...: "abc""): masked, so no
    # client text reaches logs or the record.
    first = _QUOTED.sub('"..."', message[0] if message else type(cause).__name__)
    return Refusal(code=sqlstate, reason=f"PostgreSQL refused it: {first}"[:300])
