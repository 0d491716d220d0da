"""Reply generation by any OpenAI-compatible chat-completions endpoint, streamed over httpx.

Works with OpenAI and with the many servers that copy its wire format (vLLM, Ollama, LiteLLM,
Azure-style gateways): `POST {base_url}/chat/completions` with `stream: true`, answered by a
`text/event-stream` of `data: {chunk}` events and a final `data: [DONE]`. The SSE framing is
parsed by httpx-sse; this module only reads the chunks.

Every failure surfaces as `GenerationError` with a message an operator can act on: the
provider's own error message for an HTTP error, a timeout, a dropped connection, a malformed
chunk, or a stream that stopped before `[DONE]` (a half reply must never pass for a whole
one). The half reply already streamed stays with the caller, who decides what to keep.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from backend.core.config import Settings
from backend.core.text import make_storable
from backend.core.tracing import aspan
from backend.generators.analysis import URGENCY_LABELS, area_label
from backend.generators.base import CaseAnalysis, GenerationError
from backend.generators.questions import Topic, question_for
from backend.state.schemas import ConversationState

_RETRYABLE_STATUS = {408, 409, 429}
_ERROR_BODY_LIMIT = 300

SYSTEM_PROMPT = (
    "Você é o entrevistador de triagem jurídica de um escritório de advocacia no Brasil. "
    "Converse em português do Brasil, com educação, empatia e linguagem simples. Seu objetivo "
    "é reunir o que a triagem precisa: o que aconteceu e quando, quem são as partes "
    "envolvidas, quais documentos a pessoa tem e se há sinais de urgência (prazos, audiências "
    "marcadas, prisão, despejo, risco à saúde, violência). Faça uma pergunta por vez e nunca "
    "repita uma pergunta já respondida. Não dê parecer jurídico definitivo nem prometa "
    "resultados. Em situações urgentes, dê primeiro uma orientação prática imediata (por "
    "exemplo: comparecer à audiência, procurar a Defensoria Pública, ligar 190 em caso de "
    "perigo). Responda em poucas frases."
)


def build_system_prompt(analysis: CaseAnalysis) -> str:
    """The role, plus what the offline analysis already knows and what is still missing."""
    lines = [SYSTEM_PROMPT, "", "Estado atual da triagem:"]
    label = area_label(analysis.area)
    if label:
        lines.append(f"- Área: {label}" + (f" ({analysis.sub_area})" if analysis.sub_area else ""))
    else:
        lines.append("- Área: ainda não identificada")
    reason = analysis.urgency_reason or ""
    lines.append(f"- Urgência: {URGENCY_LABELS[analysis.urgency]}. {reason}".rstrip())
    for key, value in analysis.facts.items():
        lines.append(f"- {key.replace('_', ' ')}: {value}")
    if analysis.ready_for_triage:
        lines.append(
            "A entrevista já tem o suficiente para a triagem: agradeça, resuma em uma frase o "
            "que entendeu e diga que o caso será encaminhado a um advogado."
        )
    else:
        if analysis.missing:
            lines.append("Ainda falta saber: " + "; ".join(analysis.missing) + ".")
        if analysis.next_topic:
            question = question_for(Topic(analysis.next_topic), analysis.area)
            lines.append(f"Pergunte agora sobre: {question}")
    return "\n".join(lines)


def build_messages(conversation: ConversationState, analysis: CaseAnalysis) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": build_system_prompt(analysis)}]
    messages += [{"role": m.role, "content": m.content} for m in conversation.messages]
    return messages


def status_error(status: int, body: bytes) -> GenerationError:
    """The provider's own message when the body is an OpenAI-style error, else the body."""
    detail = body.decode("utf-8", "replace").strip()[:_ERROR_BODY_LIMIT] or "(empty body)"
    try:
        error = json.loads(body)["error"]
        detail = error["message"] if isinstance(error, dict) else str(error)
    except (ValueError, KeyError, TypeError):
        pass
    return GenerationError(
        f"LLM provider answered HTTP {status}: {detail}",
        status_code=status,
        retryable=status in _RETRYABLE_STATUS or status >= 500,
    )


