"""Rate limits kept in Redis so every replica shares them: posting messages and opening
sessions (per user), minting development tokens (per client address).

A fixed window (INCR + PEXPIRE in one Lua script) rather than a sliding log: one key and one
round trip per hit, and the worst case (twice the limit across a window boundary) is fine for
abuse protection. Each key carries its own hash tag, so it runs unchanged on a cluster.
"""

from __future__ import annotations

import math
from importlib.resources import files

from backend.conversations.keys import ConversationKeys
from backend.core import metrics
from backend.core.config import Settings
from backend.core.errors import TriageError
from backend.core.redis import RedisService, translate_errors
from backend.state.service import RateLimit


class RateLimited(TriageError):
    status_code = 429
    code = "rate_limited"


class FixedWindowLimiter:
    """At most `limit` hits per key in each window of `window_seconds`."""

    def __init__(
        self, redis: RedisService, limit: int, window_seconds: int, what: str, label: str
    ) -> None:
        self.limit = limit
        self.label = label  # the `limit` label of triage_rate_limited_total
        self.window_ms = window_seconds * 1000
        self.what = what  # "messages", "new sessions", ...: for the error message
        script = files("backend.conversations").joinpath("lua", "rate_limit.lua").read_text()
        self._script = redis.client.register_script(script)

    async def hit(self, key: str) -> None:
        """Count one hit on `key`; raise `RateLimited` (429 + Retry-After) past the limit."""
        with translate_errors():
            hits, ttl_ms = await self._script(keys=[key], args=[self.window_ms, self.limit])
        if int(hits) > self.limit:
            raise self.refused(int(ttl_ms))

    def counter(self, key: str) -> RateLimit:
        """The same count, made by a state write's own script (`StateStore` `limits`)."""
        return RateLimit(key, self.limit, self.window_ms)

    def refused(self, ttl_ms: int) -> RateLimited:
        """The 429 of a hit past the limit, `ttl_ms` before the window resets (counted)."""
        retry_after = max(1, math.ceil(ttl_ms / 1000))
        metrics.rate_limited(self.label)
        return RateLimited(
            f"too many {self.what}: at most {self.limit} per "
            f"{self.window_ms // 1000} s; retry in {retry_after} s",
            limit=self.limit,
            window_seconds=self.window_ms // 1000,
            retry_after=retry_after,
        )


class MessageRateLimiter:
    """The per-user limits of the conversation API: messages posted, sessions opened."""

    def __init__(self, redis: RedisService, settings: Settings) -> None:
        self.keys = ConversationKeys(settings.key_prefix)
        self.messages = FixedWindowLimiter(
            redis,
            settings.rate_limit_messages,
            settings.rate_limit_window_seconds,
            "messages",
            "messages",
        )
        self.sessions = FixedWindowLimiter(
            redis,
            settings.rate_limit_sessions,
            settings.rate_limit_sessions_window_seconds,
            "new sessions",
            "sessions",
        )

    async def hit(self, tenant_id: str, user_id: str) -> None:
        """Count one posted message; raise `RateLimited` (429) past the limit."""
        await self.messages.hit(self.keys.message_rate(tenant_id, user_id))

    def counters(
        self, tenant_id: str, user_id: str, *, session: bool = False
    ) -> tuple[tuple[RateLimit, ...], tuple[FixedWindowLimiter, ...]]:
        """The counters a write counts itself (an opened session first, then the message),
        with the limiter of each, to turn an `OverLimit` into its 429."""
        limiters = (self.sessions, self.messages) if session else (self.messages,)
        keys: tuple[str, ...] = (self.keys.message_rate(tenant_id, user_id),)
        if session:
            keys = (self.keys.session_rate(tenant_id, user_id), *keys)
        return (
            tuple(lim.counter(key) for lim, key in zip(limiters, keys, strict=True)),
            limiters,
        )

    async def open_session(self, tenant_id: str, user_id: str) -> None:
        """Count one opened session; raise `RateLimited` (429) past the limit."""
        await self.sessions.hit(self.keys.session_rate(tenant_id, user_id))
