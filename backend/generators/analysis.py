"""Deterministic, offline case analysis of an intake conversation.

`analyze(conversation)` reads the client's messages (never the interviewer's, except to know
which question a message answers) and returns a `CaseAnalysis`: area and sub-area of law,
urgency with its reason, the facts told so far, what is still missing and whether the
interview holds enough to triage. Same conversation in, same analysis out: no clock, no
randomness, no network. It runs for every reply, whatever generator writes the reply, so the
orchestrator's decisions never depend on an LLM's mood.

Readiness rule (`ready_for_triage`), first match wins:

1. the area is known and the client has told what happened, when, who is on the other side,
   whether there is any deadline/hearing/other urgency (a signal found, or any answer to the
   question about it, "não" included) and which documents they have (any answer, "nenhum"
   included) — every topic of the interview is settled;
2. the urgency is "urgente" and the area is known: a lawyer must act now, so the interview
   stops asking and the triage goes out with what is known;
3. the client has written `max_user_turns` messages (default 6): the interview never drags on;
   the triage goes out with its gaps listed and a lower confidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from backend.generators import lexicon
from backend.generators.areas import AREAS, AREAS_BY_KEY, GENERAL_WEIGHT, SUB_AREA_WEIGHT
from backend.generators.base import CaseAnalysis, Urgency
from backend.generators.questions import MISSING_LABELS, TOPIC_ORDER, Topic, asked_topic
from backend.generators.scan import MessageScan, scan_message
from backend.generators.text import shorten
from backend.state.schemas import ConversationState

MAX_USER_TURNS = 6
# A message without any specific phrase is taken as the story only when it is this long;
# "Oi, preciso de ajuda com um problema no trabalho" is not yet a story.
STORY_MIN_WORDS = 12
FACT_LIMIT = 300
URGENCY_LABELS = {"baixa": "baixa", "media": "média", "alta": "alta", "urgente": "urgente"}
ANSWER_LIMIT = 120
NO_DOCUMENTS_FACT = "nenhum documento informado"
# A reply that starts by denying ("não", "nenhum", "nada") has nothing to list.
_DENIAL = re.compile(r"\s*(nao|nenhum|nenhuma|nada|sem)\b")
# Index = rank in `lexicon.LEVEL_RANK`.
_LEVELS: tuple[Urgency, ...] = ("baixa", "media", "alta", "urgente")


@dataclass(frozen=True)
class Turn:
    """One client message and the topic of the interviewer question it replies to."""

    scan: MessageScan
    replies_to: Topic | None


# The interviewer's messages repeat across requests too; which topic one asks is cached.
_asked_topic = lru_cache(maxsize=4_096)(asked_topic)


def client_turns(conversation: ConversationState) -> list[Turn]:
    turns: list[Turn] = []
    last_question: Topic | None = None
    for message in conversation.messages:
        if message.role == "assistant":
            last_question = _asked_topic(message.content)
        elif message.role == "user" and message.content.strip():
            turns.append(Turn(scan_message(message.content), last_question))
            # Only the first message after a question answers it.
            last_question = None
    return turns


@dataclass
class _Areas:
    area: str | None = None
    sub_area: str | None = None
    secondary: list[str] = field(default_factory=list)


# The client's own account (the story, an answer to "what is the problem?") says what the
# case is about; an answer to a narrower question mentions things on the side ("tá difícil
# pagar o aluguel" when asked about deadlines in a wages case), so it counts half as much.
_ACCOUNT_TOPICS = (None, Topic.FATO, Topic.AREA)
ACCOUNT_WEIGHT = 2
ANSWER_WEIGHT = 1


def _turn_weight(turn: Turn) -> int:
    return ACCOUNT_WEIGHT if turn.replies_to in _ACCOUNT_TOPICS else ANSWER_WEIGHT


def _score_areas(turns: list[Turn]) -> _Areas:
    scores: list[int] = []
    sub_scores: list[list[int]] = []
    weights = [_turn_weight(t) for t in turns]
    for i, area in enumerate(AREAS):
        general = sum(t.scan.general_hits[i] * w for t, w in zip(turns, weights, strict=True))
        subs = [
            sum(t.scan.sub_hits[i][j] * w for t, w in zip(turns, weights, strict=True))
            for j in range(len(area.sub_areas))
        ]
        scores.append(general * GENERAL_WEIGHT + sum(subs) * SUB_AREA_WEIGHT)
        sub_scores.append(subs)
    result = _Areas()
    # Ties go to the area (and sub-area) listed first: `index(max)` finds the first maximum.
    top = max(scores)
    if top == 0:
        return result
    best = scores.index(top)
    result.area = AREAS[best].key
    subs = sub_scores[best]
    if subs and max(subs) > 0:
        result.sub_area = AREAS[best].sub_areas[subs.index(max(subs))].label
    # Another area counts only with real weight, not one stray word ("empresa", "filho").
    result.secondary = [
        AREAS[i].key
        for i, score in enumerate(scores)
        if i != best and score >= 2 and score * 2 >= top
    ]
    return result


@dataclass
class _Urgency:
    level: Urgency = "baixa"
    reason: str = lexicon.DEFAULT_URGENCY_REASON
    kinds: list[str] = field(default_factory=list)
    mentioned: bool = False


def _assess_urgency(turns: list[Turn]) -> _Urgency:
    found: dict[str, tuple[int, str]] = {}  # kind -> (rank, reason), the highest seen
    for turn in turns:
        for hit in turn.scan.urgency:
            if hit.kind not in found or hit.rank > found[hit.kind][0]:
                found[hit.kind] = (hit.rank, hit.reason)
    result = _Urgency(mentioned=any(t.scan.urgency_mentioned for t in turns))
    if not found:
        return result
    order = {s.kind: i for i, s in enumerate(lexicon.URGENCY_SIGNALS)}
    kinds = sorted(found, key=lambda k: (-found[k][0], order[k]))
    top_rank, result.reason = found[kinds[0]]
    result.level = _LEVELS[top_rank]
    result.kinds = kinds
    return result


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _story(turns: list[Turn]) -> str | None:
    for turn in turns:
        scan = turn.scan
        if turn.replies_to is Topic.FATO or scan.specific or scan.words >= STORY_MIN_WORDS:
            return shorten(scan.text.original, FACT_LIMIT)
    return None


def _when(turns: list[Turn]) -> str | None:
    for turn in turns:
        if turn.scan.when:
            return turn.scan.when
        if turn.replies_to is Topic.QUANDO:
            return shorten(turn.scan.text.original, ANSWER_LIMIT)
    return None


def _parties(turns: list[Turn]) -> list[str]:
    parties: list[str] = []
    for turn in turns:
        parties += turn.scan.parties
        if turn.replies_to is Topic.PARTES and not turn.scan.parties:
            parties.append(shorten(turn.scan.text.original, ANSWER_LIMIT))
    return _dedupe(parties)


def _documents(turns: list[Turn]) -> tuple[list[str], bool]:
    """Documents the client has (recognised, or their own words when answering the question
    about documents), and whether the client answered about documents at all."""
    documents: list[str] = []
    answered = False
    for turn in turns:
        scan = turn.scan
        documents += scan.documents
        if scan.no_documents:
            answered = True
        elif turn.replies_to is Topic.DOCUMENTOS:
            answered = True
            if not scan.documents and not _DENIAL.match(scan.text.folded):
                documents.append(shorten(scan.text.original, ANSWER_LIMIT))
    return _dedupe(documents), answered or bool(documents)


def analyze(
    conversation: ConversationState, *, max_user_turns: int = MAX_USER_TURNS
) -> CaseAnalysis:
    """What the interview has established so far (see the module docstring for the rule)."""
    turns = client_turns(conversation)
    areas = _score_areas(turns)
    urgency = _assess_urgency(turns)
    story = _story(turns)
    when = _when(turns)
    parties = _parties(turns)
    documents, documents_answered = _documents(turns)
    amounts = _dedupe(a for t in turns for a in t.scan.amounts)

    facts: dict[str, str] = {}
    if story:
        facts["o_que_aconteceu"] = story
    if when:
        facts["quando"] = when
    if parties:
        facts["partes"] = ", ".join(parties)
    if documents:
        facts["documentos"] = ", ".join(documents)
    elif documents_answered:
        facts["documentos"] = NO_DOCUMENTS_FACT
    if amounts:
        facts["valores"] = ", ".join(amounts)

    asked = {t.replies_to for t in turns if t.replies_to is not None}
    known = {
        Topic.FATO: story is not None,
        Topic.AREA: areas.area is not None,
        Topic.QUANDO: when is not None,
        Topic.PARTES: bool(parties),
        Topic.URGENCIA: urgency.mentioned or Topic.URGENCIA in asked,
        Topic.DOCUMENTOS: documents_answered,
    }
    missing = [t for t in TOPIC_ORDER if not known[t]]
    # A topic already asked and answered is never asked again, even if the answer did not
    # settle it (only the area can stay unknown that way).
    next_topic = next((t for t in missing if t not in asked), None)

    ready = (
        not missing
        or (urgency.level == "urgente" and areas.area is not None)
        or len(turns) >= max_user_turns
    )
    reason = urgency.reason[0].upper() + urgency.reason[1:] + "."
    return CaseAnalysis(
        area=areas.area,
        sub_area=areas.sub_area,
        urgency=urgency.level,
        urgency_reason=reason,
        facts=facts,
        missing=[MISSING_LABELS[t] for t in missing],
        ready_for_triage=ready,
        secondary_areas=areas.secondary,
        urgency_signals=urgency.kinds,
        parties=parties,
        documents=documents,
        amounts=amounts,
        missing_topics=[t.value for t in missing],
        answered_topics=[t.value for t in TOPIC_ORDER if known[t] or t in asked],
        next_topic=next_topic.value if next_topic else None,
        user_turns=len(turns),
    )


def area_label(area: str | None) -> str | None:
    """'direito trabalhista', 'direito do consumidor', ... for a known area key."""
    return f"direito {AREAS_BY_KEY[area].label}" if area in AREAS_BY_KEY else None
