"""Bearer JWT authentication (HS256). Every route depends on `PrincipalDep`.

`sub` is the user, `tenant` the tenant; an optional `role` claim (only "ops" means anything:
the operations page and `GET /api/ops/overview`). Ids are restricted to a safe alphabet
because they end up in Redis keys; a token with other characters is refused like a forged one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.core.config import Settings
from backend.core.errors import TriageError
from backend.core.ids import is_valid_principal_id

_bearer = HTTPBearer(auto_error=False, description="Bearer JWT: sub = user, tenant = tenant")


OPS_ROLE = "ops"


class Unauthorized(TriageError):
    status_code = 401
    code = "unauthorized"


@dataclass(frozen=True)
class Principal:
    user_id: str
    tenant_id: str
    role: str | None = None

    @property
    def is_ops(self) -> bool:
        return self.role == OPS_ROLE


def create_token(
    settings: Settings,
    user_id: str,
    tenant_id: str,
    ttl_seconds: int = 86_400,
    *,
    name: str | None = None,
    role: str | None = None,
) -> str:
    """A signed token; `name` (a display name, any text) rides along for clients to show,
    `role` ("ops" for an operator) is checked by the routes that need it."""
    if not (is_valid_principal_id(user_id) and is_valid_principal_id(tenant_id)):
        raise ValueError("user and tenant ids may use letters, digits and _.@+:- (1-128 chars)")
    now = int(time.time())
    claims: dict[str, str | int] = {
        "sub": user_id,
        "tenant": tenant_id,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if name is not None:
        claims["name"] = name
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)


# Tokens verified lately, with their principal and expiry. A client sends the same token
# with every request, and checking its signature again each time was a visible share of a
# chat message's CPU. A token is still checked on every request: it must be one verified
# with this very secret and algorithm, and not have expired since (the only claim whose
# verdict changes with time once a token has been accepted).
VERIFIED_TOKENS_CACHED = 4_096
_verified: dict[tuple[str, str, str], tuple[Principal, int]] = {}


def decode_token(settings: Settings, token: str) -> Principal:
    key = (settings.jwt_secret, settings.jwt_algorithm, token)
    known = _verified.get(key)
    if known is not None:
        principal, expires = known
        # PyJWT's own rule: expired once `exp` is not in the future.
        if time.time() < expires:
            return principal
        del _verified[key]
        raise Unauthorized("token expired")
    principal, expires = _verify(settings, token)
    if len(_verified) >= VERIFIED_TOKENS_CACHED:
        del _verified[next(iter(_verified))]  # the oldest
    _verified[key] = (principal, expires)
    return principal


def _verify(settings: Settings, token: str) -> tuple[Principal, int]:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[settings.jwt_algorithm],
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    user, tenant = claims.get("sub"), claims.get("tenant")
    if not isinstance(user, str) or not isinstance(tenant, str):
        raise Unauthorized("token must carry string claims 'sub' (user) and 'tenant'")
    if not (is_valid_principal_id(user) and is_valid_principal_id(tenant)):
        raise Unauthorized("token carries a user or tenant id with unsupported characters")
    role = claims.get("role")
    if role is not None and not isinstance(role, str):
        raise Unauthorized("token claim 'role' must be a string")
    return Principal(user_id=user, tenant_id=tenant, role=role), int(claims["exp"])


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token (Authorization: Bearer <jwt>)")
    return decode_token(request.app.state.settings, credentials.credentials)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
