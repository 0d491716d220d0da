"""The ASGI app. `create_app()` builds it; the lifespan owns every client."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from backend.conversations.chat import router as agents_router
from backend.conversations.router import router as conversations_router
from backend.conversations.ws import router as ws_router
from backend.core.config import Settings, get_settings
from backend.core.errors import register_error_handlers
from backend.core.http import install_http_plumbing
from backend.core.logging import configure_logging
from backend.core.metrics import install_metrics
from backend.core.openapi import install_openapi
from backend.core.tracing import configure_tracing, instrument_app
from backend.durability.router import health_router as durability_health_router
from backend.durability.router import router as durability_router
from backend.health.metrics import readers as metric_readers
from backend.health.router import router as health_router
from backend.ops.router import router as ops_router
from backend.stats.router import router as stats_router
from backend.streaming.shutdown import on_exit_signal
from backend.summaries.router import router as summaries_router
from backend.triage.router import router as triage_router
from backend.web.router import dev_router as web_dev_router
from backend.web.router import router as web_router
from backend.wiring import build_services
from workers.config import create_celery_app

# Young collections between two of the middle generation (Python's default: 10); the oldest
# keeps its default (a full collection once a quarter of the old objects are new).
_GC_MIDDLE_THRESHOLD = 20


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Here, not in the lifespan: uvicorn logs its start-up lines between the two, and they
    # should already be in LOG_FORMAT.
    configure_logging(settings.log_level, settings.log_format or "text")
    configure_tracing("triage-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings, app=app)
        undo_signals = on_exit_signal(services.going_away)
        app.state.celery = create_celery_app(settings)
        gc.set_threshold(settings.gc_young_threshold, _GC_MIDDLE_THRESHOLD)
        if settings.gc_freeze:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            undo_signals()
            app.state.celery.close()
            await services.close(settings.shutdown_grace_seconds)

    # /docs and /redoc load Swagger UI and ReDoc from files the app serves itself (shipped by
    # fastapi-offline), not from a CDN: they work on a machine without internet access.
    app = FastAPIOffline(
        title="Triagem inteligente: conversation state service",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks stay off: traces come from the contrib
        # instrumentation `instrument_app` installs when tracing is on, and the native check
        # (is a tracer or meter provider configured?) costs every request a few environment
        # look-ups: ~3% of a replica's CPU at 5,000 conversations (py-spy).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    register_error_handlers(app)
    install_http_plumbing(app, settings.max_body_bytes)
    install_openapi(app, settings)
    instrument_app(app)
    install_metrics(app, settings, metric_readers)  # after the others: the outermost middleware
    app.include_router(health_router)
    app.include_router(durability_health_router)
    app.include_router(durability_router)
    app.include_router(summaries_router)
    app.include_router(stats_router)
    app.include_router(conversations_router)
    app.include_router(ws_router)
    app.include_router(agents_router)
    app.include_router(triage_router)
    app.include_router(ops_router)
    app.include_router(web_router)
    if settings.environment == "development":
        app.include_router(web_dev_router)  # signs anyone in: never outside development
    return app


def __getattr__(name: str) -> FastAPI:
    # `backend.main:app` for uvicorn, built lazily so importing this module reads no settings.
    if name == "app":
        return create_app()
    raise AttributeError(name)
