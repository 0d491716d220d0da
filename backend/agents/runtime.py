"""The conversation runtime of one replica: built and torn down by the app's lifespan.

It owns the shared stream tailer (with its own Redis client: blocking reads must not tie up the
request pool, they need a socket timeout longer than the block, and they must not reconnect
behind the tailer's back), the reply runner and its generator, and the two services routes
use. Nothing in it holds conversation state.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from fastapi import FastAPI

from backend.agents.runner import ReplyRunner
from backend.conversations.ratelimit import MessageRateLimiter
from backend.conversations.service import IntelligentInterviewerService
from backend.core.config import Settings
from backend.core.redis import RedisService, create_redis_client
from backend.interviewer.base import ReplyGenerator
from backend.interviewer.factory import create_generator
from backend.state.service import ConversationStateManager
from backend.streaming.hub import StreamHub
from backend.streaming.keys import StreamKeys
from backend.streaming.lease import SessionLease
from backend.triage.service import IntelligentTriageOrchestrator

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
        hub_redis = RedisService(create_redis_client(hub_settings))
        hub = StreamHub(
            hub_redis.client,
            manager.keys,
            StreamKeys(manager.keys.prefix),
            replica_id=replica_id,
            cluster=settings.redis_cluster,
            block_ms=settings.stream_block_ms,
            keys_per_reader=settings.stream_keys_per_reader,
            check_seconds=settings.stream_check_seconds,
            max_backlog=settings.sse_max_backlog,
        )
        generator = create_generator(settings)
        lease = SessionLease(redis, manager.keys, settings.generation_lease_ms, replica_id)
        runner = ReplyRunner(manager, lease, generator, settings)
        interviewer = IntelligentInterviewerService(
            manager, runner, MessageRateLimiter(redis, settings), settings
        )
        orchestrator = IntelligentTriageOrchestrator(manager, interviewer)
        runner.assessor = orchestrator
        hub.on_owing = runner.recheck
        hub.start()
        runner.start()
        runtime = cls(replica_id, hub_redis, hub, generator, runner, interviewer, orchestrator)
        app.state.runtime = runtime
        log.info("conversation runtime up (replica %s, generator %s)", replica_id, generator.name)
        return runtime

    async def stop(self, grace: float) -> None:
        """Let running replies finish (up to `grace` s), then close streams and clients."""
        if self.hub.closed:
            return
        await self.runner.shutdown(grace)
        await self.hub.close()
        aclose = getattr(self.generator, "aclose", None)
        if aclose is not None:
            await aclose()
        await self.hub_redis.close()
