"""Redis keys the worker processes own (in the broker's Redis), under KEY_PREFIX.

Keys are an API: build them only here (the session keys are in backend/state/keys.py).
"""

from __future__ import annotations


def beat_lock(prefix: str) -> str:
    """The lock the scheduling beat holds (workers/beat.py); its value is the holder's token."""
    return f"{prefix}:beat:lock"
