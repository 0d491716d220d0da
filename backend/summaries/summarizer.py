"""Summarising a conversation: a built-in offline method (default) and an LLM option.

The offline method is deterministic and needs nothing outside the process: keyword lexicons
(Brazilian Portuguese) for the areas of law and for sentiment, and the client's own sentences
that carry facts (dates, amounts, numbers, key words) as key points. The LLM method asks an
OpenAI-compatible chat-completions endpoint for the same JSON fields and falls back to the
offline method when the provider fails or answers something unusable.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, ValidationError

from backend.core.config import Settings
from backend.core.text import StoredText
from backend.state.schemas import Message

log = logging.getLogger(__name__)

Sentiment = Literal["positivo", "neutro", "negativo"]

AREAS: dict[str, tuple[str, ...]] = {
    "trabalhista": (
        "demitid",
        "demissao",
        "salario",
        "fgts",
        "rescis",
        "carteira assinada",
        "horas extras",
        "patrao",
        "empregador",
        "justa causa",
        "ferias",
    ),
    "consumidor": (
        "produto",
        "compra",
        "loja",
        "defeito",
        "cobranca",
        "reembolso",
        "procon",
        "cartao",
        "fatura",
        "garantia",
        "entrega",
    ),
    "familia": (
        "divorcio",
        "pensao",
        "guarda",
        "filho",
        "casamento",
        "alimentos",
        "separacao",
        "uniao estavel",
        "heranca",
        "inventario",
    ),
    "previdenciario": ("inss", "aposentadoria", "beneficio", "auxilio", "bpc", "pericia"),
    "criminal": (
        "policia",
        "boletim de ocorrencia",
        "crime",
        "preso",
        "ameaca",
        "agressao",
        "roubo",
        "furto",
        "delegacia",
    ),
    "imobiliario": (
        "aluguel",
        "despejo",
        "imovel",
        "inquilino",
        "locador",
        "condominio",
        "vizinho",
        "usucapiao",
    ),
    "saude": ("plano de saude", "cirurgia", "hospital", "tratamento", "medicamento"),
    "tributario": ("imposto", "receita federal", "iptu", "ipva", "tributo"),
}
POSITIVE = (
    "obrigad",
    "otimo",
    "excelente",
    "resolvid",
    "agradec",
    "feliz",
    "perfeito",
    "satisfeit",
    "tranquil",
    "bom",
)
NEGATIVE = (
    "problema",
    "nao recebi",
    "injust",
    "preocupad",
    "medo",
    "absurd",
    "raiva",
    "trist",
    "prejuizo",
    "ameaca",
    "desesper",
    "humilh",
    "demitid",
    "nao pagou",
    "abuso",
    "pessim",
)
URGENT = ("urgente", "amanha", "audiencia", "prazo", "liminar", "despejo", "preso")
_FACT = re.compile(r"\d|r\$|\b(data|dia|mes|ano|valor|contrato|prazo|audiencia)\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class SummaryContent(BaseModel):
    # StoredText: a provider's NUL or lone surrogate would make the summary row unwritable;
    # such a summary is refused like any malformed one (the offline method is used instead).
    summary: StoredText = Field(min_length=1, max_length=2_000)
    key_points: list[StoredText] = Field(default_factory=list, max_length=10)
    sentiment: Sentiment = "neutro"
    tags: list[StoredText] = Field(default_factory=list, max_length=10)


def fold(text: str) -> str:
    """Lower case without accents, so 'Demissão' and 'demissao' match the same keyword."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _hits(text: str, words: tuple[str, ...]) -> int:
    return sum(text.count(w) for w in words)


def summarize_offline(messages: list[Message], area_hint: str | None = None) -> SummaryContent:
    client = [m.content.strip() for m in messages if m.role == "user" and m.content.strip()]
    folded = fold(" ".join(client))
    scores = {area: _hits(folded, words) for area, words in AREAS.items()}
    areas = [a for a, n in sorted(scores.items(), key=lambda kv: -kv[1]) if n > 0][:3]
    if area_hint and fold(area_hint) not in areas:
        areas.insert(0, fold(area_hint))
    positive, negative = _hits(folded, POSITIVE), _hits(folded, NEGATIVE)
    balance = (positive - negative) / max(1, positive + negative)
    sentiment: Sentiment = (
        "positivo" if balance > 0.2 else "negativo" if balance < -0.2 else "neutro"
    )
    tags = areas + (["urgente"] if _hits(folded, URGENT) else [])

    key_points: list[str] = []
    for text in client:
        for sentence in _SENTENCE.split(text):
            sentence = sentence.strip()
            if len(sentence) < 12 or sentence in key_points:
                continue
            if _FACT.search(fold(sentence)) or any(w in fold(sentence) for w in URGENT):
                key_points.append(sentence[:200])
        if len(key_points) >= 5:
            break
    topic = ", ".join(areas) if areas else "assunto não identificado"
    opening = client[0][:300] if client else "sem mensagens do cliente"
    summary = (
        f"Conversa de {len(messages)} mensagens ({len(client)} do cliente) sobre {topic}. "
        f"Relato inicial do cliente: {opening}"
    )
    return SummaryContent(
        summary=summary[:2_000], key_points=key_points[:5], sentiment=sentiment, tags=tags
    )


_PROMPT = (
    "Você resume conversas de triagem jurídica. Responda somente com um objeto JSON com as "
    'chaves "summary" (até 3 frases em português), "key_points" (lista de até 5 fatos), '
    '"sentiment" ("positivo", "neutro" ou "negativo") e "tags" (áreas do direito, em '
    "minúsculas, sem acentos)."
)


async def summarize_llm(
    settings: Settings, messages: list[Message], area_hint: str | None = None
) -> SummaryContent | None:
    """Ask the configured OpenAI-compatible provider; None when it fails (caller falls back)."""
    base_url = settings.summary_llm_url or settings.llm_base_url
    model = settings.summary_llm_model or settings.llm_model
    key = settings.summary_llm_api_key or settings.llm_api_key
    transcript = "\n".join(f"{m.role}: {m.content}" for m in messages[-200:])
    headers = {}
    if key is not None and key.get_secret_value():
        headers["Authorization"] = f"Bearer {key.get_secret_value()}"
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": _PROMPT},
            {"role": "user", "content": transcript},
        ],
        "temperature": 0,
        "response_format": {"type": "json_object"},
    }
    url = base_url.rstrip("/") + "/chat/completions"
    try:
        async with httpx.AsyncClient(timeout=settings.summary_llm_timeout) as client:
            response = await client.post(url, json=body, headers=headers)
            response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
        return SummaryContent.model_validate(json.loads(content))
    except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError, ValidationError) as exc:
        log.warning("LLM summary failed (%s); using the offline method", exc)
        return None
