"""The summary of a session, as the API returns it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class SessionSummaryOut(BaseModel):
    session_id: str
    summary: str
    key_points: list[str]
    sentiment: str
    tags: list[str]
    message_count: int
    duration_seconds: float
    method: str
    session_version: int
    updated_at: datetime
