"""Bodies of the development token route."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from backend.core.text import StoredText

# The alphabet `backend.core.auth` accepts in tokens (ids end up in Redis keys).
PRINCIPAL_ID_PATTERN = r"^[A-Za-z0-9_.@+:-]{1,128}$"


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: StoredText = Field(
        pattern=PRINCIPAL_ID_PATTERN,
        description="The user to sign in as (letters, digits and _.@+:-, up to 128).",
        examples=["maria"],
    )
    tenant: StoredText = Field(
        default="dev",
        pattern=PRINCIPAL_ID_PATTERN,
        description="The tenant (same alphabet).",
        examples=["dev"],
    )


class DevToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    user: str
    tenant: str
    expires_in: int = Field(description="Seconds until the token expires.")
