"""End to end through the triage API with REPLY_GENERATOR=openai pointed at the local fake
provider: the model analyses the case (structured outputs) and writes the reply (stream)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.state.service import ConversationStateManager
from tests.conftest import client_for, make_settings
from tests.generators.fake_llm import REPLY_PIECES, TRIAGE_ANSWER, VALID_KEY, FakeLLMServer
from tests.sse_helpers import bearer
from tests.triage.test_llm_analyzer import URGENT
from tests.triage.test_router import settled


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    try:
        yield server
    finally:
        server.stop()


def openai_settings(settings: Settings, server: FakeLLMServer, scenario: str) -> Settings:
    return make_settings(
        key_prefix=settings.key_prefix,
        reply_generator="openai",
        llm_base_url=server.base_url(scenario),
        llm_api_key=VALID_KEY,
        triage_llm_timeout_seconds=2,
    )


async def test_the_model_triages_the_case_and_its_reading_feeds_the_reply(
    llm_server: FakeLLMServer,
    settings: Settings,
    redis_service: RedisService,
    manager: ConversationStateManager,
) -> None:
    async for api in client_for(openai_settings(settings, llm_server, "e2e-ok")):
        started = await api.post("/api/triage", json={"message": URGENT}, headers=bearer())
        assert started.status_code == 201
        sid = started.json()["session_id"]
        status = await settled(api, sid)

    assert status["stage"] == "triaged"
    result = status["triage_result"]
    assert result["analyzer"] == "llm"
    assert (result["area"], result["urgency"]) == ("consumidor", "alta")
    assert result["summary"] == TRIAGE_ANSWER["summary"]
    assert status["analysis"]["area"] == "consumidor"
    state = await manager.get_conversation_state(sid)
    assert state is not None
    assert [m.content for m in state.messages] == [URGENT, "".join(REPLY_PIECES)]
    # One analysis call, then the reply; the reply's instructions carry the model's reading.
    requests = [r["json"] for r in llm_server.fake.requests if r["scenario"] == "e2e-ok"]
    assert ["response_format" in r for r in requests] == [True, False]
    assert requests[1]["stream"] is True
    assert "direito do consumidor" in requests[1]["messages"][0]["content"]


async def test_an_invalid_answer_leaves_the_offline_triage_and_the_reply_goes_on(
    llm_server: FakeLLMServer,
    settings: Settings,
    redis_service: RedisService,
    manager: ConversationStateManager,
) -> None:
    before = REGISTRY.get_sample_value("triage_llm_analysis_fallbacks_total") or 0.0
    async for api in client_for(openai_settings(settings, llm_server, "triage-invalid-json")):
        started = await api.post("/api/triage", json={"message": URGENT}, headers=bearer())
        sid = started.json()["session_id"]
        status = await settled(api, sid)
        metrics = (await api.get("/metrics")).text

    assert status["stage"] == "triaged"
    result = status["triage_result"]
    assert result["analyzer"] == "offline"
    assert (result["area"], result["urgency"]) == ("criminal", "urgente")
    assert REGISTRY.get_sample_value("triage_llm_analysis_fallbacks_total") == before + 1
    assert 'triage_llm_analysis_calls_total{outcome="invalid_json"}' in metrics
    state = await manager.get_conversation_state(sid)
    assert state is not None and [m.role for m in state.messages] == ["user", "assistant"]
