"""The interview's topics, the questions that ask for them and the guidance for urgent cases.

Shared by the analysis and the offline interviewer on purpose: the analysis must know which
topic the interviewer's last question asked about, so that it can check the reply against it
(`answers.check_answer`) and count how often the topic was asked: a topic is asked at most
twice (`question_for`, then `reask_for` in other words) and is never asked again once
answered. The offline interviewer's questions are recognised exactly; a provider's (LLM)
questions by keywords.
"""

from __future__ import annotations

import re
from enum import StrEnum

from backend.generators.areas import AREAS_BY_KEY
from backend.generators.text import fold


class Topic(StrEnum):
    FATO = "fato"
    AREA = "area"
    QUANDO = "quando"
    PARTES = "partes"
    URGENCIA = "urgencia"
    DOCUMENTOS = "documentos"


# Interview order: the story first, then what triage needs to route and prioritise the case.
TOPIC_ORDER: tuple[Topic, ...] = tuple(Topic)

# How each topic appears in "what is still missing" (analysis.missing, triage result).
MISSING_LABELS: dict[Topic, str] = {
    Topic.FATO: "relato do que aconteceu",
    Topic.AREA: "tipo de problema (área do direito)",
    Topic.QUANDO: "quando aconteceu (data aproximada)",
    Topic.PARTES: "partes envolvidas (empresa, pessoa ou órgão)",
    Topic.URGENCIA: "prazos, audiências ou outras urgências",
    Topic.DOCUMENTOS: "documentos disponíveis",
}

_GENERIC: dict[Topic, str] = {
    Topic.FATO: "Pode me contar, com suas palavras, o que aconteceu?",
    Topic.AREA: (
        "Para eu direcionar corretamente: o problema envolve trabalho, compra ou serviço, "
        "família, INSS, um crime, contrato ou dano, imóvel ou aluguel, ou impostos?"
    ),
    Topic.QUANDO: "Quando isso aconteceu (uma data aproximada já ajuda)?",
    Topic.PARTES: (
        "Quem está envolvido no caso: qual empresa, pessoa ou órgão está do outro lado?"
    ),
    Topic.URGENCIA: (
        "Existe algum prazo correndo, audiência marcada, notificação recebida ou outra "
        "situação urgente, como prisão, despejo ou risco à saúde?"
    ),
    Topic.DOCUMENTOS: "Quais documentos ou provas você tem sobre o caso?",
}

# Wording that fits the area better; same topic, so recognised the same way.
_BY_AREA: dict[tuple[str, Topic], str] = {
    ("trabalhista", Topic.QUANDO): (
        "Quando isso aconteceu, por exemplo a data da demissão ou desde quando o problema ocorre?"
    ),
    ("trabalhista", Topic.PARTES): (
        "Qual é o nome da empresa (o empregador) e qual era a sua função lá?"
    ),
    ("consumidor", Topic.PARTES): (
        "Qual é a empresa envolvida (loja, banco, operadora ou companhia aérea)?"
    ),
    ("familia", Topic.PARTES): (
        "Quem está envolvido: o ex-cônjuge ou ex-companheiro(a), e há filhos menores de idade?"
    ),
    ("previdenciario", Topic.QUANDO): (
        "Quando você fez o pedido ao INSS ou quando o benefício foi negado ou cortado?"
    ),
    ("criminal", Topic.PARTES): (
        "Quem está envolvido: quem é a vítima, quem é o acusado e qual é a sua relação com eles?"
    ),
    ("imobiliario", Topic.PARTES): (
        "Quem está do outro lado: o proprietário, a imobiliária, o inquilino ou a construtora?"
    ),
}


def question_for(topic: Topic, area: str | None) -> str:
    """The question asking for `topic`, worded for the area when we have a better wording."""
    if topic is Topic.DOCUMENTOS and area in AREAS_BY_KEY:
        return (
            "Quais documentos ou provas você tem sobre o caso? Por exemplo: "
            f"{AREAS_BY_KEY[area].document_examples}?"
        )
    if area is not None and (area, topic) in _BY_AREA:
        return _BY_AREA[(area, topic)]
    return _GENERIC[topic]


# When every question was answered and the area is still unclear: a different wording, so the
# client is not asked the same thing twice.
FALLBACK_QUESTION = (
    "Ainda não consegui identificar o tipo do seu caso. Pode descrever o problema com outras "
    "palavras, dizendo o que você gostaria de resolver?"
)


# Asked once more, in other words, when the reply to the first question did not answer it
# (a worry, a question back, "não sei"): simpler, with examples and an easy way to say no.
# The AREA's other wording is `FALLBACK_QUESTION`.
REASK: dict[Topic, str] = {
    Topic.FATO: (
        "Para eu entender o seu caso: o que aconteceu, em poucas palavras? Por exemplo, uma "
        "demissão, uma compra com problema, uma cobrança, uma separação ou um benefício negado."
    ),
    Topic.QUANDO: (
        "Mesmo sem a data exata, mais ou menos quando foi? Pode ser o mês, o ano ou há quanto "
        "tempo isso acontece."
    ),
    Topic.PARTES: (
        "E do outro lado do problema, quem está? Pode ser o nome de uma empresa, de uma pessoa "
        "ou de um órgão público."
    ),
    Topic.URGENCIA: (
        "Só para confirmar: há alguma data marcada (audiência, prazo para responder, despejo) ou "
        "algum risco imediato? Se houver, me diga qual; se não houver, pode responder apenas "
        '"não".'
    ),
    Topic.DOCUMENTOS: (
        "Você guardou algum papel, print, e-mail, foto ou contrato sobre o caso? Se não tiver "
        'nenhum, pode responder "não tenho".'
    ),
}


