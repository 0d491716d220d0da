"""The operations overview document (GET /api/ops/overview).

Field names follow the Prometheus metrics of issue 13 (`triage_sse_streams_open`,
`triage_replies_total`, `triage_dirty_sessions`, ...), so the figures can later come from
them without changing the page. A figure whose source cannot be read right now is null.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReplicaFigures(BaseModel):
    replica_id: str
    seen_seconds_ago: float = Field(description="since its last heartbeat")
    streams_open: int
    replies_started: int = Field(description="since the replica started")
    replies_completed: int
    replies_failed: int
    first_event_p99_seconds: float | None = Field(
        description="chat POST received to its first SSE event, p99 of recent ones"
    )


class OpsOverview(BaseModel):
    generated_at: float = Field(description="epoch seconds")
    heartbeat_seconds: float
    replicas: list[ReplicaFigures]
    streams_open: int
    replies_started: int
    replies_completed: int
    replies_failed: int
    first_event_p99_seconds: float | None
    dirty_sessions: int | None
    dirty_oldest_age_seconds: float | None
    refused_sessions: int | None
    queue: str
    queue_depth: int | None
    workers: list[str] | None
    redis_used_memory_bytes: int | None
    redis_maxmemory_bytes: int | None = Field(description="0: no limit")
