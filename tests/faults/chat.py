"""A user chatting through the API during a fault, and the checks every fault test makes:
each acknowledged message is in the API exactly once and, after the flush, in PostgreSQL;
each is answered by exactly one stored reply; no session owes a reply that nothing will
generate (neither a lease nor a due-set entry)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.auth import create_token
from backend.core.config import Settings
from backend.core.redis import RedisService
from backend.state.owed import owes_reply
from backend.state.service import ConversationStateManager
from tests.faults.servers import CeleryProcess

# What the API may answer while a dependency is down: 202 (acknowledged) or a 503 to retry.
REFUSALS = {"store_unavailable", "database_unavailable"}


class Chat:
    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        token = create_token(settings, f"u-{uuid.uuid4().hex[:8]}", "fault-tests")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.acked: dict[str, list[str]] = {}
        self.refused = 0

    async def start(self) -> str:
        """A new triage session with a first message (both acknowledged: 201)."""
        first = f"primeira mensagem {uuid.uuid4().hex[:8]}"
        response = await self.client.post(
            "/api/triage", json={"message": first}, headers=self.headers
        )
        assert response.status_code == 201, response.text
        session_id = str(response.json()["session_id"])
        self.acked[session_id] = [first]
        return session_id

    async def post(self, session_id: str) -> int:
        """Post one message: 202 is an acknowledgement; a refusal must be a clear 503."""
        message = f"mensagem {uuid.uuid4().hex[:8]}"
        response = await self.client.post(
            f"/api/conversations/sessions/{session_id}/messages",
            json={"message": message},
            headers=self.headers,
        )
        if response.status_code == 202:
            self.acked[session_id].append(message)
        else:
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] in REFUSALS, response.text
            self.refused += 1
        return response.status_code

    async def post_round(self) -> list[int]:
        return [await self.post(sid) for sid in self.acked]

    async def assert_api_has_each_once(self) -> None:
        for session_id, messages in self.acked.items():
            response = await self.client.get(
                f"/api/conversations/sessions/{session_id}", headers=self.headers
            )
            assert response.status_code == 200, response.text
            users = [m["content"] for m in response.json()["messages"] if m["role"] == "user"]
            assert Counter(users) == Counter(messages), session_id

    async def postgres_counts(self, engine: AsyncEngine) -> dict[str, Counter[str]]:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT session_id, content FROM messages "
                    "WHERE role = 'user' AND session_id = ANY(:ids)"
                ),
                {"ids": list(self.acked)},
            )
            found: dict[str, Counter[str]] = {sid: Counter() for sid in self.acked}
            for session_id, content in result.all():
                found[session_id][content] += 1
        return found

    async def wait_for_postgres(
        self, engine: AsyncEngine, watch: Sequence[CeleryProcess] = (), guard: float = 45
    ) -> None:
        """Wait until the snapshots hold every acknowledged message, then check each is there
        exactly once; fail at once if a watched process ends. `guard` only stops a hang; it
        is not a measured limit."""
        expected = {sid: Counter(messages) for sid, messages in self.acked.items()}
        deadline = time.monotonic() + guard
        while True:
            for process in watch:
                assert process.alive(), f"{process.log.name} exited: {process.output()[-3000:]}"
            try:
                found = await self.postgres_counts(engine)
            except OSError:
                found = {}
            if all(found.get(sid, Counter()) >= want for sid, want in expected.items()):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL still misses messages after {guard}s: {found}")
            await asyncio.sleep(0.2)
        assert found == expected

    async def assert_none_stranded(self) -> None:
        """Straight from Redis (an API read would itself kick a stranded reply): every session
        that owes a reply has a generator (a lease) or a due-set entry the sweep will find."""
        redis = RedisService.from_settings(self.settings)
        try:
            manager = ConversationStateManager(redis, self.settings)
            for session_id in self.acked:
                state = await manager.get_conversation_state(session_id)
                if state is None or not owes_reply(state):
                    continue
                client = redis.client
                due = await client.zscore(manager.keys.replies_due(), session_id)
                leased = await client.exists(manager.keys.lease(session_id))
                assert due is not None or leased, f"{session_id} owes a reply nothing will make"
        finally:
            await redis.close()

    async def assert_answered_once(self, guard: float = 45) -> None:
        """Every acknowledged message is answered by exactly one stored reply (a reply answers
        every message stored before it started), none failed for good. Waits
        for replies still running; `guard` only stops a hang."""
        deadline = time.monotonic() + guard
        for session_id in self.acked:
            url = f"/api/conversations/sessions/{session_id}"
            while True:
                response = await self.client.get(url, headers=self.headers)
                assert response.status_code == 200, response.text
                history = response.json()
                if not history["reply_pending"] and not history["generating"]:
                    break
                assert time.monotonic() < deadline, f"{session_id} still owes a reply"
                await asyncio.sleep(0.2)
            messages = history["messages"]
            users = [m["seq"] for m in messages if m["role"] == "user"]
            answers = [
                int(m["metadata"]["in_reply_to"]) for m in messages if m["role"] == "assistant"
            ]
            assert answers and answers == sorted(set(answers)), (session_id, users, answers)
            # A reply that failed for good stores no message: the last one would go unanswered.
            assert answers[-1] == users[-1], (session_id, users, answers)
