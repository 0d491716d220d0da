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
    signals are ignored when denied ("não tenho audiência marcada"). Several signals may share
    a kind (one level for the event, a lower one for its aftermath): the highest found counts.
    """

    kind: str
    level: str
    pattern: re.Pattern[str]
    reason: str
    urgent_reason: str | None = None
    escalate: re.Pattern[str] | None = None
    # When set, `escalate` raises the level only with this too in the sentence: a denied
    # treatment is urgent when the patient is in hospital or the case is an emergency.
    escalate_with: re.Pattern[str] | None = None
    negatable: bool = True
    # An event told as long past ("me agrediu no ano passado", "fui preso em 2019") is no
    # longer an emergency: at most "alta".
    fades: bool = False


# Soon enough that waiting for a regular appointment is too late.
NEAR_DATE = compile_patterns(
    [
        r"amanha\b",
        r"depois de amanha",
        r"(nesta|nessa|esta|essa) semana",
        r"semana que vem|proxima semana",
        r"(em|daqui a) ([1-7]|um|uma|dois|duas|tres|quatro|cinco|seis|sete) dias?\b",
        r"prazo de ([1-5]|um|dois|tres|quatro|cinco) dias?\b",
        r"proxim[oa]s? (\d{1,2} )?dias",
        r"(24|48|72) ?h(oras)?\b",
        r"ultimo dia",
    ]
)

# Long enough ago that the event itself is not today's emergency.
PAST_EVENT = compile_patterns(
    [
        r"(no )?ano passado|ano retrasado",
        r"(ha|faz) (mais de |uns |quase )?(\d+|um|dois|tres|quatro|cinco|alguns|varios) anos",
        r"anos atras",
        r"em (19|20)\d\d\b",
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
                r"cadeia|presidio|xadrez|xilindro",
                r"prend(er|eram|eu|ido|ida)\b",
                # "levaram ele pra delegacia", "ele tá lá na delegacia": held right now.
                r"(levaram|levou) \w+ (pra|para|pro|a) (a )?delegacia",
                r"(foi |foram )?levad[oa]s? (pra|para|pro|a) (a )?delegacia",
                r"(esta|ta|continua|ficou) (la )?(na|no) (delegacia|cadeia|presidio)",
                # Slang for the police taking someone ("os cana pegou meu primo").
                r"os cana\b",
            ]
        ),
        reason="há uma pessoa presa ou risco de prisão",
        fades=True,
    ),
    UrgencySignal(
        kind="violencia",
        level="urgente",
        pattern=compile_patterns(
            [
                r"violencia domestica",
                r"(preciso|quero|pedir|solicitar|conseguir) (de )?(uma )?medida protetiva",
                r"descumpr\w* (a )?medida protetiva|medida protetiva (foi )?descumprida",
                r"maria da penha",
                r"me (bate|bateu|agride|agrediu|espanca|espancou|ameaca|ameacou|enforcou|"
                r"esfaqueou|machucou)",
                r"ameac\w* de morte",
                r"(vai|vao|vou|quer|querem|prometeu|ameac\w*( de)?) (me |te |nos |a gente )?matar",
                r"risco de vida",
            ]
        ),
        reason="há relato de violência ou ameaça, com possível necessidade de medida protetiva",
        fades=True,
    ),
    # A protective order already in force protects; it is urgent again when the aggressor
    # comes back ("ele apareceu hoje na porta do meu trabalho").
    UrgencySignal(
        kind="violencia",
        level="alta",
        pattern=compile_patterns([r"medida protetiva"]),
        reason="há histórico de violência doméstica, com medida protetiva",
        urgent_reason="há medida protetiva desrespeitada ou risco atual de violência",
        escalate=compile_patterns(
            [
                r"descumpr\w*",
                r"apareceu|veio atras|foi atras|voltou a|de novo",
                r"hoje|ontem|agora",
            ]
        ),
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
                r"terapia\w*",
            ]
        ),
        reason="há tratamento de saúde envolvido",
        urgent_reason="há tratamento de saúde negado ou em risco (cirurgia, internação ou "
        "medicamento)",
        # Denied (or not authorised) *and* acute: a continuous treatment refused is "alta"
        # (an injunction within days), a surgery refused to a patient in hospital is today.
        escalate=compile_patterns(
            [
                r"nega\w*|negou|recus\w*",
                r"nao (quer )?(autoriz|cobr|liber)\w*",
                r"urgen\w*|emergencia",
            ]
        ),
        escalate_with=compile_patterns(
            [
                r"internad[oa]s?\b|internacao",
                r"\buti\b",
                r"cirurgia\w*",
                r"urgen\w*|emergencia",
                r"risco de vida|grave\b",
                r"quimioterapia|radioterapia|cancer",
            ]
        ),
        negatable=False,
    ),
    UrgencySignal(
        kind="despejo",
        level="alta",
        pattern=compile_patterns(
            [
                r"despej\w*",
                r"reintegracao de posse",
                r"desocupar (o|a) (imovel|casa|apartamento)",
                # "vai me botar pra fora", "tirar a gente de casa".
                r"(bot|coloc|jog|tir)\w* (me |nos |a gente |eu |ele |ela |eles |elas )?"
                r"(pra|para) fora",
                r"tirar (a gente|a familia|nos) (de casa|a forca)",
            ]
        ),
        reason="há ameaça de despejo",
        urgent_reason="há ordem de despejo ou desocupação iminente",
        escalate=compile_patterns([r"ordem\b", r"mandado", r"oficial de justica", r"liminar"]),
    ),
    UrgencySignal(
        kind="criancas",
        level="media",
        pattern=compile_patterns(
            [
                r"(mudar|mudando|mudou|viajar|viajando|ir embora|sair do pais|fugir|fugiu)\w* "
                r"(\w+ ){0,3}com (as |os |a |o )?(meus? |minhas? |nossos? |nossas? )?"
                r"(criancas|filh[oa]s?|menin[oa]s?)\b",
                r"(levar|levou|levando|levaram|sumiu com) (as |os |a |o )?"
                r"(meus? |minhas? |nossos? |nossas? )?(criancas|filh[oa]s?|menin[oa]s?) "
                r"(embora|para|pra|pro)\b",
            ]
        ),
        reason="há mudança ou viagem com os filhos sem acordo entre os pais",
        urgent_reason="há risco de os filhos serem levados nos próximos dias",
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
        pattern=compile_patterns(
            [r"cort\w* (d[ae] |a |o )?(minha |meu |nossa |nosso )?(luz|energia|agua)"]
        ),
        reason="houve corte de serviço essencial (luz ou água)",
    ),
    UrgencySignal(
        kind="beneficio_cortado",
        level="alta",
        pattern=compile_patterns(
            [
                r"beneficio (foi )?(cortad|suspens|cessad)\w*",
                r"(cortou|cortaram|suspendeu|suspenderam|cessou|cessaram) (o |a )?(meu |minha )?"
                r"(beneficio|auxilio|aposentadoria|bpc|loas|pensao)",
            ]
        ),
        reason="há benefício negado ou cortado, afetando a renda do cliente",
    ),
    UrgencySignal(
        kind="invasao",
        level="alta",
        pattern=compile_patterns(
            [
                r"invad\w* (o |a |meu |minha |nosso |nossa )?(terreno|lote|imovel|area|"
                r"propriedade|sitio|chacara|fazenda)",
                r"esbulho",
            ]
        ),
        reason="há invasão de imóvel: a posse recente pode ser retomada por liminar",
    ),
    UrgencySignal(
        kind="pericia",
        level="alta",
        pattern=compile_patterns(
            [
                r"(tenho|tem|vou ter|marcaram|marcou|agendaram|agendou) (uma )?pericia",
                r"pericia (\w+ ){0,3}(marcada|agendada|amanha)",
            ]
        ),
        reason="há perícia marcada, que decide o benefício",
    ),
    # Losing all income is pressing whatever the area (benefit, wages, support).
    UrgencySignal(
        kind="sem_renda",
        level="alta",
        pattern=compile_patterns(
            [
                r"sem (nenhuma )?(renda|fonte de renda)",
                r"sem (salario|beneficio|renda) e sem",
                r"(nao|sem) (esta|estamos|ta|to|tamo|tamos|consigo|consegue|conseguimos) "
                r"(conseguindo )?(se |me |nos )?(manter|sustentar)",
                r"passando fome|sem (ter )?o que comer|sem dinheiro (nem )?(pra|para) comer",
            ]
        ),
        reason="o cliente ficou sem renda para se manter",
        negatable=False,
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
                r"atras\w* (o |os |nosso |nossos |meu |meus )?salario",
                r"sem receber",
                r"nao (me )?pag(ou|aram|a|am)\b",
                r"nao (me )?(deu|deram) nada",
                r"d[ei]miti\w*|demissao|mand(ad[oa]s?|aram|ou) (\w+ )?embora",
                r"dispens(ou|aram|ad[oa])",
                # A recurring deduction from the client's income.
                r"descont(ando|aram|am|ou)\b[^.;!?]{0,40}(todo mes|mensal|salario|beneficio|"
                r"aposentadoria|pensao)",
            ]
        ),
        reason="há valores deixando de ser pagos e prazos de prescrição a observar",
        negatable=False,
    ),
    UrgencySignal(
        kind="beneficio_negado",
        level="media",
        pattern=compile_patterns(
            [
                r"indeferi\w*",
                r"(inss|previdencia) (\w+ ){0,3}(negou|negaram|nao (quer|aceitou|reconheceu))",
                r"(negou|negaram) (o |a )?(meu |minha )?(pedido|beneficio|auxilio|aposentadoria|"
                r"bpc|loas|pensao|salario[- ]maternidade)",
                r"beneficio (foi )?negad\w*",
            ]
        ),
        reason="há benefício negado pelo INSS, com prazo de 30 dias para recorrer",
        negatable=False,
    ),
)

LEVEL_RANK: dict[str, int] = {"baixa": 0, "media": 1, "alta": 2, "urgente": 3}

# Phrases in which a signal or area word means something else, blanked before areas and
# urgency are read (the part named `w`, or the whole match). "meu salário ficou preso" is
# money held by a court, not an arrest; "tive alta" is a discharge from hospital.
FALSE_FRIENDS: tuple[re.Pattern[str], ...] = (
    re.compile(
        r"\b(dinheiro|salario|saldo|valor|grana|beneficio|pix)\w*\b[^.;!?\n]{0,30}?"
        r"\b(?P<w>pres[oa]s?)\b"
    ),
    re.compile(r"\b(tive|recebi|dei|deram|teve|recebeu) alta\b"),
)
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
