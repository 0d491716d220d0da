"""Two beats: only the holder of the Redis lock schedules; when it dies, the other takes over
and snapshots go on."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.config import Settings
from tests.faults.chat import Chat
from tests.faults.conftest import StartCelery
from tests.faults.servers import CeleryProcess, wait_until

SENT = "Sending due task flush-dirty-sessions"


def sent(beat: CeleryProcess) -> int:
    return beat.output().count(SENT)


def token(beat: CeleryProcess) -> str:
    found = re.search(
        r"holding the scheduler lock: scheduling \(lock \S+, token (\S+)\)", beat.output()
    )
    assert found, beat.output()[-2000:]
    return found.group(1)


async def test_two_beats_schedule_once_and_the_standby_takes_over(
    settings: Settings, start_celery: StartCelery, api: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    worker = start_celery("worker")
    beats = [start_celery("beat", beat_lock_seconds=2) for _ in range(2)]
    leader = wait_until(
        lambda: next((b for b in beats if sent(b) >= 6), None), 60, "a beat scheduling"
    )
    standby = next(b for b in beats if b is not leader)
    # Both run the same schedule, but only one sends it (each flush would otherwise go twice).
    assert sent(standby) == 0 and "standing by" in standby.output()
    health = (await api.get("/health/celery")).json()
    assert health["beat_scheduler"] == token(leader)

    chat = Chat(api, settings)
    for _ in range(2):
        await chat.start()
    leader.kill()  # SIGKILL: its lock is never released, it expires
    assert await chat.post_round() == [202] * 2
    # Only the standby can have scheduled the flushes that snapshot these messages.
    await chat.wait_for_postgres(engine, watch=[worker, standby])
    assert sent(standby) > 0
    health = (await api.get("/health/celery")).json()
    assert health["beat_scheduler"] == token(standby)
