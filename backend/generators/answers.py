"""Does a client's message answer the question it replies to, and what did the client ask?

The interviewer asks about one topic at a time (`questions.Topic`). A reply counts as the
answer only when it addresses that topic: a story for "what happened", a date or a period for
"when", people or companies for "who", a deadline/hearing or a clear "não" for urgency, a list
of documents or a clear "não tenho" for documents. Anything else (a worry, a question back,
"não sei", an unrelated remark) is an `Evasion`: the analysis does not record it as the fact,
the interviewer acknowledges it and asks again in other words once, and a second miss records
the topic as "não informado".

`client_questions` finds what the client asked (next steps, time, cost, confidentiality,
documents) so the interviewer can answer before asking its own question.

Both are pure functions of the message text (and the topic), cached like `scan.scan_message`.
Patterns are written folded (lower case, no accents; see `text.fold`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from backend.generators import lexicon
from backend.generators.questions import Topic
from backend.generators.scan import MessageScan, scan_message
from backend.generators.text import compile_patterns

ANSWER_CACHE_SIZE = 4_096
# A reply to "what happened" with no recognised phrase is a story from this many words on,
# greetings and fillers not counted (when it is not a worry, a question or a "não sei").
STORY_REPLY_MIN_WORDS = 5
# A short reply to "who is involved" is taken as a name ("Azul", "magazine luiza").
NAME_REPLY_MAX_WORDS = 6


class Evasion(StrEnum):
    """Why a reply did not answer the question it followed."""

    QUESTION = "question"  # asked something back ("o que eu faço?")
    WORRY = "worry"  # "estou muito preocupado 😟"
    UNKNOWN = "unknown"  # "não sei", "não lembro", "é complicado"
    CONFUSED = "confused"  # "não entendi", "como assim?"
    OFF_TOPIC = "off_topic"  # said something else


class ClientQuestion(StrEnum):
    """What a client asks the interviewer, in the order the answers are given."""

    NEXT_STEPS = "next_steps"
    TIME = "time"
    COST = "cost"
    CONFIDENTIALITY = "confidentiality"
    DOCUMENTS = "documents"
    OTHER = "other"


@dataclass(frozen=True)
class Answer:
    """How one reply relates to the question it followed.

    `words`: what to record for the topic when the reply addresses it in words the scan does
    not pick up itself (a name, "só um áudio", "faz tempo"); None when the scan's own facts
    (recognised dates, parties, documents) are the answer, or when it does not address it.
    """

    addresses: bool
    evasion: Evasion | None = None
    words: str | None = None


_UNKNOWN = compile_patterns(
    [
        r"nao (sei|lembro|me lembro|recordo|faco (a menor )?ideia|tenho (certeza|ideia))",
        r"sei la\b",
        r"nem sei\b",
        r"esqueci\b",
        r"(e|eh) complicad[oa]",
        r"dificil (de )?(explicar|dizer)",
        r"longa historia",
        r"prefiro nao (dizer|falar|responder)",
    ]
)
# "Não sei se tem prazo": the deadline is named, but not told.
_UNSURE_WHETHER = compile_patterns([r"nao (sei|tenho certeza|lembro) se\b", r"sei la se\b"])
_CONFUSED = compile_patterns(
    [r"nao entendi", r"como assim\b", r"o que (voce )?quer dizer", r"pode repetir"]
)
_WORRY = compile_patterns(
    [
        r"preocupad\w*",
        r"nervos\w*",
        r"ansios\w*|ansiedade",
        r"angustiad\w*|angustia\b",
        r"desesperad\w*|desespero",
        r"assustad\w*|apavorad\w*",
        r"(com|tenho|to|estou) (muito )?medo",
        r"aflit\w*",
        r"chorando|triste\b",
        r"nao aguento",
        r"perdid[oa] (sem saber|nisso|com isso)",
    ]
)
_WORRY_EMOJI = re.compile(
    "[\U0001f61f\U0001f622\U0001f62d\U0001f630\U0001f625\U0001f61e"
    "\U0001f614\U0001f641\u2639\U0001f629\U0001f62b\U0001f628\U0001f631"
    "\U0001f494\U0001f613]"
)
# A reply that starts by denying has nothing to list ("não", "nada marcado", "nenhum").
_DENIAL = re.compile(
    r"\W*(nao|nada|nenhum|nenhuma|sem|negativo|nunca|acho que nao|ainda nao|por enquanto nao)\b"
)
# Words only the filler of a conversation (and its greetings) is made of.
_FILLER = re.compile(
    r"sim|nao|ok|ta|ah|hmm+|hum|entendi|obrigad[oa]|oi|ola|certo|beleza|enfim|bom|boa|dia|"
    r"tarde|noite|tudo|bem|e|entao|isso|com|voce|"
    # ... and of its courtesies ("obrigado pela atenção", "valeu, muito obrigada mesmo").
    r"pela|pelo|por|atencao|ajuda|muito|mesmo|valeu|tchau|favor|agradeco|desde|ja"
)

_NUMBER = (
    r"\d{1,3}|um|uma|dois|duas|tres|quatro|cinco|seis|sete|oito|nove|dez|onze|doze|alguns|"
    r"algumas|poucos|poucas|varios|varias"
)
_VAGUE_WHEN = compile_patterns(
    [
        r"(ha|faz|fazem) (muito |pouco |algum |bastante )?tempo",
        r"(ha|faz|fazem) (uns |umas |alguns |algumas |mais de |quase |poucos |poucas )?"
        r"(dias|semanas|meses|anos)\b",
        rf"(uns |umas |cerca de |quase |mais de )?({_NUMBER}) (dias|semanas|meses|anos)\b",
        r"(19|20)\d{2}\b",
        r"(janeiro|fevereiro|marco|abril|maio|junho|julho|agosto|setembro|outubro|novembro|"
        r"dezembro)\b",
        r"(segunda|terca|quarta|quinta|sexta|sabado|domingo)\b",
        r"(recentemente|agora ha pouco|outro dia|esses dias|estes dias|semana retrasada)",
        r"(comeco|inicio|final|fim|meio) d[eo]s?\b",
        r"desde (que|o|a|quando)\b",
        r"(semana|mes|ano) (que vem|passad[oa])",
    ]
)
_PERSON = compile_patterns(
    [
        r"(um|uma|o|a|meu|minha|esse|essa|aquele|aquela|uns|umas) "
        r"(cara|homem|mulher|moc[oa]|senhor[a]?|rapaz|pessoa|vendedor\w*|gerente|don[oa]|"
        r"atendente|funcionari\w*|tecnic[oa]|medic[oa]|advogad[oa]|corretor\w*|supervisor\w*|"
        r"encarregad[oa]|irma[o]?|pai|mae|ti[oa]|prim[oa]|sogr[oa]|cunhad[oa]|namorad[oa]|"
        r"amig[oa]|colegas?|diretor\w*|coordenador\w*|dentista|clinica|escola|faculdade|"
        r"academia|oficina|mecanic[oa]|pedreiro|empreiteir[oa])\b",
        r"(site|aplicativo|app|marketplace|mercado livre|shopee|amazon)\b",
        r"(governo|estado|municipio|orgao|uniao|detran|justica)\b",
    ]
)
# A proper name after the first word ("trabalhava na Metalúrgica Silva", "a Azul não responde").
_PROPER_NAME = re.compile(r"(?<=\s)[A-ZÀ-Ý][\w&'-]*(?:\s+(?:d[aeo]s?\s+)?[A-ZÀ-Ý][\w&'.-]*)*")
_DOCUMENT_WORDS = compile_patterns(
    [
        r"document\w*",
        r"pap(el|eis)\b",
        r"provas?\b",
        r"audios?\b",
        r"gravac\w*|gravei\b|gravad[oa]s?\b",
        r"arquivos?\b",
        r"notas?\b",
        r"cartas?\b",
        r"capturas? de tela|tela\b",
        r"registros?\b",
        r"cart(ao|oes) de embarque|passage(m|ns)\b|bilhetes?\b",
        r"numero do pedido|pedido\b",
        r"rg\b|cpf\b|identidade\b",
        r"declarac\w*",
        r"termos?\b",
        r"sentenca\b|processo\b|decisao\b",
        r"tenho tudo|tenho todos",
        r"carteira (assinada|de trabalho|profissional)",
    ]
)
# "Tenho o cartão de embarque": the documents are what follows.
_HAVE = re.compile(
    r"^\s*(eu\s+)?(tenho|guardei|possuo)\s+(s[oó]\s+)?((o|a|os|as|um|uma|uns|umas)\s+)?",
    re.IGNORECASE,
)
_NEAR_OR_DATE = re.compile(lexicon.NEAR_DATE.pattern + r"|\b\d{1,2}/\d{1,2}|\bdia \d{1,2}\b")


def _evasion(scan: MessageScan) -> Evasion:
    text = scan.text
    if text.search(_CONFUSED):
        return Evasion.CONFUSED
    if _asks(scan):
        return Evasion.QUESTION
    if text.search(_WORRY) or _WORRY_EMOJI.search(text.original):
        return Evasion.WORRY
    if text.search(_UNKNOWN):
        return Evasion.UNKNOWN
    return Evasion.OFF_TOPIC


def worried(content: str) -> bool:
    """The client says they are worried, scared, anxious (in words or with an emoji)."""
    text = scan_message(content).text
    return text.search(_WORRY) is not None or _WORRY_EMOJI.search(text.original) is not None


def _asks(scan: MessageScan) -> bool:
    return "?" in scan.text.folded or bool(client_questions(scan.text.original))


def _evasive(scan: MessageScan) -> bool:
    """A worry, a question, a "não sei": never taken as the free-form answer itself."""
    return _evasion(scan) is not Evasion.OFF_TOPIC


def _clear_denial(scan: MessageScan) -> bool:
    folded = scan.text.folded
    unsure = scan.text.search(_UNKNOWN) or scan.text.search(_CONFUSED)
    return bool(_DENIAL.match(folded)) and not unsure


def _meaningful_words(scan: MessageScan) -> list[str]:
    return [w for w in re.findall(r"\w+", scan.text.folded) if not _FILLER.fullmatch(w)]


def _check(topic: Topic, scan: MessageScan) -> Answer:
    text = scan.text
    if topic is Topic.FATO:
        if scan.specific or any(scan.general_hits) or scan.parties:
            return Answer(True)
        story = len(_meaningful_words(scan)) >= STORY_REPLY_MIN_WORDS
        if story and not _evasive(scan):
            return Answer(True)
    elif topic is Topic.AREA:
        if any(scan.general_hits) or scan.specific:
            return Answer(True)
    elif topic is Topic.QUANDO:
        if scan.when:
            return Answer(True)
        vague = text.search(_VAGUE_WHEN)
        # "não lembro, faz tempo" tells a period; "vocês atendem no sábado?" does not.
        if vague is not None and not _asks(scan):
            return Answer(True, words=vague.original)
    elif topic is Topic.PARTES:
        if scan.parties:
            return Answer(True)
        short = _meaningful_words(scan) and scan.words <= NAME_REPLY_MAX_WORDS
        if (short or text.search(_PERSON)) and not _evasive(scan):
            return Answer(True, words=text.original)
        # Only the names from a longer or worried reply, not the whole of it.
        names = _PROPER_NAME.findall(text.original)
        if names and not _asks(scan):
            return Answer(True, words=", ".join(dict.fromkeys(names)))
    elif topic is Topic.URGENCIA:
        if text.search(_NEAR_OR_DATE):
            return Answer(True)
        told = scan.urgency or scan.urgency_mentioned or _clear_denial(scan)
        if told and not text.search(_UNSURE_WHETHER):
            return Answer(True)
    elif topic is Topic.DOCUMENTOS:
        if scan.documents or scan.no_documents or _clear_denial(scan):
            return Answer(True)
        if text.search(_DOCUMENT_WORDS) and not _evasive(scan):
            return Answer(True, words=_HAVE.sub("", text.original, count=1) or text.original)
    return Answer(False, evasion=_evasion(scan))


@lru_cache(maxsize=ANSWER_CACHE_SIZE)
def check_answer(topic: Topic, content: str) -> Answer:
    """Whether `content`, replying to a question about `topic`, answers it."""
    return _check(topic, scan_message(content))


_QUESTIONS: tuple[tuple[ClientQuestion, re.Pattern[str]], ...] = (
    (
        ClientQuestion.NEXT_STEPS,
        compile_patterns(
            [
                r"o que (eu )?(faco|fazer|devo fazer|posso fazer|tenho que fazer|preciso fazer)",
                # "E agora?", not "e agora me mandou embora".
                r"e agora(?=\s*([?!.,]|o que|$))",
                r"proximos? passos?",
                r"o que (acontece|vai acontecer|vem) (agora|depois|em seguida|a seguir)",
                r"como (funciona|vai ser|fica)\b",
                r"mais alguma coisa",
                r"(preciso|tenho que|devo) fazer (algo|alguma coisa|mais alguma)",
            ]
        ),
    ),
    (
        ClientQuestion.TIME,
        compile_patterns(
            [
                r"quanto tempo",
                r"(vai|vao|deve|ainda) demorar|demora muito|quanto demora",
                r"quando (o advogado|a advogada|alguem|voces|vou ser|serei|vao|vou ter|"
                r"me (ligam|retornam|respondem|chamam))",
                r"(me )?(retornam|ligam|respondem) quando",
                r"(tem|qual o|qual e o) prazo (de|para) (resposta|retorno|atendimento)",
            ]
        ),
    ),
    (
        ClientQuestion.COST,
        compile_patterns(
            [
                r"quanto (custa|vou pagar|vai custar|vai sair|sai\b|fica\b|cobra)",
                r"custo (da|do|de)\b",
                r"gratuit\w*|de graca|gratis\b",
                r"(preciso|tenho que|vou ter que|vou precisar) pagar",
                r"honorario\w*",
                r"valor da (consulta|triagem)",
                r"voces cobram\b",
            ]
        ),
    ),
    (
        ClientQuestion.CONFIDENTIALITY,
        compile_patterns(
            [
                r"sigil\w*",
                r"confidencia\w*",
                r"segredo\b",
                r"privacidade|lgpd\b",
                r"(meus|os meus) dados",
                r"(vai|vao|pode|podem) (saber|ficar sabendo|descobrir)",
                r"anonim\w*",
                r"fica (so )?entre (nos|a gente)",
            ]
        ),
    ),
    (
        ClientQuestion.DOCUMENTS,
        compile_patterns(
            [
                r"(que|quais|qual) (documento|papel|papeis|prova)s? (eu )?(preciso|devo|tenho que|"
                r"levo|vou precisar|separo|junto|mando|envio)",
                r"(preciso|devo|tenho que) (levar|separar|juntar|mandar|enviar|trazer) "
                r"(algum |alguma |os |as |que |quais )?(documento|papel|papeis|prova|foto|print)",
                r"(onde|como) (mando|envio|anexo|mandar|enviar|anexar)",
            ]
        ),
    ),
)


@lru_cache(maxsize=ANSWER_CACHE_SIZE)
def client_questions(content: str) -> tuple[ClientQuestion, ...]:
    """What the client asked in a message; `OTHER` for a question we have no answer for."""
    text = scan_message(content).text
    found = tuple(kind for kind, pattern in _QUESTIONS if text.search(pattern))
    if not found and "?" in text.folded:
        return (ClientQuestion.OTHER,)
    return found
