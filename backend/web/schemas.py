"""Bodies of the development token route."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from backend.core.text import StoredText
from backend.web.service import MAX_NAME_CHARS, normalize_name

# The alphabet `backend.core.auth` accepts in tokens (ids end up in Redis keys).
PRINCIPAL_ID_PATTERN = r"^[A-Za-z0-9_.@+:-]{1,128}$"
# A name: anything printable with at least one character that is not a space. Control
# characters are refused here, lone surrogates by StoredText (see backend/core/text.py for why
# they are not in the pattern).
_NAME_CHAR = r"[^\x00-\x1F\x7F-\x9F]"
NAME_PATTERN = rf"^{_NAME_CHAR}*[^\s\x00-\x1F\x7F-\x9F]{_NAME_CHAR}*$"
_NAME = re.compile(NAME_PATTERN)


def _check_name(value: str) -> str:
    # Checked here rather than by `Field(pattern=...)` so the message says what a name is.
    if not _NAME.match(value):
        raise ValueError(
            "type a name: letters (accents too), digits, spaces and punctuation, not only "
            "spaces, no control characters (e.g. Maria Silva)"
        )
    name = normalize_name(value)
    if not name:  # whitespace that the pattern's \s does not know
        raise ValueError("type a name, not only spaces (e.g. Maria Silva)")
    return name


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: Annotated[StoredText, AfterValidator(_check_name)] = Field(
        min_length=1,
        max_length=MAX_NAME_CHARS,
        json_schema_extra={"pattern": NAME_PATTERN},
        description=(
            "Who signs in: a name as people write it, e.g. 'Maria Silva' or 'joão' (up to "
            "128 characters). A name made only of letters, digits and _.@+:- is the user id "
            "itself; any other name gets a derived id (the answer's `user`)."
        ),
        examples=["Maria Silva"],
    )
    tenant: StoredText = Field(
        default="dev",
        pattern=PRINCIPAL_ID_PATTERN,
        description="The tenant (letters, digits and _.@+:-, up to 128).",
        examples=["dev"],
    )


class DevToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    user: str = Field(description="The user id the token carries (`sub`).")
    name: str = Field(description="The name as typed (trimmed): the token's `name` claim.")
    tenant: str
    expires_in: int = Field(description="Seconds until the token expires.")
