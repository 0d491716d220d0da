"""The triage API and the orchestrator: from interview to a validated triage result."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.generators.base import TriageResult
from backend.state.schemas import ConversationState
from backend.state.service import ConversationStateManager
from backend.wiring import ConversationRuntime
from tests.sse_helpers import GUARD, bearer

ANSWERS = [
    "Fui demitido sem justa causa e a empresa não pagou as verbas rescisórias nem o FGTS.",
    "Foi há duas semanas, no dia 3.",
    "A empresa é a Metalúrgica Silva Ltda, onde trabalhei quatro anos com carteira assinada.",
    "Não tenho audiência nem prazo marcado.",
    "Tenho a carteira de trabalho, os holerites e o termo de rescisão.",
    "Quero receber o que me devem.",
]


async def settled(api: httpx.AsyncClient, sid: str) -> dict:
    deadline = asyncio.get_running_loop().time() + GUARD
    while True:
        status = (await api.get(f"/api/triage/{sid}", headers=bearer())).json()
        if not status["reply_pending"]:
            return status
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.05)


async def test_start_without_a_message(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/triage", headers=bearer())
    assert response.status_code == 201
    body = response.json()
    assert body["stage"] == "interviewing" and body["message"] is None
    assert body["version"] == 0 and body["triage_result"] is None and body["analysis"] is None
    sid = body["session_id"]
    assert body["events_url"] == f"/api/conversations/sessions/{sid}/events"
    status = (await api.get(f"/api/triage/{sid}", headers=bearer())).json()
    assert status["stage"] == "interviewing" and status["message_count"] == 0
    info = (await api.get(f"/api/conversations/sessions/{sid}/info", headers=bearer())).json()
    assert info["kind"] == "triage"


async def test_interview_until_triaged(
    api: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    started = await api.post("/api/triage", json={"message": ANSWERS[0]}, headers=bearer())
    assert started.status_code == 201
    body = started.json()
    sid = body["session_id"]
    assert body["message"]["message"]["content"] == ANSWERS[0]
    assert body["events_url"].endswith(f"last_event_id={body['message']['event_id']}")
    status = await settled(api, sid)
    assert status["analysis"]["area"] is not None
    for answer in ANSWERS[1:]:
        if status["stage"] == "triaged":
            break
        posted = await api.post(
            f"/api/triage/{sid}/messages", json={"message": answer}, headers=bearer()
        )
        assert posted.status_code == 202
        status = await settled(api, sid)
    assert status["stage"] == "triaged"
    result = TriageResult.model_validate(status["triage_result"])
    assert result.area and result.summary and result.recommended_next_step
    assert result.urgency_reason and 0 <= result.confidence <= 1
    assert status["version"] >= 1
    # The result reached the event stream too, and matches what is stored.
    updates = [e for e in await manager.read_events(sid) if e.type == "triage.updated"]
    assert updates[-1].data["stage"] == "triaged"
    assert updates[-1].data["triage_result"] == status["triage_result"]
    orchestration = await manager.get_orchestration_state(sid)
    assert orchestration is not None and orchestration.triage_result == status["triage_result"]


async def test_assess_writes_only_when_something_changed(
    settings: Settings, redis_service: RedisService, manager: ConversationStateManager
) -> None:
    runtime = ConversationRuntime.start(FastAPI(), settings, redis_service, manager)
    try:
        state = ConversationState(session_id="s1", user_id="alice", tenant_id="acme")
        state.append_message("user", ANSWERS[0], max_history=100)
        await manager.save_conversation_state(state)
        first = await runtime.orchestrator.assess("s1", state)
        second = await runtime.orchestrator.assess("s1", state)
        assert first == second
        orchestration = await manager.get_orchestration_state("s1")
        assert orchestration is not None and orchestration.version == 1
        updates = [e for e in await manager.read_events("s1") if e.type == "triage.updated"]
        assert len(updates) == 1
    finally:
        await runtime.stop(1)


TRIAGED_ANSWERS = [
    "Fui demitido sem justa causa ontem e a empresa Alfa não pagou as verbas rescisórias.",
    "Não tenho audiência nem prazo.",
    "Tenho a carteira de trabalho e os holerites.",
]


async def _post(api: httpx.AsyncClient, sid: str, message: str) -> dict:
    posted = await api.post(
        f"/api/triage/{sid}/messages", json={"message": message}, headers=bearer()
    )
    assert posted.status_code == 202, posted.text
    return await settled(api, sid)


async def _last_reply(api: httpx.AsyncClient, sid: str) -> str:
    history = await api.get(f"/api/conversations/sessions/{sid}", headers=bearer())
    return str(history.json()["messages"][-1]["content"])


async def test_a_hearing_after_the_triage_reissues_it_with_the_next_version(
    api: httpx.AsyncClient, manager: ConversationStateManager
) -> None:
    started = await api.post("/api/triage", json={"message": TRIAGED_ANSWERS[0]}, headers=bearer())
    sid = started.json()["session_id"]
    status = await settled(api, sid)
    for answer in TRIAGED_ANSWERS[1:]:
        status = await _post(api, sid, answer)
    assert status["stage"] == "triaged"
    first = status["triage_result"]
    assert first["version"] == 1 and first["urgency"] != "urgente"
    assert first["missing_information"] == [] and first["confidence"] > 0.8

    # A question after the triage gets an answer and leaves the result as it was.
    status = await _post(api, sid, "Quanto tempo vai demorar?")
    assert "um advogado deve falar com você" in await _last_reply(api, sid)
    assert status["triage_result"] == first
    analysis_version = status["version"]

    status = await _post(api, sid, "Acabei de receber uma intimação: a audiência é amanhã!")
    result = TriageResult.model_validate(status["triage_result"])
    assert result.version == 2
    assert result.urgency == "urgente"
    assert result.recommended_next_step.startswith("Encaminhar imediatamente")
    assert status["version"] > analysis_version
    assert "Atualizei a triagem do seu caso" in await _last_reply(api, sid)
    # The event stream carries the re-issued result, as stored.
    updates = [e for e in await manager.read_events(sid) if e.type == "triage.updated"]
    assert updates[-1].data["triage_result"] == status["triage_result"]
    versions = [(e.data["triage_result"] or {}).get("version") for e in updates]
    assert versions.index(2) > versions.index(1)
