"""What the offline analysis recognises besides the area: urgency signals, dates, parties,
documents and amounts.

Every pattern is a regular expression over *folded* text (lower case, no accents; see
`text.fold`), anchored at a word start, except the few marked as matched on the original text
(proper names, amounts). Tables, not code, so a reviewer can extend them without touching
`analysis.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.generators.text import compile_patterns

# --- Urgency ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrgencySignal:
    """A situation that makes the case urgent, with the reason told to client and lawyer.

    `escalate` lists the folded patterns that, in the same message, raise the level to
    "urgente" (a hearing *tomorrow*, an eviction *order*, a *denied* surgery). `negatable`
    signals are ignored when denied ("não tenho audiência marcada").
    """

    kind: str
    level: str
    pattern: re.Pattern[str]
    reason: str
    urgent_reason: str | None = None
    escalate: re.Pattern[str] | None = None
    negatable: bool = True


# Soon enough that waiting for a regular appointment is too late.
NEAR_DATE = compile_patterns(
    [
        r"amanha\b",
        r"depois de amanha",
        r"(nesta|nessa|esta|essa) semana",
        r"(em|daqui a) ([1-5]|um|uma|dois|duas|tres|quatro|cinco) dias?\b",
        r"prazo de ([1-5]|um|dois|tres|quatro|cinco) dias?\b",
        r"proxim[oa]s? (\d{1,2} )?dias",
        r"(24|48|72) ?h(oras)?\b",
        r"ultimo dia",
    ]
)

URGENCY_SIGNALS: tuple[UrgencySignal, ...] = (
    UrgencySignal(
        kind="prisao",
        level="urgente",
        pattern=compile_patterns(
            [
                r"pres[oa]s?\b",
                r"prisao",
                r"flagrante",
                r"detid[oa]s?\b",
                r"mandado de prisao",
                r"audiencia de custodia",
            ]
        ),
        reason="há uma pessoa presa ou risco de prisão",
    ),
    UrgencySignal(
        kind="violencia",
        level="urgente",
        pattern=compile_patterns(
            [
                r"violencia domestica",
                r"medida protetiva",
                r"maria da penha",
                r"me (bateu|agrediu|espancou|ameacou)",
                r"ameac\w* de morte",
                r"risco de vida",
            ]
        ),
        reason="há relato de violência ou ameaça, com possível necessidade de medida protetiva",
    ),
    UrgencySignal(
        kind="saude",
        level="alta",
        pattern=compile_patterns(
            [
                r"internad[oa]s?\b|internacao",
                r"\buti\b",
                r"cirurgia\w*",
                r"medicament\w*|remedio\w*",
                r"tratamento\w*",
                r"quimioterapia|radioterapia|cancer",
                r"home care",
            ]
        ),
        reason="há tratamento de saúde envolvido",
        urgent_reason="há tratamento de saúde negado ou em risco (cirurgia, internação ou "
        "medicamento)",
        escalate=compile_patterns(
            [
                r"nega\w*|negou|recus\w*",
                r"nao (quer )?(autoriz|cobr|liber)\w*",
                r"urgen\w*|emergencia",
                r"risco de vida|grave\b",
            ]
        ),
        negatable=False,
    ),
    UrgencySignal(
        kind="despejo",
        level="alta",
        pattern=compile_patterns(
            [r"despej\w*", r"reintegracao de posse", r"desocupar (o|a) (imovel|casa|apartamento)"]
        ),
        reason="há ameaça de despejo",
        urgent_reason="há ordem de despejo ou desocupação iminente",
        escalate=compile_patterns([r"ordem\b", r"mandado", r"oficial de justica", r"liminar"]),
    ),
    UrgencySignal(
        kind="audiencia",
        level="alta",
        pattern=compile_patterns([r"audiencia"]),
        reason="há audiência marcada",
        urgent_reason="há audiência marcada para os próximos dias",
    ),
    UrgencySignal(
        kind="prazo",
        level="alta",
        pattern=compile_patterns(
            [r"prazo\w*", r"intimad[oa]s?\b|intimacao", r"citad[oa]s?\b|citacao"]
        ),
        reason="há prazo correndo (intimação, citação ou prazo para responder)",
        urgent_reason="há prazo que termina nos próximos dias",
    ),
    UrgencySignal(
        kind="liminar",
        level="alta",
        pattern=compile_patterns([r"liminar\w*", r"tutela de urgencia"]),
        reason="há pedido ou decisão liminar envolvida",
    ),
    UrgencySignal(
        kind="bloqueio",
        level="alta",
        pattern=compile_patterns(
            [
                r"bloque\w* (d[ae] )?(a |o )?(minha |meu )?(conta|salario|cartao)",
                r"penhora\w*",
                r"sisbajud",
            ]
        ),
        reason="há bloqueio de conta ou penhora de bens",
    ),
    UrgencySignal(
        kind="servico_essencial",
        level="alta",
        pattern=compile_patterns([r"cort\w* (d[ae] )?(luz|energia|agua)"]),
        reason="houve corte de serviço essencial (luz ou água)",
    ),
    UrgencySignal(
        kind="beneficio_cortado",
        level="alta",
        pattern=compile_patterns(
            [
                r"beneficio (foi )?(cortad|suspens|cessad|negad|indeferid)\w*",
                r"indeferid\w*",
                r"(negou|negaram|cortou|cortaram|suspendeu|indeferiu) (o |a )?(meu |minha )?"
                r"(beneficio|auxilio|aposentadoria|bpc|loas|pensao)",
            ]
        ),
        reason="há benefício negado ou cortado, afetando a renda do cliente",
    ),
    UrgencySignal(
        kind="negativacao",
        level="media",
        pattern=compile_patterns([r"negativad\w*|negativacao", r"nome sujo", r"serasa|spc\b"]),
        reason="o nome do cliente está negativado",
        negatable=False,
    ),
    UrgencySignal(
        kind="renda",
        level="media",
        pattern=compile_patterns(
            [
                r"salarios? atrasad\w*",
                r"sem receber",
                r"nao (me )?pag(ou|aram|a|am)\b",
                r"demiti\w*|demissao|mandad[oa] embora",
            ]
        ),
        reason="há valores deixando de ser pagos e prazos de prescrição a observar",
        negatable=False,
    ),
)

LEVEL_RANK: dict[str, int] = {"baixa": 0, "media": 1, "alta": 2, "urgente": 3}
DEFAULT_URGENCY_REASON = "não foram identificados prazos, audiências ou riscos imediatos"


# --- Facts -----------------------------------------------------------------------------------

_MONTHS = (
    r"janeiro|fevereiro|marco|abril|maio|junho|julho|agosto|setembro|outubro|novembro|dezembro"
)
_NUM = r"\d{1,3}|um|uma|dois|duas|tres|quatro|cinco|seis|sete|oito|nove|dez|onze|doze|alguns|algumas|poucos|poucas|varios|varias"  # noqa: E501
_WEEKDAYS = r"segunda|terca|quarta|quinta|sexta|sabado|domingo"

WHEN = compile_patterns(
    [
        r"\d{1,2}/\d{1,2}(/\d{2,4})?\b",
        rf"\d{{1,2}} de ({_MONTHS})( de \d{{4}})?",
        rf"(em|desde|no inicio de|no fim de|no final de) ({_MONTHS})( de \d{{4}})?",
        r"(em|desde|no ano de|no ano passado de) (19|20)\d{2}\b",
        r"(hoje|ontem|anteontem)\b",
        r"(semana|mes|ano) (passad[oa]|retrasad[oa])",
        r"(no |em )?(comeco|inicio|fim|final|meio) (do|deste|desse|de) (ano|mes|semana)",
        r"(este|esse|neste|nesse) (ano|mes)\b",
        r"(na|no) (ultim[oa]) (semana|mes|ano)",
        rf"({_WEEKDAYS})(-feira)? passad[oa]",
        rf"(ha|faz|fazem) (cerca de |uns |umas |mais de |quase |menos de )?({_NUM}) "
        r"(dias?|semanas?|mes|meses|anos?)\b",
        rf"(({_NUM}) (dias?|semanas?|mes|meses|anos?) atras)",
    ]
)
# A date in a clause about a hearing or deadline is when something *will* happen, not when
# the problem happened.
FUTURE_CONTEXT = compile_patterns(
    [r"audiencia", r"prazo", r"venc\w*", r"marcad[oa]", r"agendad[oa]", r"(ate|para) (o )?dia"]
)

# Folded pattern -> how the party is shown. Order is display order.
PARTIES: tuple[tuple[str, str], ...] = (
    (r"empregador\w*", "empregador"),
    (r"patr(ao|oa)\b", "patrão"),
    (r"empresa\w*", "empresa"),
    (r"chefe\b", "chefe"),
    (r"banco\w*", "banco"),
    (r"loja\w*", "loja"),
    (r"companhia aerea|cia aerea", "companhia aérea"),
    (r"operadora\w*", "operadora"),
    (r"plano de saude|convenio medico", "plano de saúde"),
    (r"inss\b", "INSS"),
    (r"ex[- ]?(marido|esposo)", "ex-marido"),
    (r"ex[- ]?(mulher|esposa)", "ex-esposa"),
    (
        r"ex[- ]?companheir[oa]|(meu|minha) ex\b(?![- ]?(marido|esposo|mulher|esposa|companheir))",
        "ex-companheiro(a)",
    ),
    (r"(meu|minha|o|a) (marido|esposa|esposo)\b", "cônjuge"),
    (r"filh[oa]s?\b", "filho(s)"),
    (r"vizinh[oa]s?\b", "vizinho"),
    (r"proprietari[oa]s?\b|locador\w*|dono do (imovel|apartamento)", "proprietário/locador"),
    (r"inquilin[oa]s?\b|locatari[oa]s?\b", "inquilino"),
    (r"imobiliaria", "imobiliária"),
    (r"construtora", "construtora"),
    (r"seguradora", "seguradora"),
    (r"prefeitura", "prefeitura"),
    (r"receita federal|fisco|sefaz", "Receita/fisco"),
    (r"policia\w*|delegad[oa]", "polícia"),
    (r"motorista", "motorista"),
    (r"hospital", "hospital"),
    (r"condominio|sindic[oa]\b", "condomínio"),
    (r"socio\w*", "sócio"),
)
PARTY_ANY = compile_patterns([p for p, _ in PARTIES])
# "a empresa Alfa Ltda", "o banco Beta": the proper name right after the kind of party.
NAMED_PARTY = re.compile(
    r"\b(?i:empresa|banco|loja|operadora|construtora|imobiliária|imobiliaria|seguradora|"
    r"companhia aérea)\s+((?:[A-Z0-9][\w&'-]*)(?:\s+(?:[A-Z0-9][\w&'.-]*|de|do|da|S\.A\.))*)"
)

DOCUMENTS: tuple[tuple[str, str], ...] = (
    (r"contratos?\b", "contrato"),
    (r"carteira de trabalho|ctps\b", "carteira de trabalho"),
    (r"holerite\w*|contracheque\w*", "holerites"),
    (r"termo de rescisao|trct\b", "termo de rescisão"),
    (r"extrato\w*", "extratos"),
    (r"boletim de ocorrencia|\bb\.?o\b\.?", "boletim de ocorrência"),
    (r"laudo\w*", "laudo"),
    (r"atestado\w*", "atestado"),
    (r"receita medica|relatorio medico|exames?\b", "documentos médicos"),
    (r"nota fiscal|notas fiscais|cupom fiscal", "nota fiscal"),
    (r"comprovante\w*|recibo\w*", "comprovantes"),
    (r"e-?mails?\b", "e-mails"),
    (r"mensage\w*|prints?\b|whatsapp|conversas", "mensagens"),
    (r"fotos?\b|videos?\b", "fotos ou vídeos"),
    (r"certidao|certidoes", "certidões"),
    (r"faturas?\b|boletos?\b", "faturas ou boletos"),
    (r"cnis\b", "CNIS"),
    (r"carta (de )?(indeferimento|concessao)", "carta do INSS"),
    (r"notificac\w*|intimac\w*|mandado\b", "notificação ou intimação"),
    (r"protocolos?\b", "protocolos de atendimento"),
    (r"testemunha\w*", "testemunhas"),
)
DOCUMENT_ANY = compile_patterns([p for p, _ in DOCUMENTS])
NO_DOCUMENTS = compile_patterns(
    [
        r"(nao|nenhum) (tenho|tem|possuo) (nenhum )?(documento|papel|prova|comprovante)\w*",
        r"nenhum documento",
        r"sem (nenhum )?(documento|prova)\w*",
    ]
)

AMOUNT = re.compile(
    r"R\$\s?\d[\d.,]*(?:\s?(?:mil|milh[õo]es))?|\b\d+(?:[.,]\d+)?\s?(?:mil|milh[õo]es)(?:\s?reais)?"
    r"|\b\d[\d.]*\s?reais\b",
    re.IGNORECASE,
)
