"""Ids from outside (JWT claims) that end up in Redis keys: the one check of their alphabet.

Braces would break a key's hash tag, so they (and anything but a safe alphabet) are refused.
"""

from __future__ import annotations

import re

_PRINCIPAL_ID = re.compile(r"^[A-Za-z0-9_.@+:-]{1,128}$")


def is_valid_principal_id(value: str) -> bool:
    """A user or tenant id: letters, digits and `_.@+:-`, 1 to 128 characters."""
    return bool(_PRINCIPAL_ID.match(value))
