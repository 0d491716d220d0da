"""Replica heartbeats and the operations overview.

Every API replica publishes a heartbeat every OPS_HEARTBEAT_SECONDS: its in-process figures
(`backend/core/replica_stats.py`) as JSON under its own key with a TTL of three intervals, and
its id in an index (a sorted set scored by expiry, so a replica that died without saying so
drops out of the index too). The overview reads every live heartbeat in one MGET and adds what
is shared: the dirty backlog, refused snapshots, the Celery queue and workers, Redis memory.

Each source is read on its own: one that cannot be read (Redis down, broker down, no answer
within the timeout) leaves its figures null instead of failing the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery

from backend.core.config import Settings
from backend.core.errors import StoreUnavailable
from backend.core.redis import RedisService
from backend.core.replica_stats import ReplicaStats, p99, replica_stats
from backend.durability.service import HybridConversationService
from backend.ops.keys import OpsKeys
from backend.ops.schemas import OpsOverview, ReplicaFigures
from workers.inspect import BROKER_ERRORS, ping_workers, queue_depth

log = logging.getLogger(__name__)

# A heartbeat outlives this many missed intervals before its replica leaves the page.
_MISSED_BEATS = 3
# The broker is asked from a thread; the page waits this long for its answer.
_BROKER_TIMEOUT_SECONDS = 3.0
_PING_SECONDS = 1.0


class ReplicaHeartbeat:
    """Publishes this replica's figures every `interval` seconds until closed."""

    def __init__(
        self,
        redis: RedisService,
        keys: OpsKeys,
        replica_id: str,
        interval: float,
        stats: ReplicaStats = replica_stats,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.replica_id = replica_id
        self.interval = interval
        self.stats = stats
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def ttl(self) -> float:
        return self.interval * _MISSED_BEATS

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"ops-heartbeat-{self.replica_id}")

    async def publish(self) -> None:
        now = time.time()
        body = json.dumps({"replica_id": self.replica_id, "at": now, **self.stats.snapshot()})
        await self.redis.set_indexed(
            self.keys.replica(self.replica_id),
            body,
            max(1, int(self.ttl * 1000)),
            self.keys.replicas(),
            self.replica_id,
            now + self.ttl,
        )

    async def close(self) -> None:
        """Stop publishing and leave the page at once (not after the TTL)."""
        if self._task is not None:
            # Stopped by an event, not only by cancel: a cancel that lands inside a Redis call
            # can be swallowed there, and the loop would go on beating.
            self._stop.set()
            done, _ = await asyncio.wait({self._task}, timeout=_BROKER_TIMEOUT_SECONDS)
            if not done:
                self._task.cancel()
            self._task = None
        try:
            # Bounded: a replica shutting down while Redis is unreachable must not wait on it
            # (the heartbeat expires by itself).
            await asyncio.wait_for(self._withdraw(), _BROKER_TIMEOUT_SECONDS)
        except (StoreUnavailable, TimeoutError):
            log.info("replica %s: heartbeat left to expire", self.replica_id)

    async def _withdraw(self) -> None:
        await self.redis.unset_indexed(
            self.keys.replica(self.replica_id), self.keys.replicas(), self.replica_id
        )

    async def _loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                await self.publish()
                failing = False
            except StoreUnavailable as exc:
                if not failing:  # once per outage, not every interval
                    log.warning("replica %s: heartbeat not published (%s)", self.replica_id, exc)
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)


@dataclass
class _Broker:
    depth: int | None = None
    workers: list[str] | None = None


def _ask_broker(celery: Celery, queue: str) -> _Broker:
    depth = queue_depth(celery, queue)
    if depth is None:
        return _Broker()
    try:
        return _Broker(depth, ping_workers(celery, timeout=_PING_SECONDS))
    except BROKER_ERRORS:
        return _Broker(depth)


class OpsService:
    def __init__(
        self,
        redis: RedisService,
        hybrid: HybridConversationService,
        celery: Celery,
        settings: Settings,
    ) -> None:
        self.redis = redis
        self.hybrid = hybrid
        self.celery = celery
        self.settings = settings
        self.keys = OpsKeys(settings.key_prefix)

    async def overview(self, own: ReplicaHeartbeat | None = None) -> OpsOverview:
        """Every live replica's figures and the shared backlogs (`own`: published first, so
        this replica's figures are current)."""
        if own is not None:
            with contextlib.suppress(StoreUnavailable):
                await own.publish()
        beats, backlog, refused, broker, memory = await asyncio.gather(
            self._heartbeats(),
            self._optional(self.hybrid.manager.dirty_backlog()),
            self._optional(self.hybrid.refused.count()),
            self._broker(),
            self._optional(self.redis.memory()),
        )
        now = time.time()
        replicas = [_figures(beat, now) for beat in beats]
        samples = [s for beat in beats for s in beat.get("first_event_seconds", [])]
        dirty, oldest = backlog if backlog is not None else (None, None)
        used, maxmemory = memory if memory is not None else (None, None)
        return OpsOverview(
            generated_at=now,
            heartbeat_seconds=self.settings.ops_heartbeat_seconds,
            replicas=replicas,
            streams_open=sum(r.streams_open for r in replicas),
            replies_started=sum(r.replies_started for r in replicas),
            replies_completed=sum(r.replies_completed for r in replicas),
            replies_failed=sum(r.replies_failed for r in replicas),
            first_event_p99_seconds=p99(samples),
            dirty_sessions=dirty,
            dirty_oldest_age_seconds=None if oldest is None else round(oldest, 3),
            refused_sessions=refused,
            queue=self.settings.celery_queue,
            queue_depth=broker.depth,
            workers=broker.workers,
            redis_used_memory_bytes=used,
            redis_maxmemory_bytes=maxmemory,
        )

    async def _heartbeats(self) -> list[dict[str, Any]]:
        try:
            raw = await self.redis.live_indexed(self.keys.replicas(), self.keys.replica)
        except StoreUnavailable:
            return []
        beats = []
        for value in raw:
            with contextlib.suppress(ValueError, TypeError):
                beat = json.loads(value)
                if isinstance(beat, dict):
                    beats.append(beat)
        return beats

    async def _broker(self) -> _Broker:
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(_ask_broker, self.celery, self.settings.celery_queue),
                _BROKER_TIMEOUT_SECONDS,
            )
        except TimeoutError:
            return _Broker()

    @staticmethod
    async def _optional(read: Any) -> Any:
        try:
            return await read
        except StoreUnavailable:
            return None


def _figures(beat: dict[str, Any], now: float) -> ReplicaFigures:
    samples = [float(s) for s in beat.get("first_event_seconds", [])]
    return ReplicaFigures(
        replica_id=str(beat.get("replica_id", "?")),
        seen_seconds_ago=round(max(0.0, now - float(beat.get("at", now))), 3),
        streams_open=int(beat.get("streams_open", 0)),
        replies_started=int(beat.get("replies_started", 0)),
        replies_completed=int(beat.get("replies_completed", 0)),
        replies_failed=int(beat.get("replies_failed", 0)),
        first_event_p99_seconds=p99(samples),
    )
