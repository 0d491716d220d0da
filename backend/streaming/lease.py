"""A per-session lease: at most one reply generator per session across all replicas.

`take` takes it when free and keeps it when the caller's token already holds it; the holder
renews it well before it expires; release is compare-and-delete in Lua, so a holder
whose lease already expired (and was taken over) can never delete its successor's. The lease
key shares the session's hash tag. A dead holder simply stops renewing: after `ttl` the lease
is free and another replica recovers the session. A live holder that waited out a Redis outage
takes its lease back with the same token when nobody else took it meanwhile, so its reply goes
on as its own instead of being closed as a dead generator's.
"""

from __future__ import annotations

import json
import secrets
from importlib.resources import files

from redis.commands.core import AsyncScript

from backend.core.redis import RedisService, translate_errors
from backend.state.keys import Keys


def _lua(name: str) -> str:
    return files("backend.streaming").joinpath("lua", name).read_text()


class SessionLease:
    def __init__(self, redis: RedisService, keys: Keys, ttl_ms: int, owner: str) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = ttl_ms
        self.owner = owner
        self._take = redis.client.register_script(_lua("lease_take.lua"))
        self._renew = redis.client.register_script(_lua("lease_renew.lua"))
        self._release = redis.client.register_script(_lua("lease_release.lua"))
        self._release_owing = redis.client.register_script(_lua("lease_release_owing.lua"))

    def new_token(self) -> str:
        # The owner (replica id) in the token tells an operator who holds a lease.
        return f"{self.owner}:{secrets.token_hex(8)}"

    async def take(self, session_id: str, token: str) -> bool:
        """Hold the lease with `token`: take it when free, keep it when `token` holds it.

        The one way to acquire the lease (`acquire` is the same call). A plain `SET NX PX GET`
        first: one command, no script, answers the two usual cases (free: taken; someone
        else's: refused, its holder's token comes back). Only when `token` itself holds it (a
        holder taking its lease back after an outage) does `lease_take.lua` extend it, as a
        compare-and-extend must be atomic: the lease may lapse and be taken by another between
        two plain commands.
        """
        key = self.keys.lease(session_id)
        with translate_errors():
            holder = await self.redis.client.set(key, token, nx=True, px=self.ttl_ms, get=True)
        if holder is None:
            return True
        if holder != token:
            return False
        return bool(await self._run(self._take, session_id, token, self.ttl_ms))

    acquire = take

    async def renew(self, session_id: str, token: str) -> bool:
        return bool(await self._run(self._renew, session_id, token, self.ttl_ms))

    async def release(self, session_id: str, token: str) -> bool:
        return bool(await self._run(self._release, session_id, token))

    async def release_owing(self, session_id: str, token: str) -> bool:
        """`release`, and whether the session owes a reply now, in one round trip."""
        keys = [self.keys.lease(session_id), self.keys.conversation(session_id)]
        with translate_errors():
            meta = await self._release_owing(keys=keys, args=[token])
        return meta is not None and bool(json.loads(meta).get("owes_reply"))

    async def is_held(self, session_id: str) -> bool:
        with translate_errors():
            return bool(await self.redis.client.exists(self.keys.lease(session_id)))

    async def held(self, session_ids: list[str]) -> list[bool]:
        """Whether each session's lease is held (one round trip)."""
        if not session_ids:
            return []
        with translate_errors():
            pipe = self.redis.client.pipeline(transaction=False)
            for sid in session_ids:
                pipe.exists(self.keys.lease(sid))
            return [bool(found) for found in await pipe.execute()]

    async def _run(self, script: AsyncScript, session_id: str, *args: str | int) -> object:
        keys = [self.keys.lease(session_id)]
        # redis-py's Script reloads itself on NOSCRIPT (a restarted or new node).
        with translate_errors():
            return await script(keys=keys, args=list(args))
