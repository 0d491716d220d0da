"""Per-user rate limit on posting messages, kept in Redis so every replica shares it.

A fixed window (INCR + PEXPIRE in one Lua script) rather than a sliding log: one key and one
round trip per post, and the worst case (twice the limit across a window boundary) is fine for
abuse protection. The key carries the user's hash tag, so it runs unchanged on a cluster.
"""

from __future__ import annotations

import math
from importlib.resources import files

from backend.conversations.keys import ConversationKeys
from backend.core.config import Settings
from backend.core.errors import TriageError
from backend.core.redis import RedisService, translate_errors


class RateLimited(TriageError):
    status_code = 429
    code = "rate_limited"


class MessageRateLimiter:
    def __init__(self, redis: RedisService, settings: Settings) -> None:
        self.redis = redis
        self.keys = ConversationKeys(settings.key_prefix)
        self.limit = settings.rate_limit_messages
        self.window_ms = settings.rate_limit_window_seconds * 1000
        script = files("backend.conversations").joinpath("lua", "rate_limit.lua").read_text()
        self._script = redis.client.register_script(script)

    async def hit(self, tenant_id: str, user_id: str) -> None:
        """Count one posted message; raise `RateLimited` (429) past the limit."""
        keys = [self.keys.message_rate(tenant_id, user_id)]
        with translate_errors():
            hits, ttl_ms = await self._script(keys=keys, args=[self.window_ms])
        if int(hits) > self.limit:
            retry_after = max(1, math.ceil(int(ttl_ms) / 1000))
            raise RateLimited(
                f"too many messages: at most {self.limit} per "
                f"{self.window_ms // 1000} s; retry in {retry_after} s",
                limit=self.limit,
                window_seconds=self.window_ms // 1000,
                retry_after=retry_after,
            )
