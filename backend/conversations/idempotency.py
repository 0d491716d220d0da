"""Idempotency-Key on the posts that store something: a retry is stored once, answered the same.

A client whose connection dropped cannot tell whether its post was stored. With a key it sends
the same request again: if the first one was stored, it gets the first answer (same session,
`seq` and `event_id`) and nothing new is written; the same key with another body is a 422.

How it stays correct with duplicates in flight, crashes and several replicas:

* The record of a keyed post (a hash field under the session's hash tag) is written by the
  same Lua script as the message itself (`write_state.lua`, DESIGN invariant 2), and that
  script looks the key up before its version check. So the message and its record exist
  together or not at all, and of two identical posts racing, exactly one writes: the other
  gets the first one's record, even if it read the session before the first write landed.
* A post that opens a session has no session yet. The key is first mapped to a freshly minted
  session id (`SET NX` on a user-scoped key, expiring with the session TTL). Whoever minted or
  finds that mapping writes *that* session with the record; a duplicate in flight, or a retry
  after a crash between the two steps, writes the same session id, and the script lets only
  one through. A retry never waits for, nor depends on, the first request finishing.
* Records hold no message text (a hash of the request, the session, `seq`, `created_at`,
  `event_id`, `version`): the answer is rebuilt from them and the retried body, which must be
  the same. They live for the session TTL after their post, survive DELETE (a retry after it
  still gets its first answer, never a second session) and go with a purge, together with
  the mapping of the key that opened the session.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Any

from fastapi import Header

from backend.conversations.keys import ConversationKeys
from backend.core.auth import Principal
from backend.core.errors import TriageError
from backend.core.redis import RedisService

# Visible ASCII, spaces allowed inside: a UUID (what the project's clients send) fits easily.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7E]([\x20-\x7E]{0,253}[\x21-\x7E])?$"
IDEMPOTENCY_KEY_MAX_LENGTH = 255

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="A unique key per message (e.g. a UUID), sent again unchanged when the "
        "post is retried: a retry within the session's TTL gets the first answer and stores "
        "nothing new. Printable ASCII, 1-255 characters.",
    ),
]


class IdempotencyKeyReused(TriageError):
    """The key was used before for a different request (another body, session or route)."""

    status_code = 422
    code = "idempotency_key_reused"


class IdempotencyKeyExpired(TriageError):
    """The key opened a session whose record is gone: it can no longer be replayed."""

    status_code = 422
    code = "idempotency_key_expired"


def fingerprint(operation: str, session_id: str | None, message: str | None) -> str:
    """What makes two posts "the same request": the operation, its session and its body."""
    raw = json.dumps([operation, session_id, message], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def check_same_request(record: dict[str, Any], fp: str, key: str) -> None:
    if record.get("fp") != fp:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different request (another body, "
            "session or route); use a new key for a new request",
            idempotency_key=key[:64],
        )


class OpenedSessions:
    """Maps a user's Idempotency-Key to the session a post with it opens (see module doc)."""

    def __init__(self, redis: RedisService, prefix: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.keys = ConversationKeys(prefix)
        self.ttl = ttl_seconds

    async def find(self, principal: Principal, key: str, fp: str) -> str | None:
        """The session this key already opened (or is opening), if any."""
        raw = await self.redis.get(self._key(principal, key))
        return None if raw is None else self._session_of(raw, fp, key)

    async def claim(self, principal: Principal, key: str, fp: str) -> str:
        """Mint the session id for this key, or return the one a concurrent post minted."""
        mapping = self._key(principal, key)
        value = json.dumps({"session_id": uuid.uuid4().hex, "fp": fp})
        raw: str | None = value
        if not await self.redis.set_if_absent(mapping, value, self.ttl):
            raw = await self.redis.get(mapping)
        if raw is None:  # expired between SET NX and GET: a TTL ago, so nothing to replay
            return await self.claim(principal, key, fp)
        return self._session_of(raw, fp, key)

    def mapping_key(self, principal: Principal, key: str) -> str:
        """The Redis key of the mapping: an opening post's record names it, so that a purge of
        the session can erase the mapping too (a retry after it then opens a new session)."""
        return self._key(principal, key)

    def _key(self, principal: Principal, key: str) -> str:
        return self.keys.opened_session(principal.tenant_id, principal.user_id, key)

    @staticmethod
    def _session_of(raw: str | bytes, fp: str, key: str) -> str:
        mapping = json.loads(raw)
        check_same_request(mapping, fp, key)
        return str(mapping["session_id"])
