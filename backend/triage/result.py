"""Turn a conversation and its analysis into a validated `TriageResult`.

Deterministic and offline like the analysis. It always returns a valid result, even for a
thin interview (area unknown, nothing dated): the gaps go into `missing_information` and pull
`confidence` down, so the lawyer reading the triage sees what to ask first.

Confidence says how much of the triage rests on what the client actually said:

    0.50 x (client topics answered / 5)        what happened, when, who, urgency, documents
  + 0.25 if the area was recognised
  + 0.10 if the area signals agree             no second area with real weight
  + 0.10 if a sub-area was recognised          a specific phrase, not only general words

bounded to [0.05, 0.95], and never above 0.80 while any of the five topics is unanswered
(never told, or asked twice and recorded as "não informado"): a triage with gaps is never
presented as near-certain.
"""

from __future__ import annotations

from backend.generators.analysis import FACT_LIMIT, NOT_INFORMED, URGENCY_LABELS, area_label
from backend.generators.areas import AREAS_BY_KEY
from backend.generators.base import CaseAnalysis, Complexity, TriageResult
from backend.generators.questions import Topic
from backend.generators.text import shorten
from backend.state.schemas import ConversationState

UNKNOWN_AREA = "indefinida"

# How soon a lawyer should see the client, by urgency.
_WHEN_BY_URGENCY = {
    "urgente": "imediatamente (hoje)",
    "alta": "em até 48h",
    "media": "em até 7 dias",
    "baixa": "em até 15 dias",
}

# The topics the client answers (the area is inferred from their words, weighed apart).
CLIENT_TOPICS = (Topic.FATO, Topic.QUANDO, Topic.PARTES, Topic.URGENCIA, Topic.DOCUMENTOS)
TOPICS_WEIGHT = 0.50
AREA_WEIGHT = 0.25
AGREEMENT_WEIGHT = 0.10
SUB_AREA_WEIGHT = 0.10
MIN_CONFIDENCE = 0.05
MAX_CONFIDENCE = 0.95
# The ceiling while any client topic is unanswered.
GAPS_CEILING = 0.80


def _complexity(analysis: CaseAnalysis) -> Complexity:
    """More areas, more parties, money at stake or an inherently heavy matter: more work."""
    points = len(analysis.secondary_areas)
    if len(analysis.parties) >= 3:
        points += 1
    if analysis.amounts:
        points += 1
    if analysis.urgency == "urgente":
        points += 1
    area = AREAS_BY_KEY.get(analysis.area or "")
    if area is not None and analysis.sub_area in area.complex_sub_areas:
        points += 1
    if points >= 3:
        return "alta"
    return "media" if points >= 1 else "baixa"


def confidence(analysis: CaseAnalysis) -> float:
    """How much of the triage rests on what the client said (see the module docstring)."""
    answered = [t for t in CLIENT_TOPICS if t.value in analysis.answered_topics]
    score = TOPICS_WEIGHT * len(answered) / len(CLIENT_TOPICS)
    if analysis.area:
        score += AREA_WEIGHT
        # One clear area is surer than a case that also looks like another area.
        if not analysis.secondary_areas:
            score += AGREEMENT_WEIGHT
        if analysis.sub_area:
            score += SUB_AREA_WEIGHT
    ceiling = MAX_CONFIDENCE if len(answered) == len(CLIENT_TOPICS) else GAPS_CEILING
    return round(min(max(score, MIN_CONFIDENCE), ceiling), 2)


def _summary(conversation: ConversationState, analysis: CaseAnalysis) -> str:
    facts = analysis.facts
    parts: list[str] = []
    label = area_label(analysis.area)
    if label:
        kind = f"{label} ({analysis.sub_area})" if analysis.sub_area else label
        parts.append(f"Caso de {kind}.")
    else:
        parts.append("Área do direito ainda não identificada.")
    story = facts.get("o_que_aconteceu") or _first_words(conversation)
    if story:
        parts.append(f'Relato do cliente: "{story}".')
    if "quando" in facts:
        parts.append(f"Quando: {facts['quando']}.")
    if "partes" in facts:
        parts.append(f"Partes envolvidas: {facts['partes']}.")
    if "valores" in facts:
        parts.append(f"Valores mencionados: {facts['valores']}.")
    if "documentos" in facts:
        parts.append(f"Documentos: {facts['documentos']}.")
    if Topic.URGENCIA.value in analysis.unanswered_topics:
        parts.append(f"Prazos e audiências: {NOT_INFORMED}.")
    parts.append(f"Urgência {URGENCY_LABELS[analysis.urgency]}: {analysis.urgency_reason}")
    return " ".join(parts)


def _first_words(conversation: ConversationState) -> str | None:
    """The client's first message, when the analysis found no story (a thin interview)."""
    first = next((m.content for m in conversation.messages if m.role == "user"), None)
    return shorten(first, FACT_LIMIT) if first and first.strip() else None


def _next_step(analysis: CaseAnalysis) -> str:
    if analysis.area not in AREAS_BY_KEY:
        return (
            "Agendar conversa com advogado generalista "
            f"{_WHEN_BY_URGENCY[analysis.urgency]} para identificar a área do caso"
        )
    area = AREAS_BY_KEY[analysis.area]
    if "prisao" in analysis.urgency_signals:
        step = (
            "Acionar imediatamente advogado criminalista ou a Defensoria Pública para "
            "acompanhar a audiência de custódia"
        )
    elif "violencia" in analysis.urgency_signals:
        step = (
            "Orientar o pedido imediato de medida protetiva (delegacia ou Defensoria Pública) "
            "e agendar atendimento com advogado hoje"
        )
    elif analysis.urgency == "urgente":
        step = f"Encaminhar imediatamente a {area.lawyer} (atendimento hoje)"
    else:
        step = f"Agendar consulta com {area.lawyer} {_WHEN_BY_URGENCY[analysis.urgency]}"
    if Topic.DOCUMENTOS.value in analysis.missing_topics:
        step += f"; pedir ao cliente que reúna {area.document_examples}"
    return step


def build_triage_result(conversation: ConversationState, analysis: CaseAnalysis) -> TriageResult:
    """A validated triage for the conversation, whatever the interview established."""
    return TriageResult(
        area=analysis.area or UNKNOWN_AREA,
        sub_area=analysis.sub_area,
        urgency=analysis.urgency,
        urgency_reason=analysis.urgency_reason or "Urgência não avaliada.",
        complexity=_complexity(analysis),
        summary=_summary(conversation, analysis),
        missing_information=list(analysis.missing),
        recommended_next_step=_next_step(analysis),
        confidence=confidence(analysis),
    )
