from __future__ import annotations

import pytest

from backend.conversations.keys import ConversationKeys
from backend.conversations.ratelimit import MessageRateLimiter, RateLimited
from backend.core.config import Settings
from backend.core.redis import RedisService


async def test_limit_per_user_with_retry_after(
    settings: Settings, redis_service: RedisService
) -> None:
    settings = settings.model_copy(
        update={"rate_limit_messages": 3, "rate_limit_window_seconds": 30}
    )
    limiter = MessageRateLimiter(redis_service, settings)
    for _ in range(3):
        await limiter.hit("t1", "alice")
    with pytest.raises(RateLimited) as caught:
        await limiter.hit("t1", "alice")
    assert caught.value.status_code == 429
    assert 1 <= caught.value.details["retry_after"] <= 30
    # Another user, or the same user id in another tenant, has their own budget.
    await limiter.hit("t1", "bob")
    await limiter.hit("t2", "alice")
    key = ConversationKeys(settings.key_prefix).message_rate("t1", "alice")
    assert 0 < await redis_service.client.pttl(key) <= 30_000
