"""`make eval` / `python -m bench.triage_eval`: how well the triage routes realistic intakes.

Plays every conversation of `bench/triage_corpus/*.yaml` through the public triage API of a
real replica (uvicorn process, its own PostgreSQL database, real Redis) and compares the
triage result with the labels a lawyer gave each case. The client side reads the
interviewer's question the way a person would (keywords of the question, not the server's
own code) and answers it from the case's per-topic answers, so the eval follows whatever
interview the server runs; an off-topic message labelled for a topic is sent as the first
reply to that question, before the real answer.

Prints each mismatch and four figures, against their targets:

* area accuracy: triage area == labelled area (target >= 95%);
* urgency accuracy, exact and within one level (baixa < media < alta < urgente; target for
  within one >= 95%);
* urgent-vs-not agreement: whether the case is "urgente" (a lawyer acts today), labelled vs
  triaged (target >= 98%);
* off-topic recorded as a fact: off-topic messages sent whose text ended up among the
  triage's facts, parties, documents or summary (target 0).

The figures depend only on the corpus and the code (the offline analysis is deterministic);
the run takes well under a minute. `--check` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop
import yaml

from backend.core.auth import create_token
from bench.common import bench_settings
from bench.replica import BenchReplica, own_database
from bench.sse_chat import purge

CORPUS_DIR = Path(__file__).resolve().parent / "triage_corpus"
AREAS = (
    "trabalhista",
    "consumidor",
    "familia",
    "previdenciario",
    "criminal",
    "civil",
    "tributario",
    "imobiliario",
)
LEVELS = ("baixa", "media", "alta", "urgente")
TOPICS = ("fato", "area", "quando", "partes", "urgencia", "documentos")
TARGETS = {"area": 0.95, "urgent_agreement": 0.98, "urgency_within_one": 0.95}
# A client stops answering after this many messages, triaged or not.
MAX_MESSAGES = 12
CONCURRENCY = 4
REPLY_TIMEOUT_SECONDS = 30.0
# What a client says when asked something the case has no (more) answer for.
NOTHING_MORE = "Não sei dizer mais do que isso."


def fold(text: str) -> str:
    """Lower case, no accents, one space between words."""
    stripped = "".join(
        c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)
    )
    return " ".join(stripped.lower().split())


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    urgency: str
    story: str
    opening: str | None = None
    answers: dict[str, str] = field(default_factory=dict)
    # topic -> off-topic messages sent as the first replies to that question.
    offtopic: dict[str, tuple[str, ...]] = field(default_factory=dict)
    note: str | None = None
    source: str = ""


_FIELDS = {"id", "area", "urgency", "story", "opening", "answers", "offtopic", "note"}


def _case(raw: dict[str, Any], source: str) -> Case:
    where = f"{source}: {raw.get('id', '?')}"
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    if raw.get("area") not in AREAS:
        raise ValueError(f"{where}: area must be one of {AREAS}")
    if raw.get("urgency") not in LEVELS:
        raise ValueError(f"{where}: urgency must be one of {LEVELS}")
    if not raw.get("story"):
        raise ValueError(f"{where}: a story is required")
    answers = raw.get("answers") or {}
    offtopic: dict[str, list[str]] = {}
    for item in raw.get("offtopic") or []:
        offtopic.setdefault(item["at"], []).append(item["text"])
    for topic in [*answers, *offtopic]:
        if topic not in TOPICS and not (topic == "first" and topic in offtopic):
            raise ValueError(f"{where}: unknown topic {topic!r}")
    return Case(
        id=raw["id"],
        area=raw["area"],
        urgency=raw["urgency"],
        story=raw["story"],
        opening=raw.get("opening"),
        answers=dict(answers),
        offtopic={t: tuple(texts) for t, texts in offtopic.items()},
        note=raw.get("note"),
        source=source,
    )


def load_corpus(directory: Path = CORPUS_DIR) -> list[Case]:
    cases: list[Case] = []
    for path in sorted(directory.glob("*.yaml")):
        for raw in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            cases.append(_case(raw, path.name))
    ids = [c.id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate case ids: {duplicates}")
    return cases


# How a client tells what the interviewer asked: keywords of its last question, checked in
# this order (the documents question lists "intimações" as an example; the urgency question
# lists "prisão" and "despejo").
_QUESTION_TOPICS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("documentos", re.compile(r"\b(documentos?|provas?)\b")),
    ("urgencia", re.compile(r"\b(prazos?|audiencias?|urgen\w*)\b")),
    ("quando", re.compile(r"\b(quando|data)\b")),
    ("partes", re.compile(r"\b(quem|empresa|envolvid\w*)\b")),
    ("area", re.compile(r"\b(tipo (do|de) (seu )?(caso|problema)|o problema envolve|resolver)\b")),
    ("fato", re.compile(r"\b(o que aconteceu|contar|conte|descrever|detalhe)\b")),
)
_QUESTION = re.compile(r"[^.!?]*\?")


def asked_topic(reply: str) -> str | None:
    """The topic of the interviewer's last question in `reply`, or None (no question)."""
    questions = _QUESTION.findall(fold(reply))
    if not questions:
        return None
    # The last question may be a list of examples ("Por exemplo: nota fiscal, ...?"): the
    # one before it then says what is asked.
    for question in reversed(questions[-2:]):
        for topic, pattern in _QUESTION_TOPICS:
            if pattern.search(question):
                return topic
    return "?"


