"""Dependency aliases for routes (and the session id path parameter). Clients live on
`app.state`, put there by the lifespan (`backend.wiring.build_services`).

The providers are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread
pool, a thread hop per dependency per request for what is an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.conversations.schemas import SESSION_ID_PATTERN
from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.durability.service import HybridConversationService
from backend.state.service import ConversationStateManager
from backend.stats.service import StatsService
from backend.summaries.service import SummaryService
from backend.wiring import ConversationRuntime


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _redis(request: Request) -> RedisService:
    return request.app.state.redis


async def _state_manager(request: Request) -> ConversationStateManager:
    return request.app.state.state_manager


async def _runtime(request: Request) -> ConversationRuntime:
    return request.app.state.runtime


SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[RedisService, Depends(_redis)]
StateManagerDep = Annotated[ConversationStateManager, Depends(_state_manager)]


def _engine(request: Request) -> AsyncEngine:
    return request.app.state.engine


def _hybrid(request: Request) -> HybridConversationService:
    return request.app.state.hybrid


def _summaries(request: Request) -> SummaryService:
    return request.app.state.summaries


def _stats(request: Request) -> StatsService:
    return request.app.state.stats


def _celery(request: Request) -> Celery:
    return request.app.state.celery


EngineDep = Annotated[AsyncEngine, Depends(_engine)]
HybridDep = Annotated[HybridConversationService, Depends(_hybrid)]
SummariesDep = Annotated[SummaryService, Depends(_summaries)]
StatsDep = Annotated[StatsService, Depends(_stats)]
CeleryDep = Annotated[Celery, Depends(_celery)]
RuntimeDep = Annotated[ConversationRuntime, Depends(_runtime)]

SessionId = Annotated[
    str, Path(pattern=SESSION_ID_PATTERN, description="The session id (letters, digits, _ -).")
]
