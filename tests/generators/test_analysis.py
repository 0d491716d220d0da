"""The offline case analysis on realistic messages from Brazilian clients."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.generators import analysis as analysis_module
from backend.generators.analysis import MAX_USER_TURNS, analyze
from backend.generators.questions import MISSING_LABELS, Topic
from backend.generators.scan import MAX_MESSAGE_CHARS, scan_message
from tests.generators.helpers import chat, interview


@pytest.mark.parametrize(
    ("message", "area", "sub_area"),
    [
        (
            "Fui demitido sem justa causa e a empresa até agora não pagou minha rescisão",
            "trabalhista",
            "demissão",
        ),
        (
            "Trabalhei 3 anos fazendo hora extra todo dia e nunca recebi por isso",
            "trabalhista",
            "horas extras",
        ),
        (
            "Meu chefe me humilha na frente dos colegas, é assédio moral",
            "trabalhista",
            "assédio",
        ),
        (
            "Meu voo para Recife foi cancelado e a companhia aérea não quer me reembolsar",
            "consumidor",
            "voo cancelado ou atrasado",
        ),
        (
            "Comprei uma geladeira que veio com defeito e a loja se recusa a trocar",
            "consumidor",
            "produto com defeito",
        ),
        (
            "O banco está me fazendo uma cobrança indevida de uma compra que não fiz no cartão",
            "consumidor",
            "cobrança indevida",
        ),
        (
            "Meu nome foi negativado no Serasa por uma conta que já paguei",
            "consumidor",
            "negativação indevida",
        ),
        (
            "Quero me divorciar, estou casada há 10 anos e temos um apartamento",
            "familia",
            "divórcio",
        ),
        (
            "O pai do meu filho não paga a pensão alimentícia há meses",
            "familia",
            "pensão alimentícia",
        ),
        (
            "Meu ex não me deixa ver minha filha, quero a guarda compartilhada",
            "familia",
            "guarda",
        ),
        (
            "Tenho 64 anos e o INSS negou minha aposentadoria por tempo de contribuição",
            "previdenciario",
            "aposentadoria",
        ),
        (
            "Estou afastado e a perícia do INSS cortou meu auxílio-doença",
            "previdenciario",
            "benefício por incapacidade (auxílio-doença)",
        ),
        (
            "Minha mãe tem deficiência e pediu o BPC/LOAS, mas foi indeferido",
            "previdenciario",
            "BPC/LOAS",
        ),
        (
            "Meu irmão foi preso em flagrante ontem e está na delegacia",
            "criminal",
            "prisão",
        ),
        (
            "Um vizinho está me difamando e espalhando calúnia nas redes sociais",
            "criminal",
            "crimes contra a honra",
        ),
        (
            "Bateram no meu carro no cruzamento e o motorista não quer pagar o conserto",
            "civil",
            "acidente de trânsito",
        ),
        (
            "Quero uma indenização por danos morais porque fui exposto numa reportagem",
            "civil",
            "indenização por danos",
        ),
        (
            "Caí na malha fina do imposto de renda por causa de uma despesa médica",
            "tributario",
            "imposto de renda",
        ),
        (
            "A prefeitura entrou com execução fiscal por IPTU atrasado da minha casa",
            "tributario",
            "execução fiscal",
        ),
        (
            "Estou atrasado com o aluguel e o proprietário ameaçou entrar com despejo",
            "imobiliario",
            "despejo e locação",
        ),
    ],
)
def test_recognises_area_and_sub_area(message: str, area: str, sub_area: str) -> None:
    analysis = analyze(chat(message))
    assert (analysis.area, analysis.sub_area) == (area, sub_area)


def test_accents_and_case_do_not_matter() -> None:
    plain = analyze(chat("FUI DEMITIDO E NAO RECEBI AS VERBAS RESCISORIAS, NEM O FGTS"))
    accented = analyze(chat("fui demitido e não recebi as verbas rescisórias, nem o FGTS"))
    assert plain.area == accented.area == "trabalhista"
    assert plain.sub_area == accented.sub_area == "verbas rescisórias"


def test_nothing_recognised_in_a_greeting() -> None:
    analysis = analyze(chat("Oi, boa tarde! Preciso de uma ajuda"))
    assert analysis.area is None
    assert analysis.urgency == "baixa"
    assert analysis.missing_topics[0] == Topic.FATO
    assert analysis.next_topic == Topic.FATO


def test_a_second_area_with_real_weight_is_reported() -> None:
    analysis = analyze(
        chat(
            "Fui demitido sem justa causa e a empresa não pagou a rescisão. Por causa disso "
            "atrasei o aluguel e o proprietário quer o despejo do apartamento"
        )
    )
    # Both matter; which one leads is a judgement call, reporting both is not.
    assert {analysis.area, *analysis.secondary_areas} == {"trabalhista", "imobiliario"}


@pytest.mark.parametrize(
    ("message", "urgency", "reason"),
    [
        ("Meu filho foi preso em flagrante esta madrugada", "urgente", "pessoa presa"),
        (
            "Tenho audiência amanhã na Justiça do Trabalho e não tenho advogado",
            "urgente",
            "audiência marcada para os próximos dias",
        ),
        ("Recebi uma intimação e o prazo vence amanhã", "urgente", "prazo que termina"),
        (
            "Chegou uma ordem de despejo e o oficial de justiça volta na segunda",
            "urgente",
            "ordem de despejo",
        ),
        (
            "O plano de saúde negou a cirurgia do meu pai, que está internado",
            "urgente",
            "saúde negado",
        ),
        (
            "Meu marido me agrediu de novo e preciso de uma medida protetiva",
            "urgente",
            "violência",
        ),
        (
            "Tenho audiência de conciliação marcada para o mês que vem no Juizado",
            "alta",
            "audiência marcada",
        ),
        ("O proprietário disse que vai pedir o despejo se eu não pagar", "alta", "despejo"),
        ("O juiz deu uma liminar contra mim no processo", "alta", "liminar"),
        ("Bloquearam a minha conta por causa de uma dívida antiga", "alta", "bloqueio"),
        ("O INSS cortou o meu benefício sem aviso", "alta", "benefício negado ou cortado"),
        ("Meu nome está sujo no SPC por uma dívida que não é minha", "media", "negativado"),
        ("A empresa está com meus salários atrasados há dois meses", "media", "valores"),
        ("Comprei um celular que parou de funcionar depois de uma semana", "baixa", "Não foram"),
    ],
)
def test_urgency_level_and_reason(message: str, urgency: str, reason: str) -> None:
    analysis = analyze(chat(message))
    assert analysis.urgency == urgency
    assert analysis.urgency_reason is not None
    assert reason in analysis.urgency_reason


def test_denied_signals_do_not_raise_urgency_but_answer_the_question() -> None:
    analysis = analyze(
        chat("Comprei um sofá que chegou rasgado. Não tenho audiência nem prazo nenhum")
    )
    assert analysis.urgency == "baixa"
    assert Topic.URGENCIA not in analysis.missing_topics


def test_only_the_clients_messages_are_read() -> None:
    # The interviewer's own question mentions arrest and eviction: no urgency from that.
    analysis = analyze(
        chat(
            "Comprei um sofá que chegou rasgado",
            "Existe algum prazo correndo, audiência marcada, notificação recebida ou outra "
            "situação urgente, como prisão, despejo ou risco à saúde?",
        )
    )
    assert analysis.urgency == "baixa"
    assert analysis.urgency_signals == []


@pytest.mark.parametrize(
    ("message", "when"),
    [
        ("Fui demitido no dia 12/03/2025 sem receber nada", "12/03/2025"),
        ("O voo foi cancelado ontem à noite", "ontem"),
        ("Meu benefício foi cortado há 2 meses", "há 2 meses"),
        ("Faz três semanas que a loja não entrega meu pedido", "Faz três semanas"),
        ("O acidente foi em março de 2024", "em março de 2024"),
        ("Saí da empresa no mês passado", "mês passado"),
    ],
)
def test_extracts_when_in_the_clients_words(message: str, when: str) -> None:
    assert analyze(chat(message)).facts["quando"] == when


def test_a_hearing_date_is_not_when_it_happened() -> None:
    analysis = analyze(chat("Tenho audiência marcada para o dia 20/05 contra a empresa"))
    assert "quando" not in analysis.facts


def test_extracts_parties_documents_and_amounts() -> None:
    analysis = analyze(
        chat(
            "Trabalhei para a empresa Alfa Serviços Ltda e fui demitida. Tenho a carteira de "
            "trabalho, os holerites e prints das mensagens do meu chefe. Eles me devem R$ "
            "12.500,00 de verbas rescisórias"
        )
    )
    assert analysis.parties[0] == "empresa Alfa Serviços Ltda"
    assert "chefe" in analysis.parties
    assert "empresa" not in analysis.parties  # already named
    assert analysis.documents == ["carteira de trabalho", "holerites", "mensagens"]
    assert analysis.amounts == ["R$ 12.500,00"]
    assert analysis.facts["valores"] == "R$ 12.500,00"


@pytest.mark.parametrize(
    ("message", "party"),
    [
        ("Meu ex-marido sumiu e não paga nada", "ex-marido"),
        ("Minha ex não deixa eu ver meu filho", "ex-companheiro(a)"),
        ("O banco descontou parcelas de um empréstimo que não fiz", "banco"),
        ("O INSS não responde meu pedido", "INSS"),
        ("A imobiliária não devolveu a caução", "imobiliária"),
    ],
)
def test_recognises_parties(message: str, party: str) -> None:
    assert party in analyze(chat(message)).parties


def test_an_ex_husband_is_one_party() -> None:
    assert analyze(chat("Meu ex-marido sumiu e não paga nada")).parties == ["ex-marido"]


@pytest.mark.parametrize(
    ("answer", "documents", "fact"),
    [
        ("Tenho o contrato e os recibos", ["contrato", "comprovantes"], None),
        ("Só um áudio que ele me mandou", ["Só um áudio que ele me mandou"], None),
        ("Não", [], "nenhum documento informado"),
    ],
)
def test_answer_about_documents(answer: str, documents: list[str], fact: str | None) -> None:
    conversation, _ = interview(
        "Meu vizinho fez uma obra e causou uma infiltração no meu apartamento",
        "mês passado",
        "não tenho prazo",
        answer,
    )
    analysis = analyze(conversation)
    assert analysis.documents == documents
    assert analysis.facts["documentos"] == (fact or ", ".join(documents))
    assert Topic.DOCUMENTOS not in analysis.missing_topics


def test_denied_documents_are_not_listed() -> None:
    analysis = analyze(
        chat("Não tenho contrato, foi tudo de boca, mas tenho o boletim de ocorrência")
    )
    assert analysis.documents == ["boletim de ocorrência"]


def test_missing_shrinks_as_answers_arrive() -> None:
    conversation, _ = interview(
        "Olá, bom dia",
        "Meu voo foi cancelado e a companhia aérea não me deu assistência nenhuma",
        "Foi no dia 02/11/2025",
        "Não, nada marcado",
        "Tenho o cartão de embarque e os e-mails da companhia",
    )
    user_counts = [i + 1 for i, m in enumerate(conversation.messages) if m.role == "user"]
    missing = [
        analyze(conversation.copy(messages=conversation.messages[:n])).missing for n in user_counts
    ]
    assert missing[0] == list(MISSING_LABELS.values())
    sizes = [len(m) for m in missing]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 0
    # The story, the area, the company, the date, the urgency answer, the documents.
    assert MISSING_LABELS[Topic.PARTES] not in missing[1]
    assert MISSING_LABELS[Topic.QUANDO] in missing[1]
    assert MISSING_LABELS[Topic.QUANDO] not in missing[2]
    assert MISSING_LABELS[Topic.URGENCIA] not in missing[3]


def test_a_vague_period_answers_when_and_only_its_words_are_kept() -> None:
    conversation, _ = interview(
        "O INSS negou meu pedido de aposentadoria",
        "Sinceramente não lembro, faz tempo",
    )
    analysis = analyze(conversation)
    assert analysis.facts["quando"] == "faz tempo"
    assert Topic.QUANDO not in analysis.missing_topics
    assert analysis.next_topic != Topic.QUANDO


def test_a_providers_question_is_recognised_by_its_words() -> None:
    # An LLM words its questions freely; the answer still settles the topic.
    analysis = analyze(
        chat(
            "Comprei uma TV com defeito e a loja não troca",
            "Sinto muito! Você tem algum prazo ou audiência marcada?",
            "Não",
        )
    )
    assert Topic.URGENCIA not in analysis.missing_topics


class TestReadiness:
    def test_every_topic_settled(self) -> None:
        story = "Fui demitido ontem e a empresa não pagou as verbas rescisórias"
        conversation, _ = interview(story)
        analysis = analyze(conversation)
        assert not analysis.ready_for_triage
        assert analysis.next_topic == Topic.URGENCIA
        conversation, _ = interview(story, "Não tenho nenhum prazo")
        analysis = analyze(conversation)
        assert not analysis.ready_for_triage
        assert analysis.next_topic == Topic.DOCUMENTOS
        conversation, _ = interview(story, "Não tenho nenhum prazo", "Ainda não tenho nada")
        analysis = analyze(conversation)
        assert analysis.ready_for_triage
        assert analysis.missing == []

    def test_urgent_with_known_area_is_ready_at_once(self) -> None:
        analysis = analyze(chat("Meu filho foi preso em flagrante"))
        assert analysis.urgency == "urgente"
        assert analysis.ready_for_triage
        assert analysis.area == "criminal"
        # Ready although the date was never told: the gap goes into the triage.
        assert Topic.QUANDO in analysis.missing_topics

    def test_urgent_without_area_is_not_ready(self) -> None:
        analysis = analyze(chat("Tenho audiência amanhã"))
        assert analysis.urgency == "urgente"
        assert analysis.area is None
        assert not analysis.ready_for_triage

    def test_turn_limit(self) -> None:
        vague = [
            "oi",
            "Aconteceu uma situação chata comigo semana passada",
            "hmm",
            "enfim",
            "sei lá",
            "não sei",
            "talvez",
            "hmm, deixa eu ver",
        ]
        assert len(vague) == MAX_USER_TURNS
        conversation, _ = interview(*vague[:-1])
        assert not analyze(conversation).ready_for_triage
        conversation, _ = interview(*vague)
        analysis = analyze(conversation)
        assert analysis.ready_for_triage
        assert analysis.area is None
        assert analysis.user_turns == MAX_USER_TURNS

    def test_neither_story_nor_area_after_asking_twice(self) -> None:
        conversation, _ = interview("Oi", "é complicado", "não sei", "hmm", "sei lá")
        analysis = analyze(conversation)
        assert analysis.ready_for_triage
        assert analysis.unanswered_topics == [Topic.FATO, Topic.AREA]
        assert analysis.facts["o_que_aconteceu"] == "não informado"

    def test_turn_limit_is_a_parameter(self) -> None:
        conversation, _ = interview("oi", "tudo bem?")
        assert analyze(conversation, max_user_turns=2).ready_for_triage


def test_same_conversation_same_analysis_with_a_cold_or_warm_cache() -> None:
    conversation, _ = interview("Meu voo atrasou 10 horas ontem", "Azul", "não")
    scan_message.cache_clear()
    cold = analyze(conversation)
    assert analyze(conversation) == cold


def test_only_the_start_of_a_huge_message_is_read() -> None:
    filler = "bla " * (MAX_MESSAGE_CHARS // 4)
    analysis = analyze(chat("Meu voo foi cancelado. " + filler + "Meu irmão foi preso"))
    assert analysis.area == "consumidor"
    assert analysis.urgency == "baixa"


class TestAnswerAgainstQuestion:
    """The reported conversations: a reply is recorded only when it answers its question."""

    STORY = "Fui demitido sem justa causa ontem e a empresa Alfa não pagou minhas verbas"

    def test_a_worry_is_not_the_documents_answer_and_the_topic_is_asked_again(self) -> None:
        conversation, _ = interview(
            self.STORY, "Não tenho audiência", "Estou muito preocupado 😟 — o que faço?"
        )
        analysis = analyze(conversation)
        assert "documentos" not in analysis.facts
        assert not analysis.ready_for_triage
        assert analysis.next_topic == Topic.DOCUMENTOS and analysis.reasking
        assert analysis.last_reply_topic == Topic.DOCUMENTOS
        assert analysis.last_reply_evasion == "question"
        assert analysis.client_questions == ["next_steps"]

    def test_the_story_again_is_not_a_list_of_documents(self) -> None:
        conversation, _ = interview(
            self.STORY, "Não tenho audiência", "Trabalhei 3 anos como auxiliar administrativo…"
        )
        analysis = analyze(conversation)
        assert "documentos" not in analysis.facts
        assert analysis.reasking and analysis.last_reply_evasion == "off_topic"

    def test_an_answer_to_the_second_question_is_recorded(self) -> None:
        conversation, _ = interview(
            self.STORY, "Não tenho audiência", "Estou nervosa 😢", "tenho os holerites"
        )
        analysis = analyze(conversation)
        assert analysis.facts["documentos"] == "holerites"
        assert analysis.unanswered_topics == []
        assert analysis.ready_for_triage

    def test_a_second_miss_records_not_informed_and_moves_on(self) -> None:
        conversation, _ = interview(self.STORY, "Não tenho audiência", "o que faço?", "não sei")
        analysis = analyze(conversation)
        assert analysis.facts["documentos"] == "não informado"
        assert analysis.unanswered_topics == [Topic.DOCUMENTOS]
        assert Topic.DOCUMENTOS in analysis.missing_topics
        assert Topic.DOCUMENTOS not in analysis.answered_topics
        assert analysis.ready_for_triage and analysis.next_topic is None

    @pytest.mark.parametrize("reply", ["não sei", "Não lembro 😕", "quanto tempo demora?"])
    def test_not_knowing_when_is_asked_once_more(self, reply: str) -> None:
        conversation, _ = interview("O INSS cortou meu auxílio-doença", reply)
        analysis = analyze(conversation)
        assert "quando" not in analysis.facts
        assert analysis.next_topic == Topic.QUANDO and analysis.reasking
        conversation, _ = interview("O INSS cortou meu auxílio-doença", reply, "uns dois meses")
        analysis = analyze(conversation)
        assert analysis.facts["quando"] == "uns dois meses"
        assert not analysis.reasking

    def test_a_name_that_follows_a_worry_is_still_the_party(self) -> None:
        conversation, _ = interview(
            "Comprei uma geladeira que veio com defeito", "ontem", "tô desesperada", "Casas Bahia"
        )
        assert analyze(conversation).facts["partes"] == "Casas Bahia"

    def test_a_volunteered_fact_counts_even_in_an_evasive_reply(self) -> None:
        # Asked about the parties, the client worries but names the company on the way.
        conversation, _ = interview(
            "Meu voo foi cancelado", "ontem", "Estou preocupada, a Azul não responde ninguém"
        )
        analysis = analyze(conversation)
        assert "Azul" in analysis.facts["partes"]
        assert not analysis.reasking

    def test_not_knowing_whether_there_is_a_deadline_is_asked_once_more(self) -> None:
        conversation, _ = interview(self.STORY, "não sei se tem prazo")
        analysis = analyze(conversation)
        assert Topic.URGENCIA in analysis.missing_topics
        assert analysis.next_topic == Topic.URGENCIA and analysis.reasking
        assert analysis.last_reply_evasion == "unknown"
        conversation, _ = interview(self.STORY, "não sei se tem prazo", "não, nada marcado")
        assert Topic.URGENCIA in analyze(conversation).answered_topics


def test_the_same_session_with_a_different_last_message_is_analysed_anew() -> None:
    # Analyses are cached by the messages they read: a conversation of the same session and
    # length whose last message says something else must not get the earlier answer.
    first = analyze(chat("Fui demitido sem justa causa e a empresa não pagou minha rescisão"))
    second = analyze(chat("Meu voo para Recife foi cancelado e a companhia não me reembolsa"))
    assert (first.area, second.area) == ("trabalhista", "consumidor")
    again = analyze(chat("Fui demitido sem justa causa e a empresa não pagou minha rescisão"))
    assert again == first


def test_an_analysis_cannot_be_changed_in_place() -> None:
    # One analysis is shared by every caller that analyses the same conversation.
    analysis = analyze(chat("Fui demitido sem justa causa e a empresa não pagou minha rescisão"))
    with pytest.raises(ValidationError):
        analysis.area = "consumidor"  # type: ignore[misc]
    assert analyze(chat("Fui demitido sem justa causa e a empresa não pagou")).area == (
        "trabalhista"
    )


def test_the_analysis_cache_is_bounded_and_keeps_no_message_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A client can send long messages: the cache must not keep their texts alive, and must not
    # grow past its size however many conversations a replica sees.
    monkeypatch.setattr(analysis_module, "ANALYSIS_CACHE_SIZE", 20)
    text = "Fui demitido sem justa causa e a empresa não pagou minha rescisão. " * 50
    for n in range(30):
        analyze(chat(f"{text} Caso {n}."))
    cached = analysis_module._analyses
    assert len(cached) == 20
    assert not any(text[:40] in str(key) for key in cached)
