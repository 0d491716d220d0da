"""Celery beat that schedules only while it holds a lock in the broker's Redis.

Why: one beat is a single point of failure (if it stops, nothing snapshots), and two plain
beats send every periodic task twice. With this scheduler any number of beats may run: the one
holding `{KEY_PREFIX}:beat:lock` schedules and renews the lock on every tick (at least every
third of BEAT_LOCK_SECONDS); the others check as often and take over when the lock expires
(its holder died) or is released (its holder stopped). The schedule's state (last run times)
stays in each beat's local file, as with Celery's default scheduler: a beat that takes over
may run an entry early, which is harmless since every task is idempotent.

Why not celery-redbeat: its tick crashes beat on a lost lock or a dropped connection
(sibson/redbeat#230, #285), it schedules without the lock after an error while acquiring it
(#208), and it keeps the schedule itself in Redis, rewritten on every run, which a full Redis
refuses. Here a Redis error never ends beat and never lets it schedule without the lock: it
stands by and tries again on the next tick. Renewal needs no memory (GET + PEXPIRE), so the
holder keeps its lock through a full Redis.
"""

from __future__ import annotations

import logging
import secrets
import socket
from importlib.resources import files
from pathlib import Path
from typing import Any

import redis
from celery.beat import PersistentScheduler

from backend.core.config import get_settings
from workers import keys
from workers.broker import BrokerRedis

log = logging.getLogger(__name__)


def _lua(name: str) -> str:
    return files("workers").joinpath("lua", name).read_text()


class LockedScheduler(PersistentScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = get_settings()
        self.lock_key = keys.beat_lock(settings.key_prefix)
        self.lock_ttl_ms = max(1, int(settings.beat_lock_seconds * 1000))
        self.check_every = settings.beat_lock_seconds / 3
        # The holder's name in the value tells an operator which beat schedules.
        self.token = f"{socket.gethostname()}:{secrets.token_hex(6)}"
        self.holding: bool | None = None  # None until the first tick: its outcome is logged
        timeout = min(5.0, self.check_every)
        # Behind Sentinel, the current master: after a failover the next tick finds the new
        # one (the lock, replicated or not, is taken again there).
        self.broker = BrokerRedis(settings, timeout)
        self.lock_redis = self.broker.client
        self._take = self.lock_redis.register_script(_lua("beat_lock.lua"))
        self._release = self.lock_redis.register_script(_lua("beat_unlock.lua"))
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._heartbeat()
        if not self._hold_lock():
            return self.check_every
        return min(super().tick(*args, **kwargs), self.check_every)

    def close(self) -> None:
        if self.holding:
            try:
                self._release(keys=[self.lock_key], args=[self.token])
                log.info("beat: released the scheduler lock %s", self.lock_key)
            except redis.RedisError as exc:  # it expires by itself
                log.warning("beat: could not release the scheduler lock: %s", exc)
            self.holding = False
        try:
            super().close()
        finally:
            self.broker.close()

    def _hold_lock(self) -> bool:
        try:
            held = bool(self._take(keys=[self.lock_key], args=[self.token, self.lock_ttl_ms]))
        except redis.RedisError as exc:
            if self.holding:
                log.warning("beat: cannot renew the scheduler lock (%s): standing by", exc)
            held = False
        if held != self.holding:
            log.info(
                "beat: %s (lock %s, token %s)",
                "holding the scheduler lock: scheduling" if held else "standing by",
                self.lock_key,
                self.token,
            )
        self.holding = held
        return held

    def _heartbeat(self) -> None:
        # The deployment's healthcheck watches this file: a standby beat is alive too.
        if self.schedule_filename:
            Path(f"{self.schedule_filename}.alive").touch()
