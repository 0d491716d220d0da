"""The triage evaluation's corpus and client script (the run itself is `make eval`)."""

from __future__ import annotations

import pytest

from backend.generators.areas import AREA_KEYS
from backend.generators.questions import FALLBACK_QUESTION, Topic, question_for
from bench.triage_eval import AREAS, Case, Script, asked_topic, load_corpus, recorded_as_fact


def test_the_corpus_is_large_varied_and_labelled_with_known_areas() -> None:
    cases = load_corpus()
    assert len(cases) >= 60
    assert set(AREAS) == set(AREA_KEYS)
    assert {c.area for c in cases} == set(AREA_KEYS)
    assert {c.urgency for c in cases} == {"baixa", "media", "alta", "urgente"}
    assert sum(len(texts) for c in cases for texts in c.offtopic.values()) >= 20


@pytest.mark.parametrize("area", [None, *AREA_KEYS])
@pytest.mark.parametrize("topic", list(Topic))
def test_the_client_understands_every_question_of_the_interviewer(
    topic: Topic, area: str | None
) -> None:
    # The eval answers what was asked; a question it misreads would skew every figure.
    assert asked_topic(f"Obrigado pela resposta. {question_for(topic, area)}") == topic.value


def test_the_fallback_question_asks_for_the_area_and_a_closing_asks_nothing() -> None:
    assert asked_topic(FALLBACK_QUESTION) == "area"
    assert asked_topic("Obrigado! Vou encaminhar o seu caso para a triagem agora.") is None


def test_an_offtopic_message_goes_first_then_the_answer() -> None:
    case = Case(
        id="x",
        area="civil",
        urgency="baixa",
        story="Bateram no meu carro.",
        answers={"quando": "Ontem."},
        offtopic={"quando": ("não sei",)},
    )
    script = Script(case)
    assert script.first_message() == "Bateram no meu carro."
    assert [script.reply_to("quando"), script.reply_to("quando")] == ["não sei", "Ontem."]
    assert script.sent_offtopic == ["não sei"]


def test_an_offtopic_text_counts_as_recorded_only_where_facts_are() -> None:
    status = {
        "analysis": {"facts": {"quando": "não sei"}, "parties": [], "documents": []},
        "triage_result": {"summary": 'Relato do cliente: "Não sei nem por onde começar".'},
    }
    assert recorded_as_fact("Não sei.", status)
    status["analysis"]["facts"] = {"quando": "ontem"}
    # A short reply is matched as a whole value, not inside the client's story.
    assert not recorded_as_fact("Não sei.", status)
