"""Routes of the durability layer: history paging, purge, and the health of its parts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any

from celery import Celery
from fastapi import APIRouter, Depends, Query

from backend.api.deps import CeleryDep, EngineDep, HybridDep, SessionId, SettingsDep
from backend.core.auth import PrincipalDep
from backend.core.db import health_check as db_health_check
from backend.core.errors import SessionNotFound, TriageError
from backend.core.http import error_responses
from backend.core.logging import session_from_path
from backend.durability.schemas import MessagePage, PurgeReport
from workers.inspect import BROKER_ERRORS, beat_lock_holder, ping_workers, queue_depth
from workers.keys import beat_lock

router = APIRouter(
    dependencies=[Depends(session_from_path)],
    prefix="/api/conversations/sessions",
    tags=["conversations"],
    responses=error_responses(401, 404, 422, 503),
)
health_router = APIRouter(prefix="/health", tags=["health"], responses=error_responses(503))


class WorkersUnavailable(TriageError):
    """No Celery worker answered a ping: snapshots to PostgreSQL are not being taken."""

    status_code = 503
    code = "workers_unavailable"


class BrokerUnavailable(TriageError):
    """The Celery broker could not be read (down, restarting or refusing commands)."""

    status_code = 503
    code = "broker_unavailable"


class SnapshotsLagging(TriageError):
    """Workers answer, but sessions have waited too long for their snapshot."""

    status_code = 503
    code = "snapshots_lagging"


@router.get("/{session_id}/messages")
async def list_messages(
    session_id: SessionId,
    principal: PrincipalDep,
    hybrid: HybridDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[
        int | None, Query(ge=1, description="only messages with seq < before")
    ] = None,
) -> MessagePage:
    """Page back through a session's whole history (hot, warm and cold tiers), oldest first."""
    return await hybrid.page_messages(principal, session_id, before=before, limit=limit)


@router.post("/{session_id}/purge", responses=error_responses(400, 413))
async def purge_session(
    session_id: SessionId, principal: PrincipalDep, hybrid: HybridDep
) -> PurgeReport:
    """Erase a session from every tier (Redis, PostgreSQL, archive): LGPD right to erasure."""
    owner = await hybrid.owner(session_id)
    if owner is None or (owner.user_id, owner.tenant_id) != (
        principal.user_id,
        principal.tenant_id,
    ):
        raise SessionNotFound(f"session {session_id} not found")
    return await hybrid.purge(session_id)


@health_router.get("/postgres")
async def postgres_health(engine: EngineDep) -> dict[str, Any]:
    """PostgreSQL latency, version, schema revision and pool use. 503 when it does not answer."""
    return await db_health_check(engine)


@health_router.get("/celery")
async def celery_health(
    celery: CeleryDep, hybrid: HybridDep, settings: SettingsDep
) -> dict[str, Any]:
    """Workers, queue depth, snapshot backlog and refused snapshots; 503 if degraded."""
    lock_key = beat_lock(settings.key_prefix)
    broker = await asyncio.to_thread(_look_at_broker, celery, settings.celery_queue, lock_key)
    dirty, lag = await hybrid.manager.dirty_backlog()
    lag_limit = settings.snapshot_lag_intervals * settings.dirty_flush_interval
    refused = await hybrid.refused.count()
    body = {
        "workers": broker.workers,
        "queue": settings.celery_queue,
        "queue_depth": broker.depth,
        "dirty_sessions": dirty,
        "snapshot_lag_seconds": lag,
        "snapshot_lag_limit_seconds": lag_limit,
        "beat_scheduler": broker.beat,
        # Sessions whose snapshot PostgreSQL refused: kept dirty and retried, listed with their
        # reasons by `triage stats` (not here: this route is unauthenticated).
        "refused_sessions": refused,
    }
    if broker.error is not None:
        raise BrokerUnavailable(f"the Celery broker cannot be read: {broker.error}", **body)
    if not broker.workers:
        raise WorkersUnavailable("no Celery worker answered a ping", **body)
    if lag > lag_limit:
        raise SnapshotsLagging(
            f"the oldest unsnapshotted session has waited {lag:.0f}s (limit {lag_limit:g}s): "
            "snapshots are failing (is PostgreSQL up?) or not scheduled (is a beat running?)",
            **body,
        )
    return {"status": "degraded" if refused else "ok", **body}


@dataclass
class _BrokerView:
    workers: list[str] = field(default_factory=list)
    depth: int | None = None
    beat: str | None = None
    error: str | None = None


def _look_at_broker(celery: Celery, queue: str, lock_key: str) -> _BrokerView:
    depth = queue_depth(celery, queue)
    if depth is None:  # the broker cannot be read: no worker can be reached either
        return _BrokerView(error="no answer to a queue length request")
    try:
        return _BrokerView(ping_workers(celery), depth, beat_lock_holder(celery, lock_key))
    except BROKER_ERRORS as exc:
        return _BrokerView(depth=depth, error=f"{type(exc).__name__}: {exc}")
