"""The built-in interviewer: what a client reads, and how it streams."""

from __future__ import annotations

import re

import pytest

from backend.generators.analysis import analyze
from backend.generators.offline import (
    AFTER_TRIAGE,
    CONFIDENTIALITY_REPLY,
    COST_REPLY,
    OTHER_QUESTION_REPLY,
    TRIAGE_UPDATED,
    WORRY_REPLY,
    OfflineInterviewer,
    compose_reply,
    split_chunks,
)
from backend.generators.questions import GUIDANCE, REASK, Topic, question_for
from backend.state.schemas import ConversationState
from tests.generators.helpers import chat, interview, without_last_reply


async def stream(conversation: ConversationState, **options: int) -> list[str]:
    generator = OfflineInterviewer(**options)
    return [c async for c in generator.stream_reply(conversation, analyze(conversation))]


async def test_chunks_are_small_and_join_to_the_whole_reply() -> None:
    conversation = chat("Meu voo foi cancelado ontem e a companhia aérea não me ajudou")
    chunks = await stream(conversation)
    assert "".join(chunks) == compose_reply(conversation, analyze(conversation))
    assert len(chunks) > 5
    assert all(1 <= len(chunk.split()) <= 3 for chunk in chunks)


async def test_same_conversation_same_reply() -> None:
    conversation, _ = interview("Meu nome foi negativado pelo banco", "há 3 meses")
    conversation = without_last_reply(conversation)
    assert await stream(conversation) == await stream(conversation)


async def test_a_delay_changes_the_pace_not_the_text() -> None:
    conversation = chat("Oi")
    assert await stream(conversation, chunk_delay_ms=1) == await stream(conversation)


def test_split_chunks_keeps_every_character() -> None:
    text = "Olá!  Tudo bem?\nVamos começar: o que aconteceu?"
    assert "".join(split_chunks(text, 2)) == text
    assert split_chunks("", 3) == []


def test_first_reply_greets_and_asks_what_happened() -> None:
    _, (reply,) = interview("Oi, boa noite")
    assert reply.startswith("Olá! Sou o assistente virtual de triagem jurídica.")
    assert reply.endswith(question_for(Topic.FATO, None))


def test_acknowledges_the_area_and_asks_the_next_missing_thing() -> None:
    _, replies = interview("Oi", "Fui demitida sem justa causa e a empresa não pagou a rescisão")
    reply = replies[-1]
    assert "Olá" not in reply  # greets once
    assert "questão de direito trabalhista, envolvendo demissão" in reply
    assert "Anotei quem está envolvido (empresa)" in reply
    # The company was named, the date was not: the date comes next.
    assert reply.endswith(question_for(Topic.QUANDO, "trabalhista"))


def test_echoes_a_recognised_date_but_not_a_free_form_answer() -> None:
    _, replies = interview("O INSS negou minha aposentadoria", "em março de 2024")
    assert "Anotei a data (em março de 2024)" in replies[-1]
    _, replies = interview("O INSS negou minha aposentadoria", "faz muito tempo")
    assert "Anotei sua resposta sobre a data." in replies[-1]
    _, replies = interview("Comprei um celular com defeito", "ontem", "Loja X")
    assert "Anotei quem está envolvido (Loja X)" in replies[-1]
    _, replies = interview("Comprei um celular com defeito", "ontem", "um cara da internet")
    assert "Anotei sua resposta sobre quem está envolvido." in replies[-1]


def test_acknowledges_documents() -> None:
    opening = ("Meu nome foi negativado pelo banco", "ontem", "não há prazo")
    _, replies = interview(*opening, "tenho as faturas e os prints")
    assert "Anotei os documentos que você tem (faturas ou boletos, mensagens)" in replies[-1]
    _, replies = interview(*opening, "só um áudio")
    assert "Anotei sua resposta sobre os documentos que você tem." in replies[-1]
    _, replies = interview(*opening, "nenhum")
    assert "Anotei que você ainda não tem documentos." in replies[-1]


