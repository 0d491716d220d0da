"""The page, its static files and the development token route (in-process, ASGITransport)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import jwt
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


async def test_the_page_learns_the_message_limit_from_the_server(
    settings: Settings, redis_service: RedisService
) -> None:
    async for client in client_for(settings.model_copy(update={"max_message_chars": 250})):
        html = (await client.get("/")).text
        assert 'data-max-message-chars="250"' in html
        # No maxlength on the message box: it would cut a pasted text without a word.
        assert "maxlength" not in html.split('id="message-input"')[1].split(">")[0]


@pytest.mark.parametrize(
    ("name", "media_type", "marker"),
    [
        ("app.js", "text/javascript", 'from "./sessions.js"'),
        ("sse.js", "text/javascript", "readSse"),
        ("composer.js", "text/javascript", "Idempotency-Key"),
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


async def test_every_module_the_page_imports_is_served_and_preloaded(
    api: httpx.AsyncClient,
) -> None:
    html = (await api.get("/")).text
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/([\w.-]+)">', html))
    # Follow the imports from the entry module, as the browser does.
    seen: set[str] = set()
    todo = ["app.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        response = await api.get(f"/static/{name}")
        assert response.status_code == 200, name
        # A module script served with any other media type does not run.
        assert response.headers["content-type"].startswith("text/javascript"), name
        assert response.headers["cache-control"] == "no-cache", name
        assert "script-src 'self'" in response.headers["content-security-policy"], name
        todo += re.findall(r'from "\./([\w.-]+\.js)"', response.text)
    assert len(seen) > 1
    assert preloaded == seen - {"app.js"}


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


@pytest.mark.parametrize(
    ("typed", "name", "user_id"),
    [
        ("maria", "maria", "maria"),  # already an id: the same user as `triage token --user maria`
        ("  Maria   Silva ", "Maria Silva", "Maria-Silva-"),
        ("joão", "joão", "joao-"),
        ("João", "João", "Joao-"),
        ("李雷", "李雷", "user-"),
        ("Ana {admin}", "Ana {admin}", "Ana-admin-"),
    ],
)
async def test_dev_token_takes_ordinary_names(
    dev_api: httpx.AsyncClient, dev_settings: Settings, typed: str, name: str, user_id: str
) -> None:
    response = await dev_api.post("/api/dev/token", json={"user": typed})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == name
    assert body["user"].startswith(user_id)
    token = body["access_token"]
    principal = decode_token(dev_settings, token)
    assert principal.user_id == body["user"]
    assert jwt.decode(token, options={"verify_signature": False})["name"] == name
    # The same name always signs in as the same user, who finds their sessions again.
    again = await dev_api.post("/api/dev/token", json={"user": typed})
    assert again.json()["user"] == body["user"]
    headers = {"Authorization": f"Bearer {token}"}
    created = await dev_api.post("/api/triage", json={"message": "Fui demitido."}, headers=headers)
    assert created.status_code == 201, created.text
    listed = await dev_api.get(
        "/api/conversations/sessions",
        headers={"Authorization": f"Bearer {again.json()['access_token']}"},
    )
    assert [s["session_id"] for s in listed.json()["items"]] == [created.json()["session_id"]]


async def test_names_that_fold_alike_are_different_users(dev_api: httpx.AsyncClient) -> None:
    users = set()
    for typed in ("João", "Joao", "joão", "Joāo"):
        response = await dev_api.post("/api/dev/token", json={"user": typed})
        users.add(response.json()["user"])
    assert len(users) == 4


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
        {"user": "   "},
        {"user": "maria\u0000"},
        {"user": "a\nb"},
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


async def test_a_refused_name_is_told_what_a_name_is(dev_api: httpx.AsyncClient) -> None:
    response = await dev_api.post("/api/dev/token", json={"user": "ana\u0007"})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert message.startswith("body.user: ") and "e.g. Maria Silva" in message


@pytest.mark.parametrize("environment", ["test", "production"])
async def test_no_dev_token_outside_development(
    environment: str, settings: Settings, redis_service: RedisService
) -> None:
    async for client in client_for(settings.model_copy(update={"environment": environment})):
        response = await client.post("/api/dev/token", json={"user": "maria"})
        assert response.status_code == 404
        assert "access_token" not in response.text
        assert "/api/dev/token" not in (await client.get("/openapi.json")).text


async def test_the_ops_page_loads_only_files_the_app_serves(api: httpx.AsyncClient) -> None:
    response = await api.get("/ops")
    assert response.status_code == 200
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    html = response.text
    assert '<html lang="pt-BR">' in html
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert "/static/vendor/uPlot.iife.min.js" in refs and "/static/ops.js" in refs
    # No CDN: the page must work on a machine without internet access.
    assert not [ref for ref in refs if "//" in ref]
    for ref in (r for r in refs if r.startswith("/static/")):
        file = await api.get(ref)
        assert file.status_code == 200, ref
        kind = "text/css" if ref.endswith(".css") else "text/javascript"
        assert file.headers["content-type"].startswith(kind), ref
    assert "uPlot" in (await api.get("/static/vendor/uPlot.iife.min.js")).text
    missing = await api.get("/static/vendor/uPlot.LICENSE")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