def reask_for(topic: Topic, area: str | None) -> str:
    """The second, last question about `topic`, in other words than `question_for`."""
    if topic is Topic.AREA:
        return FALLBACK_QUESTION
    return REASK[topic]


def _known_questions() -> dict[str, Topic]:
    known = {fold(q): t for t, q in _GENERIC.items()}
    known.update({fold(q): t for t, q in REASK.items()})
    known.update({fold(q): t for (_, t), q in _BY_AREA.items()})
    for area in AREAS_BY_KEY:
        known[fold(question_for(Topic.DOCUMENTOS, area))] = Topic.DOCUMENTOS
    known[fold(FALLBACK_QUESTION)] = Topic.AREA
    return known


_KNOWN_QUESTIONS = _known_questions()

# For questions written by a provider, checked in this order on the last question sentence:
# the urgency question mentions "prisão"/"despejo" and the documents one "contrato", so the
# more specific topics come first.
_TOPIC_KEYWORDS: tuple[tuple[Topic, re.Pattern[str]], ...] = (
    (Topic.URGENCIA, re.compile(r"\b(prazo|audiencia|urgen|notifica|intima)")),
    (Topic.DOCUMENTOS, re.compile(r"\b(document|comprovante|provas?\b|papeis|contrato)")),
    (Topic.QUANDO, re.compile(r"\b(quando|data|ha quanto tempo|desde quando)\b")),
    (Topic.PARTES, re.compile(r"\b(quem|envolvid|empresa|nome d[oa]|outra parte)")),
    (Topic.FATO, re.compile(r"\b(o que aconteceu|conte|contar|descrev|detalhe)")),
    (Topic.AREA, re.compile(r"\b(tipo (de|do) (problema|caso)|area)\b")),
)
_QUESTION_SENTENCE = re.compile(r"[^.!?\n]*\?")


def asked_topic(assistant_message: str) -> Topic | None:
    """Which topic an interviewer message asked about (its last question), if any."""
    folded = fold(assistant_message)
    for question, topic in _KNOWN_QUESTIONS.items():
        if question in folded:
            return topic
    questions = _QUESTION_SENTENCE.findall(folded)
    if not questions:
        return None
    last = questions[-1]
    for topic, pattern in _TOPIC_KEYWORDS:
        if pattern.search(last):
            return topic
    return None


# Concrete orientation for an urgent situation, by urgency signal kind. Short, practical, and
# never a promise about the outcome.
GUIDANCE: dict[str, str] = {
    "prisao": (
        "Como há uma prisão envolvida, o mais importante agora é que um advogado criminalista "
        "ou a Defensoria Pública acompanhe o caso imediatamente: a pessoa presa tem o direito "
        "de ficar em silêncio e de falar com um advogado, e a audiência de custódia costuma "
        "acontecer em até 24 horas."
    ),
    "violencia": (
        "Se você estiver em perigo agora, ligue 190. Em casos de violência doméstica, você "
        "também pode ligar 180 e pedir uma medida protetiva de urgência na delegacia (de "
        "preferência a Delegacia da Mulher) ou na Defensoria Pública."
    ),
    "saude": (
        "Guarde a negativa por escrito (ou o número do protocolo) e peça ao médico um relatório "
        "que indique a urgência do tratamento: com esses documentos é possível pedir uma "
        "liminar na Justiça, que costuma ser analisada rapidamente."
    ),
    "despejo": (
        "Não deixe o imóvel por conta própria e guarde a notificação ou o mandado que recebeu: "
        "os prazos para se defender de um despejo são curtos, então procure um advogado ou a "
        "Defensoria Pública o quanto antes."
    ),
    "audiencia": (
        "Não deixe de comparecer à audiência no dia e horário marcados, com documento com foto "
        "e os documentos do caso: faltar pode trazer consequências graves, como perder a ação."
    ),
    "prazo": (
        "Anote a data final do prazo e não deixe para a última hora: um prazo processual perdido "
        "normalmente não pode ser recuperado."
    ),
    "liminar": (
        "Guarde a decisão ou o pedido de liminar que recebeu: decisões liminares têm efeito "
        "imediato e prazos curtos para recurso."
    ),
    "bloqueio": (
        "Guarde o extrato que mostra o bloqueio: salário e poupança de até 40 salários mínimos "
        "costumam ser protegidos, e o desbloqueio pode ser pedido rapidamente."
    ),
    "servico_essencial": (
        "Guarde as contas e o protocolo da reclamação: o corte de serviço essencial por cobrança "
        "indevida pode ser revertido com pedido urgente."
    ),
    "beneficio_cortado": (
        "Guarde a carta ou a tela do Meu INSS com a decisão: há prazo de 30 dias para recorrer "
        "administrativamente, e a via judicial continua possível."
    ),
}