def _chunk_content(data: str) -> str | None:
    """The text of one `chat.completion.chunk`; None for chunks that carry no text."""
    try:
        chunk: Any = json.loads(data)
    except ValueError as exc:
        raise GenerationError(f"LLM provider sent a malformed chunk: {data[:100]!r}") from exc
    if not isinstance(chunk, dict):
        raise GenerationError(f"LLM provider sent a malformed chunk: {data[:100]!r}")
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise GenerationError(f"LLM provider failed mid-stream: {message}", retryable=True)
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        raise GenerationError(f"LLM provider sent a chunk without choices: {data[:100]!r}")
    # Some gateways send chunks with no choices (usage, content-filter results): no text.
    if not choices:
        return None
    choice = choices[0]
    delta = choice.get("delta") if isinstance(choice, dict) else None
    content = delta.get("content") if isinstance(delta, dict) else None
    if content is not None and not isinstance(content, str):
        raise GenerationError(f"LLM provider sent a malformed chunk: {data[:100]!r}")
    # The reply is stored: a NUL or a lone surrogate would make it unwritable.
    return make_storable(content) if content else None


class ChatCompletionsEndpoint:
    """An OpenAI-compatible `/chat/completions` endpoint: its URL, model, credentials and
    timeout, and the HTTP client to reach it (its own unless one is passed in: a client that
    was passed in belongs to the caller and `aclose()` leaves it open)."""

    purpose = "the OpenAI-compatible endpoint"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        timeout_seconds: float = 30.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not api_key.strip():
            raise ValueError(f"an API key is required for {self.purpose}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout_seconds = timeout_seconds
        self._timeout = httpx.Timeout(timeout_seconds)
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=self._timeout)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class OpenAICompatibleGenerator(ChatCompletionsEndpoint):
    """`ReplyGenerator` streaming from `{base_url}/chat/completions`.

    Pass the application's shared `httpx.AsyncClient` (its connection pool is reused across
    requests); without one the generator makes its own and `aclose()` closes it. A client that
    was passed in belongs to the caller and is left open.
    """

    name = "openai"
    purpose = "the OpenAI-compatible generator"

    @classmethod
    def from_settings(
        cls, settings: Settings, http_client: httpx.AsyncClient | None = None
    ) -> OpenAICompatibleGenerator:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
        return cls(
            base_url=settings.llm_base_url,
            api_key=key,
            model=settings.llm_model,
            timeout_seconds=settings.llm_timeout_seconds,
            http_client=http_client,
        )

    async def stream_reply(
        self, conversation: ConversationState, analysis: CaseAnalysis
    ) -> AsyncIterator[str]:
        payload = {
            "model": self.model,
            "stream": True,
            "messages": build_messages(conversation, analysis),
        }
        try:
            async with (
                aspan("llm.call", model=self.model),
                aconnect_sse(
                    self._client,
                    "POST",
                    self.url,
                    json=payload,
                    headers=dict(self._headers),
                    timeout=self._timeout,
                ) as source,
            ):
                response = source.response
                if response.status_code != httpx.codes.OK:
                    raise status_error(response.status_code, await response.aread())
                async for event in source.aiter_sse():
                    if event.data.strip() == "[DONE]":
                        return
                    content = _chunk_content(event.data)
                    if content:
                        yield content
        except httpx.TimeoutException as exc:
            raise GenerationError(
                f"LLM provider timed out (no data for {self.timeout_seconds:g}s): "
                f"{type(exc).__name__}",
                retryable=True,
            ) from exc
        except httpx.TransportError as exc:
            raise GenerationError(
                f"connection to the LLM provider failed or dropped mid-stream: "
                f"{type(exc).__name__}: {exc}",
                retryable=True,
            ) from exc
        except SSEError as exc:
            raise GenerationError(
                f"LLM provider did not answer with an event stream: {exc}"
            ) from exc
        # The body ended cleanly but without the [DONE] sentinel: the reply may be cut short.
        raise GenerationError(
            "LLM provider's stream ended before [DONE]; the reply may be incomplete",
            retryable=True,
        )
