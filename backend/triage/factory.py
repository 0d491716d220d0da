"""Pick the triage analyzer named by the settings (built once per replica, in the lifespan)."""

from __future__ import annotations

import httpx

from backend.core.config import Settings
from backend.triage.analyzers import OfflineTriageAnalyzer, TriageAnalyzer
from backend.triage.llm_analyzer import LLMTriageAnalyzer


def create_analyzer(
    settings: Settings, http_client: httpx.AsyncClient | None = None
) -> TriageAnalyzer:
    """`LLMTriageAnalyzer` for TRIAGE_ANALYZER=llm (the default with REPLY_GENERATOR=openai),
    else `OfflineTriageAnalyzer`."""
    if settings.triage_analyzer == "llm":
        return LLMTriageAnalyzer.from_settings(settings, http_client)
    return OfflineTriageAnalyzer()
