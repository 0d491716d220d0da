"""Deterministic, offline case analysis of an intake conversation.

`analyze(conversation)` reads the client's messages (never the interviewer's, except to know
which question a message answers) and returns a `CaseAnalysis`: area and sub-area of law,
urgency with its reason, the facts told so far, what is still missing and whether the
interview holds enough to triage. Same conversation in, same analysis out: no clock, no
randomness, no network. It runs for every reply, whatever generator writes the reply, so the
orchestrator's decisions never depend on an LLM's mood.

Which message answers which question: a client message replies to the interviewer's question
right before it (`questions.asked_topic`), and counts as the answer only when it addresses
that topic (`answers.check_answer`): a worry, a question back, "não sei" or an unrelated
remark is not recorded as the fact. A topic whose question got no answer is asked once more
in other words (`reasking`); after a second miss it is recorded as "não informado"
(`unanswered_topics`) and the interview moves on. Facts hold the client's relevant words
only (the recognised date, names, documents), never a whole off-topic reply. Facts the
client volunteers (a date in the story) count wherever they appear.

Readiness rule (`ready_for_triage`), first match wins:

1. every topic is settled: the area is known (or "não informado") and the client has told
   (or twice not told) what happened, when, who is on the other side, whether there is any
   deadline/hearing/other urgency (a signal, or a clear "não") and which documents they have
   (a list, or a clear "não tenho");
2. the urgency is "urgente" and the area is known: a lawyer must act now, so the interview
   stops asking and the triage goes out with what is known;
3. neither the story nor the area could be obtained, each asked twice: a lawyer has to call
   the client, more questions would not help;
4. the client has written `max_user_turns` messages (default 8): the interview never drags on;
   the triage goes out with its gaps listed and a lower confidence.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from backend.generators import lexicon
from backend.generators.answers import Answer, check_answer, client_questions
from backend.generators.areas import AREAS, AREAS_BY_KEY, GENERAL_WEIGHT, SUB_AREA_WEIGHT
from backend.generators.base import CaseAnalysis, Urgency
from backend.generators.questions import MISSING_LABELS, TOPIC_ORDER, Topic, asked_topic
from backend.generators.scan import MessageScan, scan_message
from backend.generators.text import shorten
from backend.state.schemas import ConversationState

MAX_USER_TURNS = 8
# A message without any specific phrase is taken as the story only when it is this long;
# "Oi, preciso de ajuda com um problema no trabalho" is not yet a story.
STORY_MIN_WORDS = 12
FACT_LIMIT = 300
URGENCY_LABELS = {"baixa": "baixa", "media": "média", "alta": "alta", "urgente": "urgente"}
ANSWER_LIMIT = 120
NO_DOCUMENTS_FACT = "nenhum documento informado"
# What a topic asked twice without an answer is recorded as.
NOT_INFORMED = "não informado"
# A topic is asked at most this many times (the question, then once in other words).
MAX_ASKS = 2
# The fact each client topic is recorded under.
FACT_KEYS: dict[Topic, str] = {
    Topic.FATO: "o_que_aconteceu",
    Topic.QUANDO: "quando",
    Topic.PARTES: "partes",
    Topic.DOCUMENTOS: "documentos",
}
# Index = rank in `lexicon.LEVEL_RANK`.
_LEVELS: tuple[Urgency, ...] = ("baixa", "media", "alta", "urgente")


@dataclass(frozen=True)
class Turn:
    """One client message, the topic of the interviewer question it replies to and whether
    it answers it."""

    scan: MessageScan
    replies_to: Topic | None
    answer: Answer | None = None

    def answers(self, topic: Topic) -> bool:
        return self.replies_to is topic and self.answer is not None and self.answer.addresses

    def words_for(self, topic: Topic) -> str | None:
        """The reply's own words recorded for `topic` (a name, "só um áudio", "faz tempo")."""
        if self.answers(topic) and self.answer is not None and self.answer.words:
            return shorten(self.answer.words, ANSWER_LIMIT)
        return None


# The interviewer's messages repeat across requests too; which topic one asks is cached.
_asked_topic = lru_cache(maxsize=4_096)(asked_topic)


def _turns(transcript: Iterable[tuple[str, str]]) -> list[Turn]:
    turns: list[Turn] = []
    last_question: Topic | None = None
    for role, content in transcript:
        if role == "assistant":
            last_question = _asked_topic(content)
        elif role == "user" and content.strip():
            answer = check_answer(last_question, content) if last_question else None
            turns.append(Turn(scan_message(content), last_question, answer))
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
        told = scan.specific or (
            scan.words >= STORY_MIN_WORDS and check_answer(Topic.FATO, scan.text.original).addresses
        )
        if turn.answers(Topic.FATO) or told:
            return shorten(scan.text.original, FACT_LIMIT)
    return None


def _when(turns: list[Turn]) -> str | None:
    for turn in turns:
        if turn.scan.when:
            return turn.scan.when
        words = turn.words_for(Topic.QUANDO)
        if words:
            return words
    return None


def _parties(turns: list[Turn]) -> list[str]:
    parties: list[str] = []
    for turn in turns:
        parties += turn.scan.parties
        words = turn.words_for(Topic.PARTES)
        if words and not turn.scan.parties:
            parties.append(words)
    return _dedupe(parties)


