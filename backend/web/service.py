"""Development sign-in: the name a person types, and the user id their token carries.

People type names ("Maria Silva", "joão"); a token's `sub` ends up in Redis keys (a user's
session index, the rate-limit counter), where only `[A-Za-z0-9_.@+:-]` is allowed (braces
would break a hash tag). So the name is kept as the display name (a `name` claim) and the
user id is derived from it:

* a name that already is a valid id is the id itself, so signing in as "maria" on the page and
  `triage token --user maria` are the same user;
* any other name gets a readable id, accents folded and other characters turned into "-",
  plus a short hash of the exact name: "Maria Silva" -> "Maria-Silva-<8 hex>". The hash keeps
  names that fold alike apart ("João" and "Joao", or two names in a script that folds to
  nothing), and the same name always gives the same id, so a person finds their sessions again.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from backend.core.ids import is_valid_principal_id

MAX_NAME_CHARS = 128
_NOT_ID = re.compile(r"[^A-Za-z0-9_.@+:-]+")
_SLUG_CHARS = 128 - 9  # ids are at most 128 characters: room for "-<8 hex>"


def normalize_name(name: str) -> str:
    """The name as shown: NFC, trimmed, inner runs of whitespace as one space."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def user_id_for_name(name: str) -> str:
    """The user id (`sub`) for a display name (already normalized and checked)."""
    if is_valid_principal_id(name):
        return name
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_ID.sub("-", folded).strip("-.")[:_SLUG_CHARS].rstrip("-.") or "user"
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{slug}-{digest}"
