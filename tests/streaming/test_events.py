from __future__ import annotations

import pytest

from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.state.schemas import ConversationState, Event
from backend.state.service import ConversationStateManager
from backend.streaming.events import InvalidLastEventId, check_resume, parse_stream_id


@pytest.mark.parametrize(
    "value", ["", "abc", "1-", "-1", "1-2-3", "1.5-0", "18446744073709551616-0", "0-" + "9" * 21]
)
def test_garbage_last_event_ids_are_refused(value: str) -> None:
    with pytest.raises(InvalidLastEventId) as caught:
        parse_stream_id(value)
    assert caught.value.status_code == 400


def test_valid_ids_compare_numerically() -> None:
    assert parse_stream_id(" 10-0 ") > parse_stream_id("9-99")
    assert parse_stream_id("18446744073709551615-18446744073709551615")
    assert parse_stream_id("0-0") == (0, 0)


async def _session(manager: ConversationStateManager, events: int) -> list[str]:
    state = ConversationState(session_id="s1", user_id="u", tenant_id="t")
    await manager.save_conversation_state(state, event=Event(type="session.created"))
    ids = []
    for i in range(events):
        entry_id = await manager.append_event("s1", Event(type="message.delta", data={"i": i}))
        assert entry_id is not None
        ids.append(entry_id)
    return ids


async def test_resume_inside_the_stream(manager: ConversationStateManager) -> None:
    ids = await _session(manager, 5)
    key = manager.keys.events("s1")
    client = manager.redis.client
    assert (await check_resume(client, key, None)).after == ids[-1]
    point = await check_resume(client, key, ids[2])
    assert (point.after, point.reload) == (ids[2], False)
    assert not (await check_resume(client, key, "0-0")).reload  # nothing trimmed: replay all


async def test_ids_from_outside_the_stream_ask_for_a_reload(
    manager: ConversationStateManager,
) -> None:
    ids = await _session(manager, 3)
    key, client = manager.keys.events("s1"), manager.redis.client
    ms, _ = parse_stream_id(ids[-1])
    # Beyond the newest id: the stream lost what the client saw (Redis lost its last second).
    future = await check_resume(client, key, f"{ms + 1000}-0")
    assert (future.reload, future.reason, future.after) == (True, "stream_lost", ids[-1])
    first_ms, _ = parse_stream_id((await manager.read_events("s1", count=1))[0].id)
    foreign = await check_resume(client, key, f"{first_ms - 1}-0")
    assert (foreign.reload, foreign.reason, foreign.after) == (True, "unknown_id", ids[-1])


async def test_trimmed_stream_asks_for_a_reload(
    settings: Settings, redis_service: RedisService
) -> None:
    manager = ConversationStateManager(
        redis_service, settings.model_copy(update={"stream_maxlen": 10})
    )
    ids = await _session(manager, 400)  # approximate MAXLEN trims whole nodes of 100
    retained = await manager.read_events("s1", count=10_000)
    assert len(retained) < 401
    key, client = manager.keys.events("s1"), manager.redis.client
    point = await check_resume(client, key, "0-0")
    assert (point.reload, point.reason, point.after) == (True, "trimmed", retained[-1].id)
    kept = await check_resume(client, key, retained[0].id)
    assert not kept.reload
    assert ids[1] < retained[0].id  # trimmed away
    assert (await check_resume(client, key, ids[1])).reload


async def test_lost_stream_of_a_live_session(manager: ConversationStateManager) -> None:
    ids = await _session(manager, 2)
    await manager.redis.client.delete(manager.keys.events("s1"))
    key, client = manager.keys.events("s1"), manager.redis.client
    lost = await check_resume(client, key, ids[-1])
    assert (lost.reload, lost.reason, lost.after) == (True, "stream_lost", "0-0")
    fresh = await check_resume(client, key, None)
    assert (fresh.reload, fresh.after) == (False, "0-0")
