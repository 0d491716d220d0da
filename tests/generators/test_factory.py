"""Choosing the reply generator from settings."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from backend.generators.factory import GeneratorConfigError, create_generator
from backend.generators.offline import OfflineInterviewer
from backend.generators.openai_compat import OpenAICompatibleGenerator
from tests.conftest import make_settings


def test_offline_is_the_default() -> None:
    generator = create_generator(make_settings())
    assert isinstance(generator, OfflineInterviewer)
    assert generator.name == "offline"
    assert generator.chunk_delay == 0


def test_offline_chunk_delay_comes_from_settings() -> None:
    generator = create_generator(make_settings(offline_chunk_delay_ms=40))
    assert isinstance(generator, OfflineInterviewer)
    assert generator.chunk_delay == pytest.approx(0.04)


async def test_openai_uses_the_shared_client_and_settings() -> None:
    settings = make_settings(
        reply_generator="openai",
        llm_base_url="http://127.0.0.1:9/v1/",
        llm_api_key="sk-local",
        llm_model="qwen2.5",
        llm_timeout_seconds=7,
    )
    async with httpx.AsyncClient() as client:
        generator = create_generator(settings, client)
        assert isinstance(generator, OpenAICompatibleGenerator)
        assert generator.name == "openai"
        assert generator.url == "http://127.0.0.1:9/v1/chat/completions"
        assert generator.model == "qwen2.5"
        assert generator.timeout_seconds == 7
        await generator.aclose()
        assert not client.is_closed  # the caller's client stays open


def test_settings_refuse_openai_without_a_key() -> None:
    with pytest.raises(ValidationError, match="LLM_API_KEY"):
        make_settings(reply_generator="openai")
    with pytest.raises(ValidationError, match="LLM_API_KEY"):
        make_settings(reply_generator="openai", llm_api_key="  ")


def test_factory_refuses_openai_without_a_key_too() -> None:
    # Settings changed after validation (e.g. by a test override) are checked again.
    settings = make_settings().model_copy(
        update={"reply_generator": "openai", "llm_api_key": SecretStr("")}
    )
    with pytest.raises(GeneratorConfigError, match="LLM_API_KEY"):
        create_generator(settings)


def test_the_key_is_not_shown_in_settings_repr() -> None:
    settings = make_settings(reply_generator="openai", llm_api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(settings)
