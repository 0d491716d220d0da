"""Pick the reply generator named by the settings.

The application builds one generator in its lifespan (sharing the app's `httpx.AsyncClient`
when it has one) and closes it with `await generator.aclose()` on shutdown.
"""

from __future__ import annotations

import httpx

from backend.core.config import Settings
from backend.generators.base import ReplyGenerator
from backend.generators.offline import OfflineInterviewer
from backend.generators.openai_compat import OpenAICompatibleGenerator


class GeneratorConfigError(ValueError):
    """The settings do not describe a usable reply generator."""


def create_generator(
    settings: Settings, http_client: httpx.AsyncClient | None = None
) -> ReplyGenerator:
    """`OfflineInterviewer` (the default) or `OpenAICompatibleGenerator`, per REPLY_GENERATOR."""
    if settings.reply_generator == "offline":
        return OfflineInterviewer(chunk_delay_ms=settings.offline_chunk_delay_ms)
    if settings.reply_generator == "openai":
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
        if not key.strip():
            raise GeneratorConfigError(
                "REPLY_GENERATOR=openai needs LLM_API_KEY; set it in the environment (use any "
                "non-empty value for a local server that ignores keys)"
            )
        return OpenAICompatibleGenerator.from_settings(settings, http_client)
    raise GeneratorConfigError(f"unknown REPLY_GENERATOR {settings.reply_generator!r}")