@dataclass
class Script:
    """The client's side of one case: which message to send next."""

    case: Case
    sent_answers: set[str] = field(default_factory=set)
    sent_offtopic: list[str] = field(default_factory=list)
    pending_offtopic: dict[str, list[str]] = field(default_factory=dict)
    unanswerable: int = 0

    def __post_init__(self) -> None:
        self.pending_offtopic = {t: list(texts) for t, texts in self.case.offtopic.items()}

    def first_message(self) -> str:
        if self.case.opening:
            return self.case.opening
        self.sent_answers.add("fato")
        return self.case.story

    def reply_to(self, topic: str) -> str:
        slot = "first" if self.pending_offtopic.get("first") else topic
        if self.pending_offtopic.get(slot):
            text = self.pending_offtopic[slot].pop(0)
            self.sent_offtopic.append(text)
            return text
        answer = self.case.story if topic == "fato" else self.case.answers.get(topic)
        if answer is None or topic in self.sent_answers:
            self.unanswerable += 1
            return NOTHING_MORE
        self.sent_answers.add(topic)
        return answer


@dataclass
class Outcome:
    case: Case
    area: str | None
    urgency: str | None
    triaged: bool
    offtopic_sent: list[str]
    offtopic_recorded: list[str]
    unanswerable: int
    transcript: list[tuple[str, str]]
    error: str | None = None


def recorded_as_fact(text: str, status: dict[str, Any]) -> bool:
    """Whether an off-topic message shows up among what the triage holds as facts."""
    analysis = status.get("analysis") or {}
    result = status.get("triage_result") or {}
    values = [
        *(analysis.get("facts") or {}).values(),
        *(analysis.get("parties") or []),
        *(analysis.get("documents") or []),
    ]
    needle = fold(text).strip(" .!?…")
    folded = [fold(str(v)).strip(" .!?…") for v in values]
    # A short reply ("não sei") counts only as a whole value; a longer one anywhere, the
    # summary included (it repeats the facts).
    if len(needle) < 16:
        return needle in folded
    haystack = [*folded, fold(result.get("summary") or "")]
    return any(needle[:60].rstrip("…") in h for h in haystack)


class Client:
    """The public triage API, as one user."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}

    async def _ok(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    async def start(self, message: str) -> str:
        body = await self._ok(
            await self.http.post("/api/triage", json={"message": message}, headers=self.headers)
        )
        return str(body["session_id"])

    async def send(self, sid: str, message: str) -> None:
        await self._ok(
            await self.http.post(
                f"/api/triage/{sid}/messages", json={"message": message}, headers=self.headers
            )
        )

    async def settled(self, sid: str) -> dict[str, Any]:
        """The triage status once the interviewer's reply is complete."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLY_TIMEOUT_SECONDS
        while True:
            status = await self._ok(await self.http.get(f"/api/triage/{sid}", headers=self.headers))
            if not status["reply_pending"]:
                return status
            if loop.time() > deadline:
                raise RuntimeError("no reply within the timeout")
            await asyncio.sleep(0.05)

    async def last_reply(self, sid: str) -> str:
        history = await self._ok(
            await self.http.get(f"/api/conversations/sessions/{sid}", headers=self.headers)
        )
        replies = [m["content"] for m in history["messages"] if m["role"] == "assistant"]
        return str(replies[-1]) if replies else ""


async def play(client: Client, case: Case) -> Outcome:
    """Run one case to its triage (or to MAX_MESSAGES) and read the result."""
    script = Script(case)
    message = script.first_message()
    transcript: list[tuple[str, str]] = [("cliente", message)]
    sid = await client.start(message)
    status = await client.settled(sid)
    for _ in range(MAX_MESSAGES - 1):
        reply = await client.last_reply(sid)
        transcript.append(("triagem", reply))
        if status["stage"] == "triaged":
            break
        topic = asked_topic(reply)
        if topic is None:
            break
        message = script.reply_to(topic)
        transcript.append(("cliente", message))
        await client.send(sid, message)
        status = await client.settled(sid)
    result = status.get("triage_result") or {}
    analysis = status.get("analysis") or {}
    triaged = status["stage"] == "triaged"
    return Outcome(
        case=case,
        area=result.get("area") if triaged else analysis.get("area"),
        urgency=result.get("urgency") if triaged else analysis.get("urgency"),
        triaged=triaged,
        offtopic_sent=script.sent_offtopic,
        offtopic_recorded=[t for t in script.sent_offtopic if recorded_as_fact(t, status)],
        unanswerable=script.unanswerable,
        transcript=transcript,
    )


@dataclass(frozen=True)
class Figures:
    cases: int
    triaged: int
    area: float
    urgency_exact: float
    urgency_within_one: float
    urgent_agreement: float
    offtopic_sent: int
    offtopic_recorded: int
    errors: int


