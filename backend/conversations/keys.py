"""Redis keys of the conversation API. Keys are an API: build them only here."""

from __future__ import annotations

from backend.state.keys import is_valid_principal_id


class ConversationKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def message_rate(self, tenant_id: str, user_id: str) -> str:
        """The per-user counter of posted messages in the current rate-limit window."""
        if not (is_valid_principal_id(tenant_id) and is_valid_principal_id(user_id)):
            raise ValueError(f"invalid tenant or user id: {tenant_id!r}, {user_id!r}")
        return f"{self.prefix}:rl:{{t:{tenant_id}:u:{user_id}}}:messages"
