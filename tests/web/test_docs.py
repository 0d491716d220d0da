"""/docs (Swagger UI) and /redoc (ReDoc) render in headless Chromium from files the app serves
itself: nothing is loaded from another origin (a CDN), so they work on an offline machine."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import StartReplicas
from tests.web.page import ChatPage

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]

TITLE = "Triagem inteligente"
# ReDoc's bundle shows a small "Redocly" logo in its side menu from its CDN and hides it when
# that fails (as it does offline): decoration, the only outside URL either page asks for.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def fetched_urls(page: ChatPage) -> list[str]:
    """Every URL the page loaded (document, scripts, styles, images, the OpenAPI JSON)."""
    urls = page.driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    return [page.driver.current_url, *urls]


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        # Swagger UI: the API title and one block per operation.
        ("/docs", ".swagger-ui .info .title"),
        # ReDoc: the API title as the heading of the rendered document.
        ("/redoc", ".api-content h1"),
    ],
)
def test_the_api_docs_render_from_the_app_alone(
    page: ChatPage, start_replicas: StartReplicas, path: str, rendered: str
) -> None:
    [replica] = start_replicas(1)
    page.driver.get(f"{replica.url}{path}")
    heading = page.wait(
        lambda: next((e for e in page.find_all(rendered) if TITLE in e.text), None),
        f"{path} to render the API title",
    )
    assert TITLE in heading.text
    if path == "/docs":
        assert len(page.find_all(".opblock")) >= 15  # every route is listed
    page.screenshot(path.strip("/"))
    urls = fetched_urls(page)
    assert any(u.endswith("/openapi.json") for u in urls), urls
    assert all(u.startswith(replica.url) for u in urls if u != REDOC_LOGO), urls
