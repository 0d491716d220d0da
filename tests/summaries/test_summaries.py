"""Summaries: the offline method, the LLM option against a local fake provider, the route."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from backend.core.auth import create_token
from backend.core.config import Settings
from backend.durability.service import HybridConversationService
from backend.state.schemas import ConversationState, Message
from backend.state.service import ConversationStateManager
from backend.summaries import repository as summaries_repo
from backend.summaries.service import SummaryService
from backend.summaries.summarizer import summarize_offline
from tests.conftest import make_settings
from tests.durability.conftest import new_id
from tests.health.test_router import client_for
from tests.redis_cluster import free_port

STORY = [
    ("user", "Boa tarde. Fui demitido sem justa causa em 10/03/2024 e não recebi a rescisão."),
    ("assistant", "Entendo. Você tinha carteira assinada?"),
    ("user", "Sim, trabalhei 4 anos. A empresa não pagou o FGTS de R$ 12.000. Estou preocupado."),
    ("assistant", "Há alguma audiência marcada?"),
    ("user", "Tenho audiência amanhã, é urgente."),
]


def messages() -> list[Message]:
    return [Message(seq=i + 1, role=r, content=c) for i, (r, c) in enumerate(STORY)]  # type: ignore[arg-type]


async def write_story(manager: ConversationStateManager, sid: str) -> ConversationState:
    state = ConversationState(session_id=sid, user_id="ana", tenant_id="escritorio-1")
    for role, content in STORY:
        state.append_message(role, content, max_history=100)  # type: ignore[arg-type]
    return await manager.save_conversation_state(state)


def test_offline_summary_finds_area_sentiment_key_points_and_urgency() -> None:
    content = summarize_offline(messages())

    assert content.tags[0] == "trabalhista" and "urgente" in content.tags
    assert content.sentiment == "negativo"
    assert any("R$ 12.000" in p for p in content.key_points)
    assert any("10/03/2024" in p for p in content.key_points)
    assert "5 mensagens (3 do cliente)" in content.summary
    assert "Fui demitido sem justa causa" in content.summary


def test_offline_summary_of_a_thankful_client_is_positive() -> None:
    thanks = [
        Message(seq=1, role="user", content="Muito obrigado, ficou ótimo, problema resolvido!")
    ]
    assert summarize_offline(thanks).sentiment == "positivo"


async def test_summary_route_builds_stores_and_scopes_to_the_owner(
    settings: Settings, manager: ConversationStateManager, hybrid: HybridConversationService
) -> None:
    sid = new_id()
    await write_story(manager, sid)  # never flushed: the route makes it durable first
    url = f"/api/conversations/sessions/{sid}/summary"
    ana = {"Authorization": f"Bearer {create_token(settings, 'ana', 'escritorio-1')}"}
    bruno = {"Authorization": f"Bearer {create_token(settings, 'bruno', 'escritorio-1')}"}
    async for client in client_for(settings):
        response = await client.get(url, headers=ana)
        assert response.status_code == 200
        body = response.json()
        assert body["message_count"] == 5 and body["session_version"] == 1
        assert body["method"] == "offline" and "trabalhista" in body["tags"]
        assert body["duration_seconds"] >= 0
        assert (await client.get(url, headers=bruno)).status_code == 404


async def test_daily_build_summarises_only_sessions_that_changed(
    manager: ConversationStateManager, hybrid: HybridConversationService, settings: Settings
) -> None:
    sid = new_id()
    await write_story(manager, sid)
    await hybrid.flush_dirty()
    service = SummaryService(hybrid, settings)

    async def pending() -> list[str]:
        async with hybrid.engine.connect() as conn:
            return await summaries_repo.pending(conn, 100_000)

    assert sid in await pending()
    await service.build_pending(limit=100_000)
    assert sid not in await pending()

    state = await manager.get_conversation_state(sid)
    assert state is not None
    state.append_message("user", "Mais um detalhe: recebi um aviso prévio.", max_history=100)
    await manager.save_conversation_state(state)
    await hybrid.flush_dirty()

    assert sid in await pending()
    await service.build_pending(limit=100_000)
    async with hybrid.engine.connect() as conn:
        summary = await summaries_repo.get(conn, sid)
    assert summary is not None and summary.session_version == 2 and summary.message_count == 6


# --------------------------------------------------------- the LLM option


class FakeProvider:
    """A local server speaking the OpenAI chat-completions wire format (non-streaming)."""

    def __init__(self, reply: str, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> JSONResponse:
            self.requests.append(await request.json())
            body = {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": reply},
                    }
                ],
            }
            return JSONResponse(body, status_code=status)

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeProvider:
        self.thread.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def good_provider() -> Iterator[FakeProvider]:
    reply = json.dumps(
        {
            "summary": "Cliente demitido sem receber verbas.",
            "key_points": ["FGTS não depositado"],
            "sentiment": "negativo",
            "tags": ["trabalhista"],
        }
    )
    with FakeProvider(reply) as provider:
        yield provider


async def test_llm_method_uses_the_provider(
    manager: ConversationStateManager,
    hybrid: HybridConversationService,
    good_provider: FakeProvider,
) -> None:
    sid = new_id()
    await write_story(manager, sid)
    await hybrid.flush_dirty()
    settings = make_settings(
        summary_method="llm", summary_llm_url=good_provider.url, summary_llm_api_key="k-test"
    )

    summary = await SummaryService(hybrid, settings).build(sid)

    assert summary is not None and summary.method == "llm"
    assert summary.summary == "Cliente demitido sem receber verbas."
    sent = good_provider.requests[0]
    assert sent["model"] == settings.llm_model  # SUMMARY_LLM_MODEL unset: LLM_MODEL
    assert "Fui demitido" in sent["messages"][1]["content"]


@pytest.mark.parametrize(
    "reply",
    [
        "not json at all",
        # Valid JSON whose text PostgreSQL cannot store: the summary row would be refused.
        '{"summary": "Cliente \\u0000 demitido.", "tags": ["trabalhista"]}',
        '{"summary": "Cliente demitido.", "key_points": ["\\ud800"]}',
    ],
    ids=["not json", "nul", "lone surrogate"],
)
async def test_llm_failure_falls_back_to_the_offline_method(
    manager: ConversationStateManager, hybrid: HybridConversationService, reply: str
) -> None:
    sid = new_id()
    await write_story(manager, sid)
    await hybrid.flush_dirty()
    with FakeProvider(reply) as provider:
        settings = make_settings(summary_method="llm", summary_llm_url=provider.url)
        summary = await SummaryService(hybrid, settings).build(sid)

    assert summary is not None and summary.method == "offline"
    assert "trabalhista" in summary.tags
