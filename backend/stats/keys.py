"""Redis keys of the stats cache (keys are an API: built only here)."""

from __future__ import annotations

from backend.core.ids import is_valid_principal_id


def stats_cache(prefix: str, tenant_id: str, days: int) -> str:
    if not is_valid_principal_id(tenant_id):
        raise ValueError(f"invalid tenant id: {tenant_id!r}")
    return f"{prefix}:stats:{{t:{tenant_id}}}:days:{days}"
