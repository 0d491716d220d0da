"""The operations page (/ops) in headless Chromium against a real uvicorn replica.

An operator pastes a token with `role: "ops"` and sees the service's figures as charts that
fill with points every few seconds, and the tenant's stats (from PostgreSQL, after a snapshot)
as charts; a token without the role is told it has no access. Screenshots are saved under
artifacts/web/<test>/.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from backend.core.auth import create_token
from backend.core.config import Settings
from backend.wiring import open_services
from tests.conftest import make_settings
from tests.e2e.conftest import StartReplicas
from tests.sse_helpers import GUARD
from tests.web.page import ChatPage

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]

# A tenant and user of this test's own: PostgreSQL is shared by the run, and the tenant stats
# and session listings of other tests must not see these sessions (nor these charts theirs).
TENANT = f"ops-{uuid.uuid4().hex[:8]}"
USER = f"ops-page-{uuid.uuid4().hex[:8]}"
MESSAGES = [
    "Meu locador quer me despejar e a audiência é amanhã. Moro no imóvel há 5 anos.",
    "Fui demitido sem justa causa e a empresa não pagou minhas verbas rescisórias.",
]
LIVE_CHARTS = ["replicas", "streams", "replies", "p99", "backlog", "queue", "memory"]


def chat(base: str, message: str) -> None:
    """Post one message as a user of the tenant and read its reply stream to the end."""
    token = create_token(make_settings(), USER, TENANT)
    with (
        httpx.Client(base_url=base, timeout=GUARD) as client,
        client.stream(
            "POST",
            "/api/agents/chat",
            json={"message": message},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status_code == 200
        body = "".join(response.iter_text())
    assert "event: message.completed" in body


async def snapshot(settings: Settings) -> None:
    """What beat's flush_dirty does: the sessions go to PostgreSQL (the stats read them)."""
    async with open_services(settings) as services:
        await services.hybrid.flush_dirty(due_only=False)


def points(page: ChatPage, chart_id: str) -> int:
    return int(page.find(f"#{chart_id}").get_attribute("data-points") or 0)


def sign_in(page: ChatPage, token: str) -> None:
    page.find("#token").send_keys(token)
    page.find("#token-login button[type=submit]").click()


def test_an_operator_sees_live_charts_and_the_tenant_stats(
    start_replicas: StartReplicas, settings: Settings, page: ChatPage
) -> None:
    (api,) = start_replicas(1)
    for message in MESSAGES:
        chat(api.url, message)
    asyncio.run(snapshot(settings))

    page.driver.get(f"{api.url}/ops")
    page.wait(lambda: page.visible("login"), "the token form")
    page.screenshot("token-form")
    sign_in(page, create_token(make_settings(), "ops.ana", TENANT, role="ops"))
    page.wait(lambda: page.visible("dashboard"), "the dashboard")
    # Two polls at least, so rates have a value; a message in between moves the reply rate.
    page.wait(lambda: points(page, "chart-replies") >= 2, "two polls")
    chat(api.url, "Ainda não tenho os documentos do contrato de aluguel.")
    page.wait(
        lambda: all(points(page, f"chart-{c}") >= 4 for c in LIVE_CHARTS), "four polls per chart"
    )
    page.wait(lambda: points(page, "chart-messages") >= 1, "the tenant's messages per day")
    page.wait(lambda: points(page, "triage-area") >= 1, "the triage outcomes by area")

    assert page.find("#tile-replicas").text == "1"
    assert page.find("#tile-refused").text == "0"
    assert page.find("#tile-p99").text.endswith(" ms")
    # The third chat is not snapshotted: its session waits for a flush.
    assert page.find("#tile-dirty").text.startswith("1 (")
    assert "MiB" in page.find("#tile-memory").text
    assert page.find("#tenant").text == f"({TENANT})"
    canvases = page.find_all(".chart canvas")
    assert len(canvases) == len(LIVE_CHARTS) + 2  # and the two tenant charts
    assert not [line for line in page.console() if "SEVERE" in line]
    page.screenshot("tiles-and-first-charts")
    for section in ("#chart-replies", "#chart-backlog", "#chart-memory", "#chart-messages"):
        page.driver.execute_script(f"document.querySelector('{section}').scrollIntoView()")
        page.screenshot(f"charts-{section[7:]}")
    page.driver.execute_script("document.querySelector('#triage-area').scrollIntoView()")
    page.screenshot("triage-bars")


def test_a_token_without_the_ops_role_is_told_it_has_no_access(
    start_replicas: StartReplicas, page: ChatPage
) -> None:
    (api,) = start_replicas(1)
    page.driver.get(f"{api.url}/ops")
    page.wait(lambda: page.visible("login"), "the token form")
    sign_in(page, create_token(make_settings(), USER, TENANT))
    page.wait(
        lambda: page.driver.execute_script("return document.body.dataset.state") == "denied",
        "the page to refuse the token",
    )
    assert 'role "ops"' in page.find("#login-error").text
    assert not page.visible("dashboard")
    page.screenshot("denied")
