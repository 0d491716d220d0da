"""The triage result built from an interview: always valid, honest about its gaps."""

from __future__ import annotations

from backend.generators.analysis import analyze
from backend.generators.base import TriageResult
from backend.generators.questions import MISSING_LABELS, Topic
from backend.triage.result import UNKNOWN_AREA, build_triage_result
from tests.generators.helpers import chat, interview


def triage_of(*client_messages: str) -> TriageResult:
    conversation, _ = interview(*client_messages)
    return build_triage_result(conversation, analyze(conversation))


def test_complete_labour_interview() -> None:
    result = triage_of(
        "Fui demitido sem justa causa e a empresa não pagou minhas verbas rescisórias",
        "No dia 12/03/2025",
        "Não tenho prazo nem audiência",
        "Tenho a carteira de trabalho e os holerites",
    )
    assert result.area == "trabalhista"
    assert result.sub_area == "demissão"
    assert result.urgency == "media"
    assert result.complexity == "baixa"
    assert "Fui demitido sem justa causa" in result.summary
    assert "12/03/2025" in result.summary
    assert "carteira de trabalho" in result.summary
    assert result.missing_information == []
    assert result.recommended_next_step == "Agendar consulta com advogado trabalhista em até 7 dias"
    assert result.confidence >= 0.9
    # Stored as JSON and read back, it is still valid.
    assert TriageResult.model_validate_json(result.model_dump_json()) == result


def test_high_urgency_gets_a_48h_appointment_and_a_document_request() -> None:
    result = triage_of(
        "Meu ex-marido não paga a pensão das crianças",
        "Desde o começo do ano",
        "Tenho audiência de conciliação marcada para o mês que vem",
    )
    assert result.area == "familia"
    assert result.urgency == "alta"
    assert result.urgency_reason == "Há audiência marcada."
    assert result.recommended_next_step.startswith(
        "Agendar consulta com advogado de família em até 48h; pedir ao cliente que reúna"
    )
    assert result.missing_information == [MISSING_LABELS[Topic.DOCUMENTOS]]


def test_arrest_goes_to_a_criminal_lawyer_immediately() -> None:
    result = triage_of("Meu filho foi preso em flagrante ontem à noite")
    assert result.area == "criminal"
    assert result.urgency == "urgente"
    assert "audiência de custódia" in result.recommended_next_step
    assert result.recommended_next_step.startswith("Acionar imediatamente")
    assert result.complexity in {"media", "alta"}


def test_thin_interview_still_yields_a_valid_low_confidence_result() -> None:
    conversation = chat("oi")
    result = build_triage_result(conversation, analyze(conversation))
    assert result.area == UNKNOWN_AREA
    assert result.sub_area is None
    assert result.confidence <= 0.1
    assert result.missing_information == list(MISSING_LABELS.values())
    assert "advogado generalista" in result.recommended_next_step
    assert '"oi"' in result.summary  # the client's own words, for the lawyer


def test_complexity_grows_with_areas_parties_and_amounts() -> None:
    simple = triage_of(
        "Comprei uma TV com defeito e a loja não troca", "semana passada", "não", "nota fiscal"
    )
    heavy = triage_of(
        "Fui demitido, a empresa Alfa Ltda e o sócio dela me devem R$ 80.000 de verbas "
        "rescisórias, e o proprietário já entrou com despejo do apartamento porque atrasei o "
        "aluguel. O banco também bloqueou a minha conta."
    )
    assert simple.complexity == "baixa"
    assert heavy.complexity == "alta"


def test_confidence_grows_as_the_interview_fills_in() -> None:
    messages = [
        "Olá",
        "Meu voo foi cancelado e a companhia aérea não me reembolsou",
        "Foi dia 02/11/2025",
        "Nada marcado",
        "Tenho os e-mails e o cartão de embarque",
    ]
    confidences = [triage_of(*messages[: n + 1]).confidence for n in range(len(messages))]
    assert confidences == sorted(confidences)
    assert confidences[0] < 0.2
    assert confidences[-1] > 0.8


LABOUR = (
    "Fui demitido sem justa causa e a empresa Alfa não pagou minhas verbas rescisórias",
    "No dia 12/03/2025",
    "Não tenho prazo nem audiência",
)


def test_an_off_topic_reply_never_becomes_the_documents_and_confidence_stays_honest() -> None:
    # The reported triage: the story told again was stored as the documents, at 0.95.
    result = triage_of(*LABOUR, "Trabalhei 3 anos como auxiliar administrativo…", "não sei")
    assert "Documentos: não informado." in result.summary
    assert "auxiliar administrativo" not in result.summary.split("Documentos:")[1]
    assert result.missing_information == [MISSING_LABELS[Topic.DOCUMENTOS]]
    assert result.confidence <= 0.8


def test_a_worry_is_not_in_the_triage() -> None:
    result = triage_of(*LABOUR, "Estou muito preocupado 😟 — o que faço?", "não sei")
    assert "preocupado" not in result.summary
    assert "Documentos: não informado." in result.summary


def test_confidence_is_at_most_08_with_any_unanswered_topic() -> None:
    complete = triage_of(*LABOUR, "Tenho a carteira de trabalho e os holerites")
    assert complete.confidence >= 0.9
    # Same case, each topic left unanswered in turn (asked twice, or never told).
    no_documents = triage_of(*LABOUR, "o que eu faço?", "sei lá")
    no_date = triage_of(LABOUR[0], "não lembro", "não sei", *LABOUR[2:], "tenho os holerites")
    urgent_at_once = triage_of("Meu filho foi preso em flagrante ontem na delegacia")
    for result in (no_documents, no_date, urgent_at_once):
        assert result.missing_information
        assert result.confidence <= 0.8, result
    assert no_date.summary.count("Quando: não informado.") == 1


def test_confidence_is_higher_when_the_area_signals_agree() -> None:
    single = triage_of(*LABOUR, "Tenho a carteira de trabalho e os holerites")
    mixed = triage_of(
        "Fui demitido sem justa causa e a empresa Alfa não pagou a rescisão. Por causa disso "
        "atrasei o aluguel e o proprietário quer o despejo do apartamento",
        "No dia 12/03/2025",
        "Não tenho prazo nem audiência",
        "Tenho a carteira de trabalho e os holerites",
    )
    assert mixed.missing_information == []
    assert mixed.confidence < single.confidence
