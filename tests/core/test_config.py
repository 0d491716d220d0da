from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.core.auth import Principal, create_token, decode_token
from backend.core.config import DEV_JWT_SECRET, Settings


@pytest.mark.parametrize(
    "secret", ["", "change-me", "dev-insecure-secret-change-me", DEV_JWT_SECRET, "short"]
)
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


def test_development_default_secret_signs_tokens_without_a_warning() -> None:
    # `.env.example` leaves JWT_SECRET empty; pytest turns PyJWT's short-key warning into an
    # error, so signing and checking a token here fails if the default is under 32 bytes.
    for settings in (
        Settings(_env_file=None, environment="development"),  # type: ignore[call-arg]
        Settings(_env_file=None, environment="development", jwt_secret=""),  # type: ignore[call-arg]
    ):
        assert len(settings.jwt_secret.encode()) >= 32
        token = create_token(settings, "maria", "dev")
        assert decode_token(settings, token) == Principal("maria", "dev")


def test_a_short_secret_is_refused_even_in_development() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(_env_file=None, environment="development", jwt_secret="short")  # type: ignore[call-arg]


def test_log_format_defaults_to_text_in_development_and_json_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "s" * 40
    assert Settings(_env_file=None, environment="development").log_format == "text"  # type: ignore[call-arg]
    assert (
        Settings(_env_file=None, environment="production", jwt_secret=secret).log_format == "json"
    )  # type: ignore[call-arg]
    monkeypatch.setenv("LOG_FORMAT", "")  # as `.env.example` leaves it
    assert Settings(_env_file=None, environment="test", jwt_secret=secret).log_format == "json"  # type: ignore[call-arg]
    monkeypatch.setenv("LOG_FORMAT", "text")
    assert Settings(_env_file=None, environment="test", jwt_secret=secret).log_format == "text"  # type: ignore[call-arg]
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings(_env_file=None)  # type: ignore[call-arg]
