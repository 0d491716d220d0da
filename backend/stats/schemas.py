"""The tenant stats document (GET /api/stats)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel


class DayCount(BaseModel):
    day: date
    messages: int
    active_sessions: int


class TriageCount(BaseModel):
    area: str | None
    urgency: str | None
    sessions: int


class TenantStats(BaseModel):
    tenant: str
    days: int
    since: date  # first UTC day counted (today is the last)
    messages_total: int
    messages_per_day: list[DayCount]
    active_sessions: int  # sessions with at least one message in the window
    new_sessions: int  # sessions created in the window
    triage_by_area: dict[str, int]
    triage_by_urgency: dict[str, int]
    triage_outcomes: list[TriageCount]
    average_duration_seconds: float | None  # first to last activity, sessions active in window
    generated_at: datetime
    cached: bool = False
