"""What one client message says, found once per distinct message text.

The analysis runs on every reply over the whole conversation, and a compose step analyses the
conversation twice (before and after the last message). Scanning a message depends on nothing
but its text, so the result is cached per text (bounded LRU): each request pays for its new
message only. The cache holds derived data of messages, never session state, so replicas stay
interchangeable and a cold cache only costs time. Scans are immutable (tuples) because they
are shared between requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from backend.generators import lexicon
from backend.generators.areas import AREAS
from backend.generators.text import LOOKBACK_CHARS, Hit, Text, fold, word_count

# Only the start of a very long message is read: intake answers are short, and this bounds the
# work done on the request path whatever a client pastes.
MAX_MESSAGE_CHARS = 4_000
SCAN_CACHE_SIZE = 4_096
_SENTENCE_BREAK = re.compile(r"[.!?\n]")
_TODAY = re.compile(r"\bhoje\b")
# Signals that become urgent when the date is near ("a audiência é amanhã").
_SOON_KINDS = {"audiencia", "prazo", "despejo", "criancas"}
_ALTA = lexicon.LEVEL_RANK["alta"]


@dataclass(frozen=True)
class UrgencyHit:
    kind: str
    rank: int
    reason: str


@dataclass(frozen=True)
class MessageScan:
    text: Text
    # Aligned with `areas.AREAS` and each area's `sub_areas`: hit counts.
    general_hits: tuple[int, ...]
    sub_hits: tuple[tuple[int, ...], ...]
    urgency: tuple[UrgencyHit, ...]
    # Spoke about a deadline, hearing or risk, even to deny it ("não tenho audiência").
    urgency_mentioned: bool
    # Holds a specific phrase (a sub-area or a live urgency signal): a story, not a greeting.
    specific: bool
    when: str | None
    parties: tuple[str, ...]
    documents: tuple[str, ...]
    no_documents: bool
    amounts: tuple[str, ...]
    words: int


def _sentence_split(text: Text, hit: Hit) -> tuple[str, str]:
    """The folded sentence holding the hit, split into (before the hit, from the hit on)."""
    folded = text.folded
    start = max(0, hit.start - LOOKBACK_CHARS)
    for brk in _SENTENCE_BREAK.finditer(folded, start, hit.start):
        start = brk.end()
    end_match = _SENTENCE_BREAK.search(folded, hit.end)
    end = end_match.start() if end_match else len(folded)
    return folded[start : hit.start], folded[hit.start : end]


def _urgency(text: Text) -> tuple[tuple[UrgencyHit, ...], bool]:
    best: dict[str, UrgencyHit] = {}
    mentioned = False
    for signal in lexicon.URGENCY_SIGNALS:
        for hit in text.finditer(signal.pattern):
            # Lost wages or a negative credit record do not answer "is there a deadline?".
            if lexicon.LEVEL_RANK[signal.level] >= _ALTA:
                mentioned = True
            if signal.negatable and text.is_negated(hit):
                continue
            before, after = _sentence_split(text, hit)
            sentence = before + after
            escalated = bool(
                (
                    signal.escalate
                    and signal.escalate.search(sentence)
                    and (signal.escalate_with is None or signal.escalate_with.search(sentence))
                )
                or (
                    signal.kind in _SOON_KINDS
                    # "hoje" only counts after the signal: "a audiência é hoje", not "hoje
                    # recebi uma intimação".
                    and (lexicon.NEAR_DATE.search(sentence) or _TODAY.search(after))
                )
            )
            rank = lexicon.LEVEL_RANK["urgente" if escalated else signal.level]
            if signal.fades and lexicon.PAST_EVENT.search(sentence):
                rank = min(rank, _ALTA)
            reason = (signal.urgent_reason or signal.reason) if escalated else signal.reason
            if signal.kind not in best or rank > best[signal.kind].rank:
                best[signal.kind] = UrgencyHit(signal.kind, rank, reason)
    return tuple(best.values()), mentioned


def _when(text: Text) -> str | None:
    for hit in text.finditer(lexicon.WHEN):
        if not lexicon.FUTURE_CONTEXT.search(text.clause_around(hit)):
            return hit.original
    return None


_PARTY_PATTERNS = [(re.compile(r"\b(?:" + p + ")"), label) for p, label in lexicon.PARTIES]
_DOCUMENT_PATTERNS = [(re.compile(r"\b(?:" + p + ")"), label) for p, label in lexicon.DOCUMENTS]


def _parties(text: Text) -> tuple[str, ...]:
    found = sorted(
        (hit.start, label) for pattern, label in _PARTY_PATTERNS for hit in text.finditer(pattern)
    )
    named = [m.group(0) for m in lexicon.NAMED_PARTY.finditer(text.original)]
    # "empresa Alfa Ltda" already says "empresa".
    generic = [
        label for _, label in found if not any(fold(n).startswith(fold(label)) for n in named)
    ]
    return tuple(dict.fromkeys(named + generic))


def _documents(text: Text) -> tuple[str, ...]:
    found = sorted(
        (hit.start, label)
        for pattern, label in _DOCUMENT_PATTERNS
        for hit in text.finditer(pattern)
        if not text.is_negated(hit)
    )
    return tuple(dict.fromkeys(label for _, label in found))


def _without_false_friends(text: Text) -> Text:
    """`text` with the phrases of `lexicon.FALSE_FRIENDS` blanked (offsets kept)."""
    folded = text.folded
    for pattern in lexicon.FALSE_FRIENDS:
        for m in pattern.finditer(folded):
            start, end = m.span("w") if "w" in pattern.groupindex else m.span()
            folded = folded[:start] + " " * (end - start) + folded[end:]
    return Text(text.original, folded)


@lru_cache(maxsize=SCAN_CACHE_SIZE)
def scan_message(content: str) -> MessageScan:
    text = Text.of(content[:MAX_MESSAGE_CHARS])
    # Areas and urgency read the words in their meaning here; facts read the text as written.
    signals = _without_false_friends(text)
    folded = signals.folded
    sub_hits = tuple(
        tuple(len(sub.pattern.findall(folded)) for sub in area.sub_areas) for area in AREAS
    )
    urgency, mentioned = _urgency(signals)
    return MessageScan(
        text=text,
        general_hits=tuple(len(area.general.findall(folded)) for area in AREAS),
        sub_hits=sub_hits,
        urgency=urgency,
        urgency_mentioned=mentioned,
        specific=any(any(area) for area in sub_hits) or bool(urgency),
        when=_when(text),
        parties=_parties(text),
        documents=_documents(text),
        no_documents=text.search(lexicon.NO_DOCUMENTS) is not None,
        amounts=tuple(
            dict.fromkeys(m.group(0).strip() for m in lexicon.AMOUNT.finditer(text.original))
        ),
        words=word_count(folded),
    )