def test_never_asks_the_same_question_twice() -> None:
    _, replies = interview(
        "Oi",
        "Tive um problema, é complicado de explicar",
        "não sei dizer",
        "faz tempo",
        "umas pessoas aí",
        "acho que não",
    )
    questions = [re.findall(r"[^.!?]*\?", reply)[-1].strip() for reply in replies[:4]]
    assert len(questions) == len(set(questions)), questions
    # Neither the story nor the area after asking each twice: the interview closes instead of
    # dragging on, and says what stayed unanswered.
    assert "Já tenho as informações principais" in replies[4]
    assert "Ficaram sem resposta o relato do que aconteceu e o tipo de problema" in replies[4]
    assert replies[5] == AFTER_TRIAGE


def test_asks_one_question_per_reply() -> None:
    _, replies = interview("Comprei um celular com defeito", "ontem", "Loja X")
    for reply in replies:
        assert reply.count("?") == 1


@pytest.mark.parametrize(
    ("message", "kind", "words"),
    [
        ("Meu marido foi preso em flagrante hoje de manhã", "prisao", "Defensoria Pública"),
        ("Tenho audiência amanhã às 9h e a empresa não pagou nada", "audiencia", "comparecer"),
        ("Recebi uma ordem de despejo do proprietário", "despejo", "Não deixe o imóvel"),
        ("Meu ex-marido me agrediu e ameaçou de morte", "violencia", "ligue 190"),
        ("O plano de saúde negou a cirurgia urgente da minha mãe", "saude", "liminar"),
    ],
)
def test_urgent_cases_get_concrete_guidance(message: str, kind: str, words: str) -> None:
    _, (reply,) = interview(message)
    assert "Entendo que o seu caso é urgente" in reply
    assert GUIDANCE[kind] in reply
    assert words in reply


def test_guidance_is_given_once() -> None:
    _, replies = interview(
        "Tenho audiência de conciliação marcada contra a loja", "ontem comprei", "não"
    )
    assert GUIDANCE["audiencia"] in replies[0]
    assert all(GUIDANCE["audiencia"] not in reply for reply in replies[1:])


def test_closes_when_ready_and_then_only_takes_notes() -> None:
    _, replies = interview(
        "Meu voo foi cancelado ontem e a companhia aérea não me reembolsou",
        "Não tenho nada marcado",
        "Tenho os e-mails da reserva",
        "Ah, e o voo era para o casamento da minha irmã",
    )
    assert replies[0].endswith(question_for(Topic.URGENCIA, "consumidor"))
    assert replies[1].endswith(question_for(Topic.DOCUMENTOS, "consumidor"))
    closing = replies[2]
    assert closing.startswith("Anotei os documentos que você tem (e-mails).")
    assert "Já tenho as informações principais para a triagem" in closing
    assert "consulta com um advogado de direito do consumidor nas próximas semanas" in closing
    assert "?" not in closing
    assert replies[3].startswith("Obrigado, anotei essa informação no seu caso.")


def test_urgent_closing_asks_to_gather_documents() -> None:
    _, (reply,) = interview("Meu filho foi preso em flagrante")
    assert "Já tenho as informações principais para a triagem" in reply
    assert "o quanto antes, ainda hoje" in reply
    assert "vá separando os documentos que tiver, como boletim de ocorrência" in reply


def test_rejects_bad_options() -> None:
    with pytest.raises(ValueError):
        OfflineInterviewer(chunk_delay_ms=-1)
    with pytest.raises(ValueError):
        OfflineInterviewer(words_per_chunk=0)


LABOUR = (
    "Fui demitido sem justa causa ontem e a empresa Alfa não pagou minhas verbas",
    "Não tenho audiência nem prazo",
)


