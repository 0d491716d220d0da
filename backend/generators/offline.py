"""The built-in interviewer: deterministic Brazilian-Portuguese replies, no network.

Each reply (1) greets on the first turn, (2) acknowledges what the client's last message added
(the area once it is recognised, a date, the parties, documents), (3) for a high or urgent
case gives a concrete orientation (hearing, arrest, eviction, health, violence...), and (4)
asks the one most important question still open — or, once the analysis says the interview
holds enough, closes with what happens next.

"What the last message added" is the difference between the analysis of the whole
conversation and that of the conversation before the last client message; both are pure
functions of the messages, so the same conversation always gets the same reply.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from backend.generators.analysis import ANSWER_LIMIT, NO_DOCUMENTS_FACT, analyze, area_label
from backend.generators.areas import AREAS_BY_KEY
from backend.generators.base import CaseAnalysis
from backend.generators.lexicon import DOCUMENT_ANY, LEVEL_RANK, PARTY_ANY, WHEN
from backend.generators.questions import FALLBACK_QUESTION, GUIDANCE, Topic, question_for
from backend.generators.text import fold, join_pt, shorten
from backend.state.schemas import ConversationState

WORDS_PER_CHUNK = 3

OPENING = (
    "Olá! Sou o assistente virtual de triagem jurídica. Vou fazer algumas perguntas rápidas "
    "para entender o seu caso e encaminhá-lo ao advogado certo."
)
NOTHING_NEW = "Obrigado pela resposta."
AFTER_FALLBACK = (
    "Obrigado. Se puder, conte mais algum detalhe sobre o que você gostaria de resolver?"
)
AFTER_TRIAGE = (
    "Obrigado, anotei essa informação no seu caso. A triagem já foi encaminhada; se quiser "
    "acrescentar mais algum detalhe, é só escrever."
)
_CLIENT_WHEN = {
    "urgente": "o quanto antes, ainda hoje",
    "alta": "nas próximas 48 horas",
    "media": "nos próximos dias",
    "baixa": "nas próximas semanas",
}


def split_chunks(text: str, words_per_chunk: int = WORDS_PER_CHUNK) -> list[str]:
    """A few words per chunk, whitespace kept, so the chunks join back to `text` exactly."""
    tokens = re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
    return [
        "".join(tokens[i : i + words_per_chunk]) for i in range(0, len(tokens), words_per_chunk)
    ]


def _before_last_user_message(conversation: ConversationState) -> ConversationState:
    messages = conversation.messages
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=0)
    return conversation.copy(messages=messages[:last_user])


def _last_user_text(conversation: ConversationState) -> str:
    return next((m.content for m in reversed(conversation.messages) if m.role == "user"), "")


def _acknowledgement(now: CaseAnalysis, before: CaseAnalysis, last_reply: str) -> list[str]:
    parts: list[str] = []
    if now.area and now.area != before.area:
        sentence = f"Pelo que você contou, trata-se de uma questão de {area_label(now.area)}"
        if now.sub_area:
            sentence += f", envolvendo {now.sub_area}"
        parts.append(sentence + ".")
    noted: list[str] = []
    raw_reply = shorten(last_reply, ANSWER_LIMIT)
    for key, label, recognised in (
        ("quando", "a data", WHEN),
        ("partes", "quem está envolvido", PARTY_ANY),
        ("documentos", "os documentos que você tem", DOCUMENT_ANY),
    ):
        value = now.facts.get(key)
        if not value or value == before.facts.get(key):
            continue
        if value == NO_DOCUMENTS_FACT:
            noted.append("que você ainda não tem documentos")
            continue
        # A free-form answer ("não lembro") is not echoed back as if it were a date or a
        # name; a reply that is itself one ("em março de 2024", "Loja X") is.
        free_form = value.endswith(raw_reply) and not recognised.search(fold(raw_reply))
        noted.append(f"sua resposta sobre {label}" if free_form else f"{label} ({value})")
    if noted:
        parts.append(f"Anotei {join_pt(noted)}.")
    return parts


def _urgent_guidance(now: CaseAnalysis, before: CaseAnalysis) -> list[str]:
    """Orientation once, when the case first becomes high/urgent or a new risk appears."""
    rank = LEVEL_RANK[now.urgency]
    if rank < LEVEL_RANK["alta"] or not now.urgency_signals:
        return []
    top = now.urgency_signals[0]
    if rank <= LEVEL_RANK[before.urgency] and top in before.urgency_signals:
        return []
    reason = (now.urgency_reason or "").rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    lead = "Entendo que o seu caso é urgente" if now.urgency == "urgente" else "Isso merece atenção"
    parts = [f"{lead}: {reason}."]
    if top in GUIDANCE:
        parts.append(GUIDANCE[top])
    return parts


def _closing(now: CaseAnalysis) -> list[str]:
    parts = ["Obrigado! Já tenho as informações principais para a triagem do seu caso."]
    area = AREAS_BY_KEY.get(now.area or "")
    if area is not None:
        parts.append(
            f"O próximo passo recomendado é uma consulta com um {area.lawyer} "
            f"{_CLIENT_WHEN[now.urgency]}."
        )
        if Topic.DOCUMENTOS.value in now.missing_topics:
            parts.append(
                "Enquanto isso, vá separando os documentos que tiver, como "
                f"{area.document_examples}."
            )
    else:
        parts.append(
            "Um advogado vai analisar o seu relato para identificar a área e o próximo passo."
        )
    parts.append("Vou encaminhar o seu caso para a triagem agora.")
    return parts


def compose_reply(conversation: ConversationState, analysis: CaseAnalysis) -> str:
    """The interviewer's whole next reply (what `stream_reply` sends in chunks)."""
    before_conv = _before_last_user_message(conversation)
    before = analyze(before_conv) if before_conv.messages else CaseAnalysis()
    first_turn = not any(m.role == "assistant" for m in conversation.messages)

    parts: list[str] = [OPENING] if first_turn else []
    if before.ready_for_triage:
        return " ".join([*parts, *_urgent_guidance(analysis, before), AFTER_TRIAGE])

    acknowledged = _acknowledgement(analysis, before, _last_user_text(conversation))
    # The closing thanks the client itself.
    if not acknowledged and not first_turn and not analysis.ready_for_triage:
        acknowledged = [NOTHING_NEW]
    parts += acknowledged
    parts += _urgent_guidance(analysis, before)

    if analysis.ready_for_triage:
        parts += _closing(analysis)
    elif analysis.next_topic is not None:
        parts.append(question_for(Topic(analysis.next_topic), analysis.area))
    else:
        # Everything was asked and the area is still unclear: ask differently, once.
        last_assistant = next(
            (m.content for m in reversed(conversation.messages) if m.role == "assistant"), ""
        )
        parts.append(AFTER_FALLBACK if FALLBACK_QUESTION in last_assistant else FALLBACK_QUESTION)
    return " ".join(parts)


class OfflineInterviewer:
    """`ReplyGenerator` that needs no network; the default.

    `chunk_delay_ms` pauses between chunks (never before the first) for a typing feel in a
    UI; 0 sends every chunk at once.
    """

    name = "offline"

    def __init__(self, *, chunk_delay_ms: int = 0, words_per_chunk: int = WORDS_PER_CHUNK):
        if chunk_delay_ms < 0 or words_per_chunk < 1:
            raise ValueError("chunk_delay_ms must be >= 0 and words_per_chunk >= 1")
        self.chunk_delay = chunk_delay_ms / 1000
        self.words_per_chunk = words_per_chunk

    async def stream_reply(
        self, conversation: ConversationState, analysis: CaseAnalysis
    ) -> AsyncIterator[str]:
        reply = compose_reply(conversation, analysis)
        for index, chunk in enumerate(split_chunks(reply, self.words_per_chunk)):
            if index and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            yield chunk

    async def aclose(self) -> None:
        """Nothing to release; present so every generator closes the same way."""
