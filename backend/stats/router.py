"""Tenant stats. Scoped to the caller's tenant: another tenant answers 403."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.api.deps import StatsDep
from backend.core.auth import PrincipalDep
from backend.core.errors import TriageError
from backend.core.http import error_responses
from backend.stats.schemas import TenantStats

router = APIRouter(prefix="/api", tags=["stats"], responses=error_responses(401, 403, 422, 503))


class ForbiddenTenant(TriageError):
    status_code = 403
    code = "forbidden"


@router.get("/stats")
async def tenant_stats(
    principal: PrincipalDep,
    stats: StatsDep,
    tenant: Annotated[str | None, Query(max_length=128, description="your tenant")] = None,
    days: Annotated[int, Query(ge=1, le=90)] = 7,
) -> TenantStats:
    """Messages per day, active/new sessions, triage outcomes, mean duration (cached 5 min)."""
    if tenant is not None and tenant != principal.tenant_id:
        raise ForbiddenTenant("stats are available for your own tenant only")
    return await stats.tenant_stats(principal.tenant_id, days)
