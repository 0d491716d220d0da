"""Deterministic, offline case analysis of an intake conversation.

`analyze(conversation)` reads the client's messages (never the interviewer's, except to know
which question a message answers) and returns a `CaseAnalysis`: area and sub-area of law,
urgency with its reason, the facts told so far, what is still missing and whether the
interview holds enough to triage. Same conversation in, same analysis out: no clock, no
randomness, no network. It runs for every reply, whatever generator writes the reply, so the
orchestrator's decisions never depend on an LLM's mood.

Readiness rule (`ready_for_triage`), first match wins:

1. the area is known and the client has told what happened, when, who is on the other side,
   and whether there is any deadline/hearing/other urgency (a signal found, or any answer to
   the question about it, "não" included); documents are asked for but not required — the
   triage lists them as missing;
2. the urgency is "urgente" and the area is known: a lawyer must act now, so the interview
   stops asking and the triage goes out with what is known;
3. the client has written `max_user_turns` messages (default 6): the interview never drags on;
   the triage goes out with its gaps listed and a lower confidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from backend.interviewer import lexicon
from backend.interviewer.areas import AREAS, AREAS_BY_KEY, GENERAL_WEIGHT, SUB_AREA_WEIGHT
from backend.interviewer.base import CaseAnalysis, Urgency
from backend.interviewer.questions import MISSING_LABELS, TOPIC_ORDER, Topic, asked_topic
from backend.interviewer.text import Hit, Text, fold, shorten, word_count
from backend.state.schemas import ConversationState

MAX_USER_TURNS = 6
# A message without any specific phrase is taken as the story only when it is this long;
# "Oi, preciso de ajuda com um problema no trabalho" is not yet a story.
STORY_MIN_WORDS = 12
FACT_LIMIT = 300
ANSWER_LIMIT = 120
_SENTENCE_BREAK = re.compile(r"[.!?\n]")
_TODAY = re.compile(r"\bhoje\b")
# Index = rank in `lexicon.LEVEL_RANK`.
_LEVELS: tuple[Urgency, ...] = ("baixa", "media", "alta", "urgente")


@dataclass(frozen=True)
class Turn:
    """One client message and the topic of the interviewer question it replies to."""

    text: Text
    replies_to: Topic | None


def user_turns(conversation: ConversationState) -> list[Turn]:
    turns: list[Turn] = []
    last_question: Topic | None = None
    for message in conversation.messages:
        if message.role == "assistant":
            last_question = asked_topic(message.content)
        elif message.role == "user" and message.content.strip():
            turns.append(Turn(Text.of(message.content), last_question))
            # Only the first message after a question answers it.
            last_question = None
    return turns


@dataclass
class _Areas:
    area: str | None = None
    sub_area: str | None = None
    secondary: list[str] = field(default_factory=list)


def _score_areas(turns: list[Turn]) -> _Areas:
    scores: dict[str, int] = {}
    sub_scores: dict[str, dict[str, int]] = {}
    for area in AREAS:
        general = sum(len(area.general.findall(t.text.folded)) for t in turns)
        subs = {
            sub.label: sum(len(sub.pattern.findall(t.text.folded)) for t in turns)
            for sub in area.sub_areas
        }
        scores[area.key] = general * GENERAL_WEIGHT + sum(subs.values()) * SUB_AREA_WEIGHT
        sub_scores[area.key] = subs
    result = _Areas()
    # Ties go to the area listed first in `AREAS` (max keeps the first maximum).
    best = max(scores, key=lambda k: scores[k])
    if scores[best] == 0:
        return result
    result.area = best
    subs = sub_scores[best]
    top_sub = max(subs, key=lambda s: subs[s], default=None)
    if top_sub is not None and subs[top_sub] > 0:
        result.sub_area = top_sub
    # Another area counts only with real weight, not one stray word ("empresa", "filho").
    result.secondary = [
        key
        for key, score in scores.items()
        if key != best and score >= 2 and score * 2 >= scores[best]
    ]
    return result


def _sentence_after(text: Text, hit: Hit) -> tuple[str, str]:
    """The folded sentence holding the hit, split into (before the hit, from the hit on)."""
    folded = text.folded
    start = 0
    for brk in _SENTENCE_BREAK.finditer(folded, 0, hit.start):
        start = brk.end()
    end_match = _SENTENCE_BREAK.search(folded, hit.end)
    end = end_match.start() if end_match else len(folded)
    return folded[start : hit.start], folded[hit.start : end]


@dataclass
class _Urgency:
    level: Urgency = "baixa"
    reason: str = lexicon.DEFAULT_URGENCY_REASON
    kinds: list[str] = field(default_factory=list)
    mentioned: bool = False


def _assess_urgency(turns: list[Turn]) -> _Urgency:
    found: dict[str, tuple[int, str]] = {}  # kind -> (rank, reason)
    mentioned = False
    for turn in turns:
        for signal in lexicon.URGENCY_SIGNALS:
            for hit in turn.text.finditer(signal.pattern):
                # Talking about a deadline, hearing or risk, even to deny it ("não tenho
                # audiência"), answers the urgency question; lost wages do not.
                if lexicon.LEVEL_RANK[signal.level] >= lexicon.LEVEL_RANK["alta"]:
                    mentioned = True
                if signal.negatable and turn.text.is_negated(hit):
                    continue
                before, after = _sentence_after(turn.text, hit)
                sentence = before + after
                escalated = bool(
                    (signal.escalate and signal.escalate.search(sentence))
                    or (
                        signal.kind in {"audiencia", "prazo", "despejo"}
                        and (lexicon.NEAR_DATE.search(sentence) or _TODAY.search(after))
                    )
                )
                level = "urgente" if escalated else signal.level
                reason = (signal.urgent_reason or signal.reason) if escalated else signal.reason
                rank = lexicon.LEVEL_RANK[level]
                if signal.kind not in found or rank > found[signal.kind][0]:
                    found[signal.kind] = (rank, reason)
    result = _Urgency(mentioned=mentioned)
    if not found:
        return result
    order = {s.kind: i for i, s in enumerate(lexicon.URGENCY_SIGNALS)}
    kinds = sorted(found, key=lambda k: (-found[k][0], order[k]))
    top_rank, top_reason = found[kinds[0]]
    result.level = _LEVELS[top_rank]
    result.reason = top_reason
    result.kinds = kinds
    return result


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _story(turns: list[Turn]) -> str | None:
    for turn in turns:
        folded = turn.text.folded
        specific = any(s.pattern.search(folded) for a in AREAS for s in a.sub_areas) or any(
            not (s.negatable and turn.text.is_negated(hit))
            for s in lexicon.URGENCY_SIGNALS
            for hit in turn.text.finditer(s.pattern)
        )
        if turn.replies_to is Topic.FATO or specific or word_count(folded) >= STORY_MIN_WORDS:
            return shorten(turn.text.original, FACT_LIMIT)
    return None


def _when(turns: list[Turn]) -> str | None:
    for turn in turns:
        for hit in turn.text.finditer(lexicon.WHEN):
            if not lexicon.FUTURE_CONTEXT.search(turn.text.clause_around(hit)):
                return hit.original
        if turn.replies_to is Topic.QUANDO:
            return shorten(turn.text.original, ANSWER_LIMIT)
    return None


_PARTY_PATTERNS = [(re.compile(r"\b(?:" + p + ")"), label) for p, label in lexicon.PARTIES]
_DOCUMENT_PATTERNS = [(re.compile(r"\b(?:" + p + ")"), label) for p, label in lexicon.DOCUMENTS]


def _parties(turns: list[Turn]) -> list[str]:
    parties: list[str] = []
    for turn in turns:
        found = [
            (hit.start, label)
            for pattern, label in _PARTY_PATTERNS
            for hit in turn.text.finditer(pattern)
        ]
        named = [m.group(0) for m in lexicon.NAMED_PARTY.finditer(turn.text.original)]
        # "empresa Alfa Ltda" already says "empresa".
        generic = [
            label
            for _, label in sorted(found)
            if not any(fold(n).startswith(fold(label)) for n in named)
        ]
        parties += named + generic
        if turn.replies_to is Topic.PARTES and not found and not named:
            parties.append(shorten(turn.text.original, ANSWER_LIMIT))
    return _dedupe(parties)


def _documents(turns: list[Turn]) -> tuple[list[str], bool]:
    """Documents mentioned (not denied), and whether the client answered about documents."""
    documents: list[str] = []
    answered = False
    for turn in turns:
        if turn.text.search(lexicon.NO_DOCUMENTS):
            answered = True
        found = [
            (hit.start, label)
            for pattern, label in _DOCUMENT_PATTERNS
            for hit in turn.text.finditer(pattern)
            if not turn.text.is_negated(hit)
        ]
        documents += [label for _, label in sorted(found)]
        if turn.replies_to is Topic.DOCUMENTOS:
            answered = True
    return _dedupe(documents), answered or bool(documents)


def analyze(
    conversation: ConversationState, *, max_user_turns: int = MAX_USER_TURNS
) -> CaseAnalysis:
    """What the interview has established so far (see the module docstring for the rule)."""
    turns = user_turns(conversation)
    areas = _score_areas(turns)
    urgency = _assess_urgency(turns)
    story = _story(turns)
    when = _when(turns)
    parties = _parties(turns)
    documents, documents_answered = _documents(turns)
    amounts = _dedupe(
        m.group(0).strip() for t in turns for m in lexicon.AMOUNT.finditer(t.text.original)
    )

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
        facts["documentos"] = "nenhum documento informado"
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

    core = all(known[t] for t in (Topic.AREA, Topic.FATO, Topic.QUANDO, Topic.PARTES))
    ready = (
        (core and known[Topic.URGENCIA])
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
