"""Bearer authentication on every request, with verified tokens remembered (`decode_token`):
what a token was once accepted for must not outlive its expiry, its secret or its signature."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt

from backend.core.auth import create_token
from backend.core.config import Settings
from tests.conftest import client_for, make_settings

SESSIONS = "/api/conversations/sessions"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_accepted_before_is_refused_once_it_expires(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    # A few seconds: `exp` is whole seconds, so a 1 s token may be gone before its first use.
    token = create_token(settings, "alice", "acme", ttl_seconds=3)
    assert (await api.get(SESSIONS, headers=_bearer(token))).status_code == 200
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)
    refused = await api.get(SESSIONS, headers=_bearer(token))
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "token expired"


async def test_a_token_accepted_under_one_secret_is_refused_under_another(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    token = create_token(settings, "alice", "acme")
    assert (await api.get(SESSIONS, headers=_bearer(token))).status_code == 200
    rotated = make_settings(key_prefix=settings.key_prefix, jwt_secret="x" * 48)
    async for other in client_for(rotated):
        refused = await other.get(SESSIONS, headers=_bearer(token))
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"


async def test_a_forged_signature_is_refused_after_the_real_token_was_accepted(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    token = create_token(settings, "alice", "acme")
    assert (await api.get(SESSIONS, headers=_bearer(token))).status_code == 200
    header, _, signature = token.split(".")
    forged_claims = jwt.decode(token, options={"verify_signature": False}) | {"sub": "mallory"}
    forged_payload = jwt.encode(forged_claims, "another-secret-of-enough-length-0123456789")
    forged = ".".join([header, forged_payload.split(".")[1], signature])
    refused = await api.get(SESSIONS, headers=_bearer(forged))
    assert refused.status_code == 401
    assert refused.json()["error"]["message"].startswith("invalid token")