def _rank(level: str | None) -> int | None:
    return LEVELS.index(level) if level in LEVELS else None


def within_one(expected: str, got: str | None) -> bool:
    rank = _rank(got)
    return rank is not None and abs(rank - LEVELS.index(expected)) <= 1


def figures(outcomes: list[Outcome]) -> Figures:
    n = len(outcomes) or 1
    ok = [o for o in outcomes if o.error is None]

    def share(pred: Iterable[bool]) -> float:
        return sum(pred) / n

    return Figures(
        cases=len(outcomes),
        triaged=sum(o.triaged for o in ok),
        area=share(o.area == o.case.area for o in ok),
        urgency_exact=share(o.urgency == o.case.urgency for o in ok),
        urgency_within_one=share(within_one(o.case.urgency, o.urgency) for o in ok),
        urgent_agreement=share(
            (o.urgency == "urgente") == (o.case.urgency == "urgente") for o in ok
        ),
        offtopic_sent=sum(len(o.offtopic_sent) for o in ok),
        offtopic_recorded=sum(len(o.offtopic_recorded) for o in ok),
        errors=len(outcomes) - len(ok),
    )


def targets_met(f: Figures) -> bool:
    return (
        f.errors == 0
        and f.area >= TARGETS["area"]
        and f.urgent_agreement >= TARGETS["urgent_agreement"]
        and f.urgency_within_one >= TARGETS["urgency_within_one"]
        and f.offtopic_recorded == 0
    )


def report(outcomes: list[Outcome], *, transcripts: bool = False) -> str:
    lines: list[str] = []
    for o in outcomes:
        problems: list[str] = []
        if o.error:
            problems.append(f"error: {o.error}")
        else:
            if o.area != o.case.area:
                problems.append(f"area {o.area} (expected {o.case.area})")
            if o.urgency != o.case.urgency:
                far = "" if within_one(o.case.urgency, o.urgency) else " [off by more than one]"
                problems.append(f"urgency {o.urgency} (expected {o.case.urgency}){far}")
            for text in o.offtopic_recorded:
                problems.append(f"off-topic recorded as a fact: {text!r}")
            if not o.triaged:
                problems.append("not triaged")
        if problems:
            lines.append(f"- {o.case.id}: " + "; ".join(problems))
        if transcripts and (problems or o.unanswerable):
            lines += [f"    {who}: {text}" for who, text in o.transcript]
    f = figures(outcomes)

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    lines += [
        "",
        f"Triage evaluation: {f.cases} conversations ({f.triaged} triaged, {f.errors} errors), "
        f"{f.offtopic_sent} off-topic messages",
        f"  area accuracy              {f.area:6.1%}  target >= {TARGETS['area']:.0%}  "
        f"{mark(f.area >= TARGETS['area'])}",
        f"  urgency exact              {f.urgency_exact:6.1%}",
        f"  urgency within one level   {f.urgency_within_one:6.1%}  target >= "
        f"{TARGETS['urgency_within_one']:.0%}  "
        f"{mark(f.urgency_within_one >= TARGETS['urgency_within_one'])}",
        f"  urgent-vs-not agreement    {f.urgent_agreement:6.1%}  target >= "
        f"{TARGETS['urgent_agreement']:.0%}  "
        f"{mark(f.urgent_agreement >= TARGETS['urgent_agreement'])}",
        f"  off-topic recorded as fact {f.offtopic_recorded:>3} of {f.offtopic_sent}  target 0  "
        f"{mark(f.offtopic_recorded == 0)}",
    ]
    return "\n".join(lines)


async def run(cases: list[Case]) -> list[Outcome]:
    base = bench_settings(rate_limit_messages=100_000, rate_limit_sessions=100_000)
    async with own_database(base) as settings:
        try:
            with BenchReplica(
                settings, rate_limit_messages=100_000, rate_limit_sessions=100_000
            ) as replica:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{replica.port}", timeout=30
                ) as http:
                    gate = asyncio.Semaphore(CONCURRENCY)

                    async def one(index: int, case: Case) -> Outcome:
                        # One user per case: no rate limit or session list is shared.
                        token = create_token(settings, f"eval-{index}", "eval")
                        async with gate:
                            try:
                                return await play(Client(http, token), case)
                            except Exception as exc:  # reported with the case, the run goes on
                                return Outcome(case, None, None, False, [], [], 0, [], repr(exc))

                    return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(cases))))
        finally:
            await purge(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.triage_eval", description=__doc__)
    parser.add_argument("--case", action="append", default=[], help="only ids starting so")
    parser.add_argument(
        "--transcripts", action="store_true", help="print the conversation of each mismatch"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    cases = load_corpus()
    if args.case:
        cases = [c for c in cases if any(c.id.startswith(p) for p in args.case)]
    outcomes = uvloop.run(run(cases))
    print(report(outcomes, transcripts=args.transcripts))
    return 1 if args.check and not targets_met(figures(outcomes)) else 0


if __name__ == "__main__":
    sys.exit(main())
