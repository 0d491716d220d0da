"""The operations overview for operators (a token with `role: "ops"`).

Anyone else, with any token or none, gets the 404 an unknown route gets, in the same shape:
the route does not say that it exists (and it is left out of the OpenAPI document).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from backend.api.deps import CeleryDep, HybridDep, RedisDep, RuntimeDep, SettingsDep
from backend.core.auth import Principal, Unauthorized, decode_token
from backend.ops.schemas import OpsOverview
from backend.ops.service import OpsService

router = APIRouter(prefix="/api/ops", tags=["ops"], include_in_schema=False)
_bearer = HTTPBearer(auto_error=False)


async def ops_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # The unknown-route handler (backend/core/http.py) writes the body: exactly a missing route.
    hidden = HTTPException(status_code=404)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise hidden
    try:
        principal = decode_token(request.app.state.settings, credentials.credentials)
    except Unauthorized:
        raise hidden from None
    if not principal.is_ops:
        raise hidden
    return principal


OpsPrincipalDep = Annotated[Principal, Depends(ops_principal)]


@router.get("/overview")
async def overview(
    _: OpsPrincipalDep,
    runtime: RuntimeDep,
    redis: RedisDep,
    hybrid: HybridDep,
    celery: CeleryDep,
    settings: SettingsDep,
) -> OpsOverview:
    """Replicas, open streams, replies, p99 to first event, backlogs, queue, Redis memory."""
    return await OpsService(redis, hybrid, celery, settings).overview(runtime.heartbeat)
