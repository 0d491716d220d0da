"""Dependency aliases for routes. Clients live on `app.state`, created by the lifespan.

The providers are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread
pool, a thread hop per dependency per request for what is an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.agents.runtime import ConversationRuntime
from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.state.service import ConversationStateManager


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
RuntimeDep = Annotated[ConversationRuntime, Depends(_runtime)]
