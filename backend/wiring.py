"""The one place that builds the services and joins them: used by the app, the workers and
the CLI (`build_services`, `open_services`).

Every process gets the same graph: one Redis pool, the state manager on it, the PostgreSQL
engine and the hybrid (warm/cold) service plugged into the manager, summaries and stats.
An API replica also gets its conversation runtime (`ConversationRuntime`): the shared stream
tailer (with its own Redis client: blocking reads must not tie up the request pool, they need
a socket timeout longer than the block, and they must not reconnect behind the tailer's back),
the reply runner and its generator, and the services routes use. Nothing here holds
conversation state.

The joins are made at construction, in dependency order: the runner gets the case assessor,
the interviewer the runner, the orchestrator the interviewer, the hub the runner's recheck.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.conversations.ratelimit import MessageRateLimiter
from backend.conversations.service import IntelligentInterviewerService
from backend.core.config import Settings
from backend.core.db import create_engine
from backend.core.loop_monitor import LoopMonitor
from backend.core.redis import RedisService, create_redis_client
from backend.durability.service import HybridConversationService
from backend.generators.base import ReplyGenerator
from backend.generators.factory import create_generator
from backend.ops.keys import OpsKeys
from backend.ops.service import ReplicaHeartbeat
from backend.replies.runner import ReplyRunner
from backend.state.service import ConversationStateManager
from backend.stats.service import StatsService
from backend.streaming.hub import StreamHub
from backend.streaming.lease import SessionLease
from backend.summaries.service import SummaryService
from backend.triage.factory import create_analyzer
from backend.triage.service import CaseAssessor, IntelligentTriageOrchestrator

log = logging.getLogger(__name__)


@dataclass
class ConversationRuntime:
    replica_id: str
    hub_redis: RedisService
    hub: StreamHub
    generator: ReplyGenerator
    runner: ReplyRunner
    interviewer: IntelligentInterviewerService
    orchestrator: IntelligentTriageOrchestrator
    heartbeat: ReplicaHeartbeat
    loop_monitor: LoopMonitor

    @classmethod
    def start(
        cls,
        app: FastAPI,
        settings: Settings,
        redis: RedisService,
        manager: ConversationStateManager,
    ) -> ConversationRuntime:
        replica_id = uuid.uuid4().hex[:12]
        block_s = settings.stream_block_ms / 1000
        hub_settings = settings.model_copy(
            update={
                "redis_socket_timeout": settings.redis_socket_timeout + block_s,
                # No silent reconnect: a reader must see a dropped connection (Redis may have
                # restarted and lost entries) to check its streams before reading on.
                "redis_retries": 0,
            }
        )
        generator = create_generator(settings)
        lease = SessionLease(redis, manager.keys, settings.generation_lease_ms, replica_id)
        assessor = CaseAssessor(manager, create_analyzer(settings))
        runner = ReplyRunner(manager, lease, generator, settings, assessor)
        interviewer = IntelligentInterviewerService(
            manager, runner, MessageRateLimiter(redis, settings), settings
        )
        orchestrator = IntelligentTriageOrchestrator(manager, interviewer, assessor)
        hub_redis = RedisService(create_redis_client(hub_settings))
        hub = StreamHub(
            hub_redis.client,
            manager.keys,
            cluster=settings.redis_cluster,
            partitions=settings.stream_partitions,
            block_ms=settings.stream_block_ms,
            check_seconds=settings.stream_check_seconds,
            sweep_seconds=settings.stream_sweep_seconds,
            max_backlog=settings.sse_max_backlog,
            on_owing=runner.recheck,
        )
        heartbeat = ReplicaHeartbeat(
            redis, OpsKeys(settings.key_prefix), replica_id, settings.ops_heartbeat_seconds
        )
        loop_monitor = LoopMonitor()
        hub.start()
        runner.start()
        heartbeat.start()
        loop_monitor.start()
        runtime = cls(
            replica_id,
            hub_redis,
            hub,
            generator,
            runner,
            interviewer,
            orchestrator,
            heartbeat,
            loop_monitor,
        )
        app.state.runtime = runtime
        log.info("conversation runtime up (replica %s, generator %s)", replica_id, generator.name)
        return runtime

    # The chat route takes these from the runtime: one dependency instead of three, on the
    # path every chat message takes (FastAPI solves each dependency per request).
    @property
    def manager(self) -> ConversationStateManager:
        return self.interviewer.manager

    @property
    def settings(self) -> Settings:
        return self.interviewer.settings

    async def stop(self, grace: float) -> None:
        """Let running replies finish (up to `grace` s), then close streams and clients."""
        if self.hub.closed:
            return
        await self.heartbeat.close()
        await self.loop_monitor.close()
        await self.runner.shutdown(grace)
        await self.hub.close()
        aclose = getattr(self.generator, "aclose", None)
        if aclose is not None:
            await aclose()
        await self.orchestrator.assessor.analyzer.aclose()
        await self.hub_redis.close()


@dataclass
class Services:
    settings: Settings
    redis: RedisService
    manager: ConversationStateManager
    engine: AsyncEngine
    hybrid: HybridConversationService
    summaries: SummaryService
    stats: StatsService
    runtime: ConversationRuntime | None = None

    def going_away(self) -> None:
        """The process got its stop signal: end this replica's streams now (see
        `backend.streaming.shutdown`); replies in flight go on until `close`."""
        if self.runtime is not None:
            self.runtime.hub.going_away()

    async def close(self, grace: float = 0) -> None:
        """Stop the runtime (replies in flight get `grace` s), then close the clients."""
        try:
            if self.runtime is not None:
                # Replies in flight finish (or are closed) before the clients they write through.
                await self.runtime.stop(grace)
        finally:
            await self.engine.dispose()
            await self.redis.close()


def build_services(
    settings: Settings,
    *,
    app: FastAPI | None = None,
    tiers: bool = True,
    pool_size: int | None = None,
    max_overflow: int | None = None,
) -> Services:
    """Build the services of one process (nothing connects until first used).

    `app`: an API replica; its conversation runtime is started (needs a running loop) and the
    services are put on `app.state` for the dependency aliases (backend/api/deps.py).
    `tiers=False`: the manager reads and writes Redis only (no read-through to PostgreSQL, no
    snapshot before delete), for ops commands that must see just what Redis holds.
    """
    redis = RedisService.from_settings(settings)
    manager = ConversationStateManager(redis, settings)
    engine_options = {
        name: value
        for name, value in (("pool_size", pool_size), ("max_overflow", max_overflow))
        if value is not None
    }
    engine = create_engine(settings, **engine_options)
    hybrid = HybridConversationService(manager, engine, settings)
    if tiers:
        # Warm/cold tiers: read-through and before-delete plugged into the manager, so every
        # caller reading through the manager gets them.
        hybrid.install()
    services = Services(
        settings=settings,
        redis=redis,
        manager=manager,
        engine=engine,
        hybrid=hybrid,
        summaries=SummaryService(hybrid, settings),
        stats=StatsService(engine, redis, settings),
    )
    if app is not None:
        app.state.settings = settings
        app.state.redis = redis
        app.state.state_manager = manager
        app.state.engine = engine
        app.state.hybrid = hybrid
        app.state.summaries = services.summaries
        app.state.stats = services.stats
        services.runtime = ConversationRuntime.start(app, settings, redis, manager)
    return services


@asynccontextmanager
async def open_services(
    settings: Settings, *, tiers: bool = True, pool_size: int = 2
) -> AsyncIterator[Services]:
    """`build_services` for one command (small pools), closed on exit."""
    services = build_services(settings, tiers=tiers, pool_size=pool_size)
    try:
        yield services
    finally:
        await services.close()