def test_a_worried_question_back_is_answered_and_the_question_asked_in_other_words() -> None:
    _, replies = interview(*LABOUR, "Estou muito preocupado 😟 — o que faço?")
    reply = replies[-1]
    assert replies[-2].endswith(question_for(Topic.DOCUMENTOS, "trabalhista"))
    assert WORRY_REPLY in reply
    assert "Sobre o que fazer agora" in reply and "advogado trabalhista" in reply
    assert "Anotei" not in reply
    assert reply.endswith(REASK[Topic.DOCUMENTOS])
    assert "Já tenho as informações principais" not in reply


def test_a_second_miss_is_not_informed_and_the_interview_moves_on() -> None:
    _, replies = interview("O INSS cortou meu auxílio-doença", "não sei", "não lembro mesmo")
    assert replies[1].startswith("Sem problema se você não souber com certeza.")
    assert replies[1].endswith(REASK[Topic.QUANDO])
    assert "esse ponto (a data) como não informado" in replies[2]
    assert "Anotei a data" not in replies[2]
    # On to the next topic, never back to the date.
    assert replies[2].endswith(question_for(Topic.DOCUMENTOS, "previdenciario"))


def test_the_closing_says_what_stayed_unanswered() -> None:
    _, replies = interview(*LABOUR, "???", "sei lá")
    assert "Já tenho as informações principais" in replies[-1]
    assert "Ficaram sem resposta os documentos" in replies[-1]


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Quanto custa isso?", COST_REPLY),
        ("Isso que eu falar aqui é sigiloso? Minha empresa vai saber?", CONFIDENTIALITY_REPLY),
        ("Quanto tempo demora?", "Faltam poucas perguntas."),
        ("Que documentos eu preciso separar?", "carteira de trabalho, holerites"),
        ("Vocês atendem em Campinas?", OTHER_QUESTION_REPLY),
    ],
)
def test_client_questions_are_answered_during_the_interview(question: str, answer: str) -> None:
    _, replies = interview(LABOUR[0], question)
    assert answer in replies[-1]
    # Then the interview goes on: the question about deadlines, in other words.
    assert replies[-1].endswith(REASK[Topic.URGENCIA])


TRIAGED = (*LABOUR, "Tenho a carteira de trabalho e os holerites")


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Mais alguma coisa…?", "o próximo passo é uma consulta com um advogado trabalhista"),
        ("e agora, o que eu faço?", "Por aqui você não precisa fazer mais nada"),
        ("Quanto tempo vai demorar?", "um advogado deve falar com você nos próximos dias"),
        ("é confidencial?", CONFIDENTIALITY_REPLY),
        ("É de graça?", COST_REPLY),
        ("Quais documentos eu preciso levar?", "carteira de trabalho, holerites"),
        ("Vocês atendem em Campinas?", OTHER_QUESTION_REPLY),
    ],
)
def test_questions_after_the_triage_get_useful_answers(question: str, answer: str) -> None:
    _, replies = interview(*TRIAGED, question)
    assert "Já tenho as informações principais" in replies[-2]
    assert answer in replies[-1]
    assert AFTER_TRIAGE not in replies[-1]
    assert TRIAGE_UPDATED not in replies[-1]


def test_a_hearing_after_the_triage_gets_guidance_and_updates_the_triage() -> None:
    _, replies = interview(*TRIAGED, "Acabei de receber uma intimação: a audiência é amanhã")
    assert "Entendo que o seu caso é urgente" in replies[-1]
    assert GUIDANCE["audiencia"] in replies[-1]
    assert replies[-1].endswith(TRIAGE_UPDATED)


def test_a_new_party_after_the_triage_is_noted_without_changing_the_triage() -> None:
    _, replies = interview(*TRIAGED, "Ah, o meu chefe também sabia de tudo")
    assert "Anotei quem está envolvido (empresa Alfa, chefe)" in replies[-1]
    assert TRIAGE_UPDATED not in replies[-1]
