"""Does a reply answer the question it follows? Real replies from Brazilian clients."""

from __future__ import annotations

import pytest

from backend.generators.answers import ClientQuestion, Evasion, check_answer, client_questions
from backend.generators.questions import Topic

# Replies that answer no question at all, whatever was asked.
EVASIONS = [
    ("Estou muito preocupado 😟 — o que faço?", Evasion.QUESTION),
    ("to com muito medo, nem durmo direito", Evasion.WORRY),
    ("😭😭", Evasion.WORRY),
    ("não sei", Evasion.UNKNOWN),
    ("Nao lembro", Evasion.UNKNOWN),
    ("sei lá, é complicado", Evasion.UNKNOWN),
    ("não entendi a pergunta", Evasion.CONFUSED),
    ("quanto custa isso?", Evasion.QUESTION),
    ("Vocês atendem no sábado?", Evasion.QUESTION),
]


@pytest.mark.parametrize(("topic", "reply"), [(t, r) for t in Topic for r, _ in EVASIONS])
def test_a_worry_a_question_back_or_not_knowing_answers_no_topic(topic: Topic, reply: str) -> None:
    answer = check_answer(topic, reply)
    assert not answer.addresses
    assert answer.evasion == dict(EVASIONS)[reply]


@pytest.mark.parametrize(
    ("topic", "reply"),
    [
        (Topic.FATO, "Fui mandado embora e não me pagaram nada"),
        (Topic.FATO, "meu vizinho construiu um muro no meu quintal sem pedir"),
        (Topic.FATO, "O banco descontou um empréstimo que eu não fiz"),
        (Topic.AREA, "É sobre o meu trabalho"),
        (Topic.QUANDO, "dia 12/03"),
        (Topic.QUANDO, "uns 3 meses atrás"),
        (Topic.QUANDO, "Não lembro o dia, mas foi em março"),
        (Topic.QUANDO, "faz bastante tempo"),
        (Topic.QUANDO, "em 2023"),
        (Topic.PARTES, "Loja X"),
        (Topic.PARTES, "a Metalúrgica Silva, meu antigo empregador"),
        (Topic.PARTES, "um cara da internet"),
        (Topic.PARTES, "magazine luiza"),
        (Topic.URGENCIA, "Não"),
        (Topic.URGENCIA, "nada marcado por enquanto"),
        (Topic.URGENCIA, "Recebi uma intimação semana passada"),
        (Topic.URGENCIA, "tenho que responder até dia 15"),
        (Topic.DOCUMENTOS, "Tenho o contrato e os recibos"),
        (Topic.DOCUMENTOS, "só um áudio que ele me mandou"),
        (Topic.DOCUMENTOS, "não tenho nada"),
        (Topic.DOCUMENTOS, "Nenhum"),
        (Topic.DOCUMENTOS, "tenho os prints das conversas no zap"),
        (Topic.DOCUMENTOS, "tenho a carteira assinada"),
    ],
)
def test_a_relevant_reply_answers_its_topic(topic: Topic, reply: str) -> None:
    answer = check_answer(topic, reply)
    assert answer.addresses
    assert answer.evasion is None


@pytest.mark.parametrize(
    ("topic", "reply"),
    [
        # The story told again is not a list of documents (the reported bug).
        (Topic.DOCUMENTOS, "Trabalhei 3 anos como auxiliar administrativo…"),
        (Topic.DOCUMENTOS, "tenho sim"),
        (Topic.QUANDO, "foi com a empresa onde eu trabalhava"),
        (Topic.URGENCIA, "sim"),
        (Topic.URGENCIA, "Trabalhei lá muito tempo"),
        (Topic.FATO, "oi"),
        (Topic.FATO, "Bom dia, tudo bem com você"),
        (Topic.AREA, "hmm"),
        (Topic.PARTES, "ok"),
        # A courtesy is not a name (found by `make eval`, case trab-06).
        (Topic.PARTES, "Obrigado pela atenção."),
        (Topic.PARTES, "Valeu, muito obrigada mesmo!"),
        (Topic.QUANDO, "Obrigado pela ajuda"),
    ],
)
def test_an_unrelated_reply_does_not_answer(topic: Topic, reply: str) -> None:
    answer = check_answer(topic, reply)
    assert not answer.addresses
    assert answer.evasion is Evasion.OFF_TOPIC


@pytest.mark.parametrize(
    ("message", "asked"),
    [
        ("o que eu faço agora?", [ClientQuestion.NEXT_STEPS]),
        ("E agora, qual o próximo passo", [ClientQuestion.NEXT_STEPS]),
        ("Mais alguma coisa…?", [ClientQuestion.NEXT_STEPS]),
        ("Quanto tempo vai demorar?", [ClientQuestion.TIME]),
        ("quando o advogado me liga?", [ClientQuestion.TIME]),
        ("Quanto custa a consulta?", [ClientQuestion.COST]),
        ("é de graça?", [ClientQuestion.COST]),
        ("Isso é sigiloso? Minha empresa vai ficar sabendo?", [ClientQuestion.CONFIDENTIALITY]),
        ("Quais documentos eu preciso levar?", [ClientQuestion.DOCUMENTS]),
        (
            "quanto custa e é confidencial?",
            [ClientQuestion.COST, ClientQuestion.CONFIDENTIALITY],
        ),
        ("Vocês atendem em Campinas?", [ClientQuestion.OTHER]),
        ("Fui demitido ontem e a empresa não pagou nada", []),
        ("meu patrao nao me pagou as ferias e agora me mandou embora", []),
        # Story words that look like a question word are not a question.
        ("A empresa demorou para pagar e me cobrou uma multa", []),
    ],
)
def test_what_the_client_asks(message: str, asked: list[ClientQuestion]) -> None:
    assert list(client_questions(message)) == asked


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        ("Tenho o cartão de embarque", "cartão de embarque"),
        ("eu guardei uns papéis da obra", "papéis da obra"),
        ("Só um áudio que ele me mandou", "Só um áudio que ele me mandou"),
    ],
)
def test_only_the_documents_are_kept_from_a_free_form_answer(reply: str, words: str) -> None:
    assert check_answer(Topic.DOCUMENTOS, reply).words == words
