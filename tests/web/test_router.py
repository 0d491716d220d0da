"""The page, its static files and the development token route (in-process, ASGITransport)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from backend.core.auth import decode_token
from backend.core.config import Settings
from backend.core.redis import RedisService
from tests.conftest import client_for


@pytest.fixture
def dev_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"environment": "development"})


@pytest.fixture
async def dev_api(
    dev_settings: Settings, redis_service: RedisService
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(dev_settings):
        yield client


async def test_the_page_is_served_at_the_root(api: httpx.AsyncClient) -> None:
    response = await api.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="pt-BR">' in html
    assert '<script type="module" src="/static/app.js">' in html
    assert 'href="/static/app.css"' in html
    # Outside development the page asks for a token to paste.
    assert 'data-dev-login="false"' in html
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_in_development_the_page_signs_in_by_user_name(dev_api: httpx.AsyncClient) -> None:
    response = await dev_api.get("/")
    assert 'data-dev-login="true"' in response.text


@pytest.mark.parametrize(
    ("name", "media_type", "marker"),
    [
        ("app.js", "text/javascript", "readSse"),
        ("app.css", "text/css", ".triage-card"),
    ],
)
async def test_static_files(
    api: httpx.AsyncClient, name: str, media_type: str, marker: str
) -> None:
    response = await api.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert marker in response.text
    assert response.headers["cache-control"] == "no-cache"
    assert "etag" in response.headers


@pytest.mark.parametrize(
    "name", ["index.html", "..%2Frouter.py", "%2E%2E%2F%2E%2E%2Fcore%2Fconfig.py", "nope.js"]
)
async def test_nothing_else_on_disk_is_served(api: httpx.AsyncClient, name: str) -> None:
    response = await api.get(f"/static/{name}")
    assert response.status_code == 404
    assert "import" not in response.text


async def test_dev_token_signs_in_the_user(
    dev_api: httpx.AsyncClient, dev_settings: Settings
) -> None:
    response = await dev_api.post("/api/dev/token", json={"user": "maria", "tenant": "acme"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    principal = decode_token(dev_settings, body["access_token"])
    assert (principal.user_id, principal.tenant_id) == ("maria", "acme")
    sessions = await dev_api.get(
        "/api/conversations/sessions",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert sessions.status_code == 200
    assert sessions.json()["items"] == []


async def test_dev_token_tenant_defaults_to_dev(
    dev_api: httpx.AsyncClient, dev_settings: Settings
) -> None:
    response = await dev_api.post("/api/dev/token", json={"user": "joao"})
    assert response.status_code == 200
    assert decode_token(dev_settings, response.json()["access_token"]).tenant_id == "dev"


@pytest.mark.parametrize(
    "body",
    [
        {"user": ""},
        {"user": "maria{x}"},
        {"user": "a b"},
        {"user": "x" * 129},
        {"user": 7},
        {"user": "maria", "tenant": "t/1"},
        {"user": "maria", "role": "admin"},
        {},
    ],
)
async def test_dev_token_refuses_bad_names(dev_api: httpx.AsyncClient, body: object) -> None:
    response = await dev_api.post("/api/dev/token", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["message"]
    assert "access_token" not in response.text


@pytest.mark.parametrize("environment", ["test", "production"])
async def test_no_dev_token_outside_development(
    environment: str, settings: Settings, redis_service: RedisService
) -> None:
    async for client in client_for(settings.model_copy(update={"environment": environment})):
        response = await client.post("/api/dev/token", json={"user": "maria"})
        assert response.status_code == 404
        assert "access_token" not in response.text
        assert "/api/dev/token" not in (await client.get("/openapi.json")).text
