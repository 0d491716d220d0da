"""Cases of the triage evaluation corpus (`bench/triage_corpus`), as fast analysis tests.

The whole corpus runs through the API with `make eval`; these few guard the general causes
the scoring handles (negation, regional words, typos, several areas in one story, false
friends, recency of an event, acute vs continuous health cases). Each plays the case's
client messages, in the order the interview asked for them, against the offline interviewer.
"""

from __future__ import annotations

import pytest

from backend.generators.analysis import analyze
from tests.generators.helpers import interview

CASES = [
    pytest.param(
        [
            "Não fui preso nem nada, mas recebi uma intimação pra depor na delegacia como "
            "investigado num inquérito de estelionato. Eu vendi um carro e o comprador diz que "
            "foi enganado.",
            "O comprador do carro, que fez a queixa.",
        ],
        "criminal",
        "alta",
        id="crim-02-negation-not-arrested",
    ),
    pytest.param(
        [
            "Os cana pegou meu primo com um bagulho no carro e levaram ele pra delegacia. "
            "Mainha tá desesperada, ninguém fala nada pra gente."
        ],
        "criminal",
        "urgente",
        id="crim-09-slang-taken-to-the-police-station",
    ),
    pytest.param(
        [
            "Fui mandado embora do trampo semana passada e o patrão não pagou a rescisão, nem "
            "liberou o FGTS. Trabalhei lá 3 anos de carteira assinada."
        ],
        "trabalhista",
        "media",
        id="trab-01-slang-dismissal",
    ),
    pytest.param(
        [
            "trabalhei 2 anos numa padaria sem registro, sai mes passado e o dono nao me deu "
            "nada, nem ferias nem decimo terceiro",
            "padaria Pão Quente, o dono é o seu Manoel",
            "nao tem prazo nenhum que eu saiba",
        ],
        "trabalhista",
        "media",
        id="trab-04-no-accents",
    ),
    pytest.param(
        [
            "Minha vida virou de cabeça pra baixo: fui demitido, minha mulher pediu o divórcio e "
            "fui morar com a minha mãe. Mas o que eu preciso agora é receber as verbas "
            "rescisórias que a empresa não pagou.",
            "A demissão foi no começo do mês.",
        ],
        "trabalhista",
        "media",
        id="trab-12-dismissal-and-divorce",
    ),
    pytest.param(
        [
            "A firma tá atrasando nosso salário faz 3 meses, pagam picado, um pouco cada semana, "
            "e quem reclama é ameaçado de ser cortado.",
            "Uma firma de limpeza terceirizada, a Limpa Bem.",
            "Não tem prazo, mas tá difícil pagar o aluguel.",
        ],
        "trabalhista",
        "media",
        id="trab-07-rent-in-an-answer-does-not-reroute",
    ),
    pytest.param(
        [
            "Tô devendo 4 meses de pensão do meu filho porque fiquei desempregado, e saiu um "
            "mandado de prisão contra mim. O oficial foi ontem na casa da minha mãe me procurar."
        ],
        "familia",
        "urgente",
        id="fam-04-child-support-arrest-warrant",
    ),
    pytest.param(
        [
            "A mãe dos meus filhos vai se mudar pra Portugal com as crianças semana que vem sem "
            "a minha autorização. Eu tenho a guarda compartilhada."
        ],
        "familia",
        "urgente",
        id="fam-09-children-taken-abroad-next-week",
    ),
    pytest.param(
        [
            "Tenho medida protetiva contra meu ex e ele apareceu hoje na porta do meu trabalho "
            "gritando. Os seguranças tiraram ele, mas tô com medo de sair."
        ],
        "criminal",
        "urgente",
        id="crim-10-protective-order-breached-today",
    ),
    pytest.param(
        [
            "Tô sendo executado por uma dívida de um contrato de prestação de serviço e o juiz "
            "bloqueou minha conta. Meu salário caiu e ficou preso lá.",
            "O bloqueio foi anteontem.",
        ],
        "civil",
        "alta",
        id="civ-08-money-held-is-no-arrest",
    ),
    pytest.param(
        [
            "O convênio não quer cobrir a terapia ABA do meu filho autista, que o neuropediatra "
            "prescreveu 20 horas por semana. Ele tá sem terapia há um mês."
        ],
        "consumidor",
        "alta",
        id="cons-06-continuous-treatment-denied",
    ),
    pytest.param(
        [
            "Minha mãe está internada na UTI e o plano de saúde negou a cirurgia do coração que "
            "o médico disse que tem que ser feita essa semana."
        ],
        "consumidor",
        "urgente",
        id="cons-05-surgery-denied-in-intensive-care",
    ),
]


@pytest.mark.parametrize(("messages", "area", "urgency"), CASES)
def test_corpus_case(messages: list[str], area: str, urgency: str) -> None:
    conversation, _ = interview(*messages)
    analysis = analyze(conversation)
    assert (analysis.area, analysis.urgency) == (area, urgency)


def test_denied_arrest_and_money_held_are_not_an_arrest() -> None:
    for message in (
        "Não fui preso nem nada, mas recebi uma intimação pra depor na delegacia",
        "O juiz bloqueou minha conta. Meu salário caiu e ficou preso lá.",
    ):
        assert "prisao" not in analyze(interview(message)[0]).urgency_signals


def test_violence_told_as_long_past_is_not_todays_emergency() -> None:
    # fam-10: the case to open is the divorce; the protective order is in force.
    conversation, _ = interview(
        "Quero me divorciar do meu marido. Ele me agrediu no ano passado, eu tenho medida "
        "protetiva e ele não chega perto, mas ainda estamos casados no papel.",
        "A medida protetiva está valendo, ele respeita.",
    )
    analysis = analyze(conversation)
    assert analysis.urgency == "alta"
    assert "violencia" in analysis.urgency_signals
