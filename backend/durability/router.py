"""Routes of the durability layer: history paging, purge, and the health of its parts."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from celery import Celery
from fastapi import APIRouter, Query

from backend.conversations.router import SessionId
from backend.core.auth import PrincipalDep
from backend.core.db import health_check as db_health_check
from backend.core.deps import CeleryDep, EngineDep, HybridDep, SettingsDep
from backend.core.errors import SessionNotFound, TriageError
from backend.durability.schemas import MessagePage, PurgeReport
from workers.inspect import ping_workers, queue_depth

router = APIRouter(prefix="/api/conversations/sessions", tags=["conversations"])
health_router = APIRouter(prefix="/health", tags=["health"])


class WorkersUnavailable(TriageError):
    """No Celery worker answered a ping: snapshots to PostgreSQL are not being taken."""

    status_code = 503
    code = "workers_unavailable"


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


@router.post("/{session_id}/purge")
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
    """Workers, queue depth and snapshot backlog; "degraded" while PostgreSQL refuses some."""
    workers, depth = await asyncio.to_thread(_ping_and_measure, celery, settings.celery_queue)
    dirty, lag = await hybrid.manager.dirty_backlog()
    refused = await hybrid.refused.count()
    body = {
        "workers": workers,
        "queue": settings.celery_queue,
        "queue_depth": depth,
        "dirty_sessions": dirty,
        "snapshot_lag_seconds": lag,
        # Sessions whose snapshot PostgreSQL refused: kept dirty and retried, listed with their
        # reasons by `triage stats` (not here: this route is unauthenticated).
        "refused_sessions": refused,
    }
    if not workers:
        raise WorkersUnavailable("no Celery worker answered a ping", **body)
    return {"status": "degraded" if refused else "ok", **body}


def _ping_and_measure(celery: Celery, queue: str) -> tuple[list[str], int | None]:
    depth = queue_depth(celery, queue)
    if depth is None:  # the broker cannot be read: no worker can be reached either
        return [], None
    try:
        return ping_workers(celery), depth
    except OSError:
        return [], None
