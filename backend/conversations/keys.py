"""Redis keys of the conversation API. Keys are an API: build them only here."""

from __future__ import annotations

import hashlib

from backend.core.ids import is_valid_principal_id


class ConversationKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def message_rate(self, tenant_id: str, user_id: str) -> str:
        """The per-user counter of posted messages in the current rate-limit window."""
        return f"{self.prefix}:rl:{_user_tag(tenant_id, user_id)}:messages"

    def session_rate(self, tenant_id: str, user_id: str) -> str:
        """The per-user counter of sessions opened in the current rate-limit window."""
        return f"{self.prefix}:rl:{_user_tag(tenant_id, user_id)}:sessions"

    def dev_token_rate(self, client: str) -> str:
        """The per-address counter of development tokens minted in the current window."""
        # Hashed: an address (IPv6, a proxy's name) may hold characters a key should not.
        return f"{self.prefix}:rl:{{ip:{_digest(client)}}}:dev_tokens"

    def opened_session(self, tenant_id: str, user_id: str, idempotency_key: str) -> str:
        """The session a user's Idempotency-Key opened (see conversations/idempotency.py)."""
        return f"{self.prefix}:idem:{_user_tag(tenant_id, user_id)}:{_digest(idempotency_key)}"


def _user_tag(tenant_id: str, user_id: str) -> str:
    # Users and tenants come from JWT claims; braces would break the hash tag.
    if not (is_valid_principal_id(tenant_id) and is_valid_principal_id(user_id)):
        raise ValueError(f"invalid tenant or user id: {tenant_id!r}, {user_id!r}")
    return f"{{t:{tenant_id}:u:{user_id}}}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]
