"""Text helpers for matching Portuguese free text.

Clients write with and without accents, in any case ("Demissão", "demissao", "DEMISSAO"), so
every pattern is matched against a *folded* copy: lower case, accents stripped. Folding keeps
one character per original character, so a match's offsets also slice the original text and
what we show back ("12/03/2025", "ex-marido") keeps the client's own spelling.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

# Words that, right before a signal, mean the client is denying it ("não tenho audiência").
_NEGATION = re.compile(r"\b(nao|nem|nenhum|nenhuma|sem|nunca|jamais)\b")
# A clause ends at punctuation or a contrast/coordination that restarts the thought.
_CLAUSE_BREAK = re.compile(r"[.;:!?\n]|,|\b(mas|porem|e|pois|porque)\b")
_NEGATION_WINDOW_WORDS = 3
# How far back a clause or sentence is looked for: enough for any real clause, and it keeps
# the work per match constant however long the message is.
LOOKBACK_CHARS = 200


def fold_char(char: str) -> str:
    """One folded character per input character (so offsets stay aligned)."""
    decomposed = unicodedata.normalize("NFD", char)
    base = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return base[:1] if base else char


# Latin letters (with their accented forms) fold through one C-level `str.translate`; the
# rest of Unicode is left as is, which keeps one character per character.
_FOLD_TABLE = {code: fold_char(chr(code)) for code in range(0x250)}


def fold(text: str) -> str:
    """Lower case without accents, same length as `text`."""
    return text.translate(_FOLD_TABLE)


def compile_patterns(patterns: list[str] | tuple[str, ...]) -> re.Pattern[str]:
    """One alternation, anchored at word starts; patterns are written folded."""
    return re.compile(r"\b(?:" + "|".join(f"(?:{p})" for p in patterns) + r")")


@dataclass(frozen=True)
class Hit:
    """A pattern match in one message: the folded and the original spelling."""

    start: int
    end: int
    folded: str
    original: str


@dataclass(frozen=True)
class Text:
    """A message with its folded copy, matched once and sliced both ways."""

    original: str
    folded: str

    @classmethod
    def of(cls, original: str) -> Text:
        return cls(original, fold(original))

    def finditer(self, pattern: re.Pattern[str]) -> Iterator[Hit]:
        for m in pattern.finditer(self.folded):
            yield Hit(m.start(), m.end(), m.group(0), self.original[m.start() : m.end()])

    def search(self, pattern: re.Pattern[str]) -> Hit | None:
        return next(self.finditer(pattern), None)

    def clause_before(self, pos: int) -> str:
        """Folded text from the start of the clause holding `pos` up to `pos`."""
        head = self.folded[max(0, pos - LOOKBACK_CHARS) : pos]
        start = 0
        for brk in _CLAUSE_BREAK.finditer(head):
            start = brk.end()
        return head[start:]

    def clause_around(self, hit: Hit) -> str:
        """Folded text of the whole clause (sentence part) holding the hit."""
        head = self.clause_before(hit.start)
        tail_match = _CLAUSE_BREAK.search(self.folded, hit.end)
        tail = self.folded[hit.end : tail_match.start() if tail_match else len(self.folded)]
        return head + hit.folded + tail

    def is_negated(self, hit: Hit) -> bool:
        """A negation among the few words right before the hit, in the same clause."""
        words = self.clause_before(hit.start).split()[-_NEGATION_WINDOW_WORDS:]
        return any(_NEGATION.fullmatch(w) for w in words)


def word_count(text: str) -> int:
    return len(re.findall(r"\w+", text))


def shorten(text: str, limit: int) -> str:
    """Collapse whitespace and cut at a word boundary, marking the cut."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


def join_pt(items: list[str]) -> str:
    """'a', 'a e b', 'a, b e c' — a Portuguese enumeration."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " e " + items[-1]