def _documents(turns: list[Turn]) -> tuple[list[str], bool]:
    """Documents the client has (recognised, or their own words when answering the question
    about documents), and whether the client answered about documents at all."""
    documents: list[str] = []
    answered = False
    for turn in turns:
        scan = turn.scan
        documents += scan.documents
        if scan.no_documents or turn.answers(Topic.DOCUMENTOS):
            answered = True
            words = turn.words_for(Topic.DOCUMENTOS)
            if words and not scan.documents:
                documents.append(words)
    return _dedupe(documents), answered or bool(documents)


def _misses(turns: list[Turn]) -> dict[Topic, int]:
    """How many replies to each topic's question did not answer it."""
    misses = dict.fromkeys(TOPIC_ORDER, 0)
    for turn in turns:
        if turn.replies_to is not None and not turn.answers(turn.replies_to):
            misses[turn.replies_to] += 1
    return misses


# Analyses of the latest conversations, by a digest of what they read (see `analyze`). Keyed
# by the digest, not the transcript: a key holding the texts could keep up to
# MAX_CONVERSATION_HISTORY x max_message_chars characters alive per entry (~800 MB at worst).
ANALYSIS_CACHE_SIZE = 2_048
_Transcript = tuple[tuple[str, str], ...]
_analyses: OrderedDict[tuple[bytes, int], CaseAnalysis] = OrderedDict()
_analyses_lock = threading.Lock()


def analyze(
    conversation: ConversationState, *, max_user_turns: int = MAX_USER_TURNS
) -> CaseAnalysis:
    """What the interview has established so far (see the module docstring for the rule).

    A pure function of the messages' roles and texts, so it is cached by them: each reply
    analyses the conversation twice (the case assessment, and the offline interviewer's view of
    it before the client's last message, which the previous reply had analysed). The result is
    shared: read it, never change it in place (`model_copy(update=...)` for a variant).
    """
    transcript = tuple((m.role, m.content) for m in conversation.messages)
    key = (_digest(transcript), max_user_turns)
    with _analyses_lock:
        found = _analyses.get(key)
        if found is not None:
            _analyses.move_to_end(key)
            return found
    result = _analyze(transcript, max_user_turns)
    with _analyses_lock:
        _analyses[key] = result
        while len(_analyses) > ANALYSIS_CACHE_SIZE:
            _analyses.popitem(last=False)
    return result


def _digest(transcript: _Transcript) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for role, content in transcript:
        for text in (role, content):
            data = text.encode()
            digest.update(len(data).to_bytes(8, "big"))  # length-prefixed: no two split alike
            digest.update(data)
    return digest.digest()


def _analyze(transcript: _Transcript, max_user_turns: int) -> CaseAnalysis:
    turns = _turns(transcript)
    areas = _score_areas(turns)
    urgency = _assess_urgency(turns)
    story = _story(turns)
    when = _when(turns)
    parties = _parties(turns)
    documents, documents_answered = _documents(turns)
    amounts = _dedupe(a for t in turns for a in t.scan.amounts)

    known = {
        Topic.FATO: story is not None,
        Topic.AREA: areas.area is not None,
        Topic.QUANDO: when is not None,
        Topic.PARTES: bool(parties),
        # A deadline named in a reply that did not answer the question about it ("não sei se
        # tem prazo") does not settle it.
        Topic.URGENCIA: any(
            t.answers(Topic.URGENCIA)
            or (t.scan.urgency_mentioned and t.replies_to is not Topic.URGENCIA)
            for t in turns
        ),
        Topic.DOCUMENTOS: documents_answered,
    }
    misses = _misses(turns)
    missing = [t for t in TOPIC_ORDER if not known[t]]
    unanswered = [t for t in missing if misses[t] >= MAX_ASKS]
    next_topic = next((t for t in missing if t not in unanswered), None)

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
    for topic in unanswered:
        if topic in FACT_KEYS:
            facts[FACT_KEYS[topic]] = NOT_INFORMED

    ready = (
        next_topic is None
        or (urgency.level == "urgente" and areas.area is not None)
        or {Topic.FATO, Topic.AREA} <= set(unanswered)
        or len(turns) >= max_user_turns
    )
    last = turns[-1] if turns else None
    # Set only when the last message replied to a question without answering it.
    evasion = last.answer.evasion if last is not None and last.answer is not None else None
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
        answered_topics=[t.value for t in TOPIC_ORDER if known[t]],
        unanswered_topics=[t.value for t in unanswered],
        next_topic=next_topic.value if next_topic else None,
        reasking=next_topic is not None and misses[next_topic] > 0,
        user_turns=len(turns),
        last_reply_topic=last.replies_to.value if last and last.replies_to else None,
        last_reply_evasion=evasion.value if evasion else None,
        client_questions=[q.value for q in client_questions(last.scan.text.original)]
        if last
        else [],
    )


def area_label(area: str | None) -> str | None:
    """'direito trabalhista', 'direito do consumidor', ... for a known area key."""
    return f"direito {AREAS_BY_KEY[area].label}" if area in AREAS_BY_KEY else None
