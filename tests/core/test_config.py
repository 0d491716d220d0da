from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.core.config import Settings


@pytest.mark.parametrize("secret", ["", "change-me", "dev-insecure-secret-change-me", "short"])
def test_production_refuses_missing_or_placeholder_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(_env_file=None, environment="production", jwt_secret=secret)  # type: ignore[call-arg]


def test_production_accepts_a_real_secret_and_development_needs_none() -> None:
    real = "x" * 40
    assert Settings(_env_file=None, environment="production", jwt_secret=real).jwt_secret == real  # type: ignore[call-arg]
    assert Settings(_env_file=None, environment="development").environment == "development"  # type: ignore[call-arg]


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERSATION_TTL", "3600")
    monkeypatch.setenv("MAX_CONVERSATION_HISTORY", "50")
    monkeypatch.setenv("KEY_PREFIX", "acme")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.conversation_ttl, settings.max_conversation_history) == (3600, 50)
    assert settings.key_prefix == "acme"
    monkeypatch.setenv("CONVERSATION_TTL", "0")
    with pytest.raises(ValidationError, match="conversation_ttl"):
        Settings(_env_file=None)  # type: ignore[call-arg]
