"""The two sorted sets that span sessions: the replies' due set and the dirty set.

Both are kept by the state writes themselves (`StateStore._write` adds to them in the same
round trip), so they can always be rebuilt from the sessions' own state. Everything else that
moves a session in or out of them goes through these two owners:

* `DueSet` (`Keys.replies_due()`): sessions that owe a reply, scored by when to look at them.
  The reply runtime pushes an entry forward while it holds the session's lease, drops it when
  nothing is owed and sweeps what is due.
* `DirtySet` (`Keys.dirty()`): sessions waiting for a snapshot to PostgreSQL, scored by when
  they became dirty (or, for a refused one, by its next attempt: backend/state/refused.py).
  The snapshot worker takes the oldest in batches and releases each one only if Redis did not
  move on meanwhile.
"""

from __future__ import annotations

import json
import time
from importlib.resources import files
from typing import Any

from backend.core.config import Settings
from backend.core.redis import RedisService, translate_errors
from backend.state.keys import Keys
from backend.state.owed import owes_reply
from backend.state.schemas import ConversationState, StateDocument


class DueSet:
    def __init__(self, redis: RedisService, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.key = keys.replies_due()

    def score(self, state: StateDocument, now: float) -> float | str:
        """How a write of `state` moves the session in the set (see write_state.lua).

        A conversation that owes a reply is due one lease from now: the replica that stored
        the message starts its reply at once, and should it die first, the sweep of any
        replica finds it then. One that owes none leaves the set, in the write that stored
        its reply (or final error) and not after it, so no failure in between strands it.
        """
        if not isinstance(state, ConversationState):
            return ""
        if owes_reply(state):
            return now + self.settings.generation_lease_ms / 1000
        return "-"

    async def settle(self, sid: str) -> None:
        """Cluster only: remove a due entry after the write that settled the session.

        Not atomic with that write (other slot), so look again afterwards: a message stored in
        between added its own entry before our ZREM may have taken it; put it back.
        """
        client = self.redis.client
        with translate_errors():
            await client.zrem(self.key, sid)
            meta = await client.hget(self.keys.conversation(sid), "meta")
            if meta is not None and json.loads(meta).get("owes_reply"):
                score = time.time() + self.settings.generation_lease_ms / 1000
                await client.zadd(self.key, {sid: score}, lt=True)

    async def push(self, sid: str, delay: float) -> None:
        """Move the session's entry to `delay` seconds from now (XX: only an entry a state
        write put there; a session that owes nothing any more must not come back)."""
        with translate_errors():
            await self.redis.client.zadd(self.key, {sid: time.time() + delay}, xx=True)

    async def add_now(self, sid: str) -> None:
        """Make the session due now (it owes a reply: a state read said so)."""
        with translate_errors():
            await self.redis.client.zadd(self.key, {sid: time.time()})

    async def drop(self, sid: str) -> bool:
        """Remove the session's entry; returns whether there was one."""
        with translate_errors():
            return bool(await self.redis.client.zrem(self.key, sid))

    async def due(self, limit: int = 200) -> list[str]:
        """Sessions whose time to be looked at has come, the oldest first."""
        with translate_errors():
            due = await self.redis.client.zrangebyscore(
                self.key, "-inf", time.time(), start=0, num=limit
            )
        return [str(sid) for sid in due]


class DirtySet:
    def __init__(self, redis: RedisService, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.key = keys.dirty()
        self._single_node = not redis.is_cluster
        script = files("backend.state").joinpath("lua", "release_dirty.lua").read_text()
        self._release_script = redis.client.register_script(script)

    async def batch(self, limit: int, *, due_only: bool = True) -> list[str]:
        """The oldest dirty sessions, up to `limit`; with `due_only`, only those whose score
        (first-dirty time, or a refused session's next attempt) has come."""
        with translate_errors():
            raw = await self.redis.client.zrange(
                self.key,
                "-inf",
                time.time() if due_only else "+inf",
                byscore=True,
                offset=0,
                num=limit,
            )
        return [str(sid) for sid in raw]

    async def release(self, versions: dict[str, tuple[int, int]]) -> int:
        """Drop sessions from the set, then re-add any written since their snapshot.

        `versions` holds the (conversation, orchestration) versions each snapshot read. ZREM
        first and re-read after: a write landing between the two either sees the member gone
        and adds it itself (ZADD NX), or is seen by the re-read. Nothing slips through.
        Returns how many were re-added.
        """
        if not versions:
            return 0
        if self._single_node:
            return await self._release_atomically(versions)
        client = self.redis.client
        ids = list(versions)
        with translate_errors():
            await client.zrem(self.key, *ids)
            pipe = client.pipeline(transaction=False)
            for sid in ids:
                pipe.hget(self.keys.conversation(sid), "version")
                pipe.hget(self.keys.orchestration(sid), "version")
            raw = await pipe.execute()
            moved = [
                sid
                for i, sid in enumerate(ids)
                if (int(raw[2 * i] or 0), int(raw[2 * i + 1] or 0)) > (0, 0)
                and (int(raw[2 * i] or 0), int(raw[2 * i + 1] or 0)) != versions[sid]
            ]
            if moved:
                await client.zadd(self.key, dict.fromkeys(moved, time.time()), nx=True)
        return len(moved)

    async def _release_atomically(self, versions: dict[str, tuple[int, int]]) -> int:
        """`release` on a single node: one script (release_dirty.lua), which also clears the
        hashes' `dirty` field that lets writes skip their ZADD (see write_state.lua)."""
        keys: list[str] = [self.key]
        args: list[Any] = [time.time()]
        for sid, (conversation, orchestration) in versions.items():
            keys += [self.keys.conversation(sid), self.keys.orchestration(sid)]
            args += [sid, conversation, orchestration]
        with translate_errors():
            return int(await self._release_script(keys=keys, args=args))

    async def backlog(self) -> tuple[int, float]:
        """Sessions waiting for a snapshot, and how long the oldest has waited (seconds)."""
        with translate_errors():
            pipe = self.redis.client.pipeline(transaction=False)
            pipe.zcard(self.key)
            pipe.zrange(self.key, 0, 0, withscores=True)
            count, oldest = await pipe.execute()
        # A refused session's score is its next attempt (backend/state/refused.py), which may
        # be ahead: it is counted as dirty, and reported as refused, not as lag.
        lag = max(0.0, round(time.time() - oldest[0][1], 3)) if oldest else 0.0
        return int(count), lag
