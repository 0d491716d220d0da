"""The ASGI app. `create_app()` builds it; the lifespan owns every client."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend.agents.router import router as agents_router
from backend.agents.runtime import ConversationRuntime
from backend.conversations.router import router as conversations_router
from backend.core.config import Settings, get_settings
from backend.core.errors import register_error_handlers
from backend.core.http import install_http_plumbing
from backend.core.logging import configure_logging
from backend.core.redis import RedisService
from backend.health.router import router as health_router
from backend.state.service import ConversationStateManager
from backend.triage.router import router as triage_router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        redis = RedisService.from_settings(settings)
        app.state.settings = settings
        app.state.redis = redis
        app.state.state_manager = ConversationStateManager(redis, settings)
        runtime = ConversationRuntime.start(app, settings, redis, app.state.state_manager)
        if settings.gc_freeze:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await runtime.stop(settings.shutdown_grace_seconds)
            await redis.close()

    app = FastAPI(
        title="Triagem inteligente: conversation state service",
        version="0.1.0",
        lifespan=lifespan,
    )
    register_error_handlers(app)
    install_http_plumbing(app, settings.max_body_bytes)
    app.include_router(health_router)
    app.include_router(conversations_router)
    app.include_router(agents_router)
    app.include_router(triage_router)
    return app


def __getattr__(name: str) -> FastAPI:
    # `backend.main:app` for uvicorn, built lazily so importing this module reads no settings.
    if name == "app":
        return create_app()
    raise AttributeError(name)
