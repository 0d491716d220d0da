"""The built-in interviewer: deterministic Brazilian-Portuguese replies, no network.

Each reply (1) greets on the first turn, (2) acknowledges what the client's last message added
(the area once it is recognised, a date, the parties, documents) or, when it did not answer
the question it followed, acknowledges that (a worry, a "não sei") and says when a topic is
left as "não informado", (3) answers what the client asked (next steps, time, cost,
confidentiality, documents), (4) for a high or urgent case gives a concrete orientation
(hearing, arrest, eviction, health, violence...), and (5) asks the one most important
question still open — in other words when it is asked the second time — or, once the analysis
says the interview holds enough, closes with what happens next.

After the triage the conversation goes on: questions get the same useful answers (with the
triage's next step), and new facts are acknowledged; when they change the area or the urgency
the client is told that the triage was updated (the orchestrator re-issues it).

"What the last message added" is the difference between the analysis of the whole
conversation and that of the conversation before the last client message; both are pure
functions of the messages, so the same conversation always gets the same reply.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from backend.generators.analysis import (
    ANSWER_LIMIT,
    NO_DOCUMENTS_FACT,
    NOT_INFORMED,
    analyze,
    area_label,
)
from backend.generators.answers import ClientQuestion, Evasion, worried
from backend.generators.areas import AREAS_BY_KEY
from backend.generators.base import CaseAnalysis
from backend.generators.lexicon import DOCUMENT_ANY, LEVEL_RANK, PARTY_ANY, WHEN
from backend.generators.questions import GUIDANCE, Topic, question_for, reask_for
from backend.generators.text import fold, join_pt, shorten
from backend.state.schemas import ConversationState

WORDS_PER_CHUNK = 3

OPENING = (
    "Olá! Sou o assistente virtual de triagem jurídica. Vou fazer algumas perguntas rápidas "
    "para entender o seu caso e encaminhá-lo ao advogado certo."
)
NOTHING_NEW = "Obrigado pela resposta."
AFTER_TRIAGE = (
    "Obrigado, anotei essa informação no seu caso. A triagem já foi encaminhada; se quiser "
    "acrescentar mais algum detalhe, é só escrever."
)
TRIAGE_UPDATED = (
    "Atualizei a triagem do seu caso com essa informação, e o advogado vai receber a versão "
    "atualizada."
)
_CLIENT_WHEN = {
    "urgente": "o quanto antes, ainda hoje",
    "alta": "nas próximas 48 horas",
    "media": "nos próximos dias",
    "baixa": "nas próximas semanas",
}
# How a topic is named when telling the client it stays "não informado".
_TOPIC_NAMES = {
    Topic.FATO: "o relato do que aconteceu",
    Topic.AREA: "o tipo de problema",
    Topic.QUANDO: "a data",
    Topic.PARTES: "quem está envolvido",
    Topic.URGENCIA: "os prazos e audiências",
    Topic.DOCUMENTOS: "os documentos",
}
WORRY_REPLY = (
    "Entendo a sua preocupação, é natural se sentir assim. Vou organizar as informações para "
    "que um advogado possa orientar você."
)
_EVASION_REPLIES = {
    Evasion.UNKNOWN: "Sem problema se você não souber com certeza.",
    Evasion.CONFUSED: "Desculpe, vou explicar melhor.",
    Evasion.OFF_TOPIC: "Obrigado, isso também fica registrado.",
}
CONFIDENTIALITY_REPLY = (
    "O que você conta aqui é confidencial: fica registrado só para a triagem do seu caso, é "
    "lido apenas pela equipe jurídica que vai atender você e é protegido pelo sigilo "
    "profissional do advogado e pela LGPD. A outra parte não é avisada por nós."
)
COST_REPLY = (
    "Esta triagem não tem custo. Os honorários do advogado são combinados com você antes de "
    "qualquer trabalho; se você não puder pagar, a Defensoria Pública atende de graça quem "
    "tem baixa renda."
)
OTHER_QUESTION_REPLY = (
    "Essa pergunta o advogado que vai analisar o seu caso responde melhor: ela fica registrada "
    "aqui na conversa para ele."
)
_GENERIC_DOCUMENTS = "contratos, comprovantes, mensagens, e-mails ou fotos"


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
        if not value or value == before.facts.get(key) or value == NOT_INFORMED:
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


def _missed_answer(now: CaseAnalysis, before: CaseAnalysis, last_reply: str) -> list[str]:
    """Empathy for a worry; for a reply that did not answer its question, a word about it
    and, on the second miss, that the topic stays "não informado"."""
    parts = [WORRY_REPLY] if worried(last_reply) else []
    if now.last_reply_evasion is None or now.last_reply_topic is None:
        return parts
    evasion = Evasion(now.last_reply_evasion)
    if evasion in _EVASION_REPLIES and not (parts and evasion is Evasion.OFF_TOPIC):
        parts.append(_EVASION_REPLIES[evasion])
    topic = Topic(now.last_reply_topic)
    if topic.value in now.unanswered_topics and topic.value not in before.unanswered_topics:
        parts.append(
            f"Tudo bem, vou registrar esse ponto ({_TOPIC_NAMES[topic]}) como não informado; "
            "se lembrar depois, é só me dizer."
        )
    return parts


def _answers(now: CaseAnalysis, *, triaged: bool) -> list[str]:
    """Short, useful answers to what the client asked; never a promise about the outcome."""
    area = AREAS_BY_KEY.get(now.area or "")
    lawyer = area.lawyer if area else "advogado"
    documents = area.document_examples if area else _GENERIC_DOCUMENTS
    parts: list[str] = []
    for question in (ClientQuestion(q) for q in now.client_questions):
        if question is ClientQuestion.NEXT_STEPS and triaged:
            parts.append(
                f"O seu caso já foi encaminhado: o próximo passo é uma consulta com um {lawyer} "
                f"{_CLIENT_WHEN[now.urgency]}. Por aqui você não precisa fazer mais nada; "
                f"enquanto isso, vá separando {documents}, e se surgir algo novo, como uma "
                "audiência ou um prazo, escreva aqui."
            )
        elif question is ClientQuestion.NEXT_STEPS:
            parts.append(
                "Sobre o que fazer agora: primeiro termino algumas perguntas rápidas; com elas, "
                f"o seu caso vai para um {lawyer}, que vai orientar você sobre os próximos "
                "passos. Até lá, guarde tudo o que tiver sobre o caso e não assine nada nem "
                "faça acordo sem orientação."
            )
        elif question is ClientQuestion.TIME and triaged:
            parts.append(
                f"Pela urgência registrada, um advogado deve falar com você "
                f"{_CLIENT_WHEN[now.urgency]}. Quanto tempo o caso em si leva depende do "
                "caminho (acordo ou processo), e isso o advogado explica na consulta."
            )
        elif question is ClientQuestion.TIME:
            parts.append(
                "Faltam poucas perguntas. Depois, um advogado entra em contato conforme a "
                "urgência do caso: os urgentes, no mesmo dia."
            )
        elif question is ClientQuestion.COST:
            parts.append(COST_REPLY)
        elif question is ClientQuestion.CONFIDENTIALITY:
            parts.append(CONFIDENTIALITY_REPLY)
        elif question is ClientQuestion.DOCUMENTS:
            parts.append(
                f"Sobre documentos: separe o que tiver, por exemplo {documents}. Cópias, fotos "
                "ou prints servem para começar, e o advogado diz na consulta se falta algo."
            )
        else:
            parts.append(OTHER_QUESTION_REPLY)
    return parts


def _after_triage(now: CaseAnalysis, before: CaseAnalysis, last_reply: str) -> list[str]:
    """The conversation after the triage: new facts noted (and the triage updated when the
    area or urgency changed), questions answered."""
    parts = _acknowledgement(now, before, last_reply)
    parts += _urgent_guidance(now, before)
    if (now.area, now.urgency) != (before.area, before.urgency):
        parts.append(TRIAGE_UPDATED)
    if worried(last_reply):
        parts.append(WORRY_REPLY)
    parts += _answers(now, triaged=True)
    return parts or [AFTER_TRIAGE]


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
    unanswered = [_TOPIC_NAMES[Topic(t)] for t in now.unanswered_topics]
    if unanswered:
        parts.append(
            f"Ficaram sem resposta {join_pt(unanswered)}: o advogado confere isso com você na "
            "consulta."
        )
    parts.append("Vou encaminhar o seu caso para a triagem agora.")
    return parts


def compose_reply(conversation: ConversationState, analysis: CaseAnalysis) -> str:
    """The interviewer's whole next reply (what `stream_reply` sends in chunks)."""
    before_conv = _before_last_user_message(conversation)
    before = analyze(before_conv) if before_conv.messages else CaseAnalysis()
    first_turn = not any(m.role == "assistant" for m in conversation.messages)

    parts: list[str] = [OPENING] if first_turn else []
    last_reply = _last_user_text(conversation)
    if before.ready_for_triage:
        return " ".join([*parts, *_after_triage(analysis, before, last_reply)])

    acknowledged = _acknowledgement(analysis, before, last_reply)
    acknowledged += _missed_answer(analysis, before, last_reply)
    acknowledged += _answers(analysis, triaged=False)
    # The closing thanks the client itself.
    if not acknowledged and not first_turn and not analysis.ready_for_triage:
        acknowledged = [NOTHING_NEW]
    parts += acknowledged
    parts += _urgent_guidance(analysis, before)

    if analysis.ready_for_triage or analysis.next_topic is None:
        parts += _closing(analysis)
    else:
        topic = Topic(analysis.next_topic)
        ask = reask_for if analysis.reasking else question_for
        parts.append(ask(topic, analysis.area))
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
