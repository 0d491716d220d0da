"""The areas of law the offline analysis recognises, with their sub-areas.

Every pattern is a regular expression over *folded* text (lower case, no accents; see
`text.fold`), anchored at a word start. Tables, not code, so a lawyer reviewing the triage can
read and extend them without touching the logic in `analysis.py`.

Scoring (why two weights): a general word ("salário", "loja", "filho") hints at an area and
often shows up on the side of a story; a sub-area phrase ("verbas rescisórias", "voo
cancelado", "LOAS") is much stronger evidence, so it counts three times (two incidental words
never outweigh it) and also names the sub-area. Which messages count how much is in
`analysis.py`. Accuracy on labelled conversations: `make eval` (`bench/triage_eval.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from backend.generators.text import compile_patterns


@dataclass(frozen=True)
class SubArea:
    label: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Area:
    key: str
    # "questão de direito {label}" / "advogado {lawyer}".
    label: str
    lawyer: str
    general: re.Pattern[str]
    sub_areas: tuple[SubArea, ...]
    # Examples used when asking for documents in this area.
    document_examples: str
    # Sub-areas that usually need more work (expert reports, several proceedings, estates).
    complex_sub_areas: frozenset[str] = field(default_factory=frozenset)


def _sub(label: str, *patterns: str) -> SubArea:
    return SubArea(label, compile_patterns(patterns))


AREAS: tuple[Area, ...] = (
    Area(
        key="trabalhista",
        label="trabalhista",
        lawyer="advogado trabalhista",
        general=compile_patterns(
            [
                r"emprego\w*",
                r"empregador\w*",
                r"patr(ao|oa)\b",
                r"chefe\b",
                r"trabalh\w*",
                r"salari\w*(?![- ]maternidade)",
                r"trampo\b|firma\b",
                r"supervisor\w*|encarregad[oa]\b",
                r"ferias\b",
                r"13o|decimo terceiro",
                r"clt\b",
                r"carteira de trabalho|ctps\b",
                r"sindicato",
                r"holerite\w*|contracheque\w*",
                r"funcionari\w*|expediente",
            ]
        ),
        sub_areas=(
            _sub(
                "demissão",
                r"d[ei]miti\w*",
                r"demissao",
                r"mand(ad[oa]s?|aram|ou) (\w+ )?embora",
                r"dispens(ad[oa]|ou|aram)",
                r"pedi (as contas|demissao)",
                r"justa causa",
                r"desligad[oa]|desligamento",
            ),
            _sub(
                "verbas rescisórias",
                # "recisão" is how many clients spell it.
                r"res?cis(ao|oes|ori\w*)",
                r"verbas\b",
                r"fgts\b",
                r"multa de 40",
                r"aviso previo",
                r"seguro[- ]desemprego",
            ),
            _sub("horas extras", r"horas? extras?", r"banco de horas", r"jornada", r"intervalo"),
            _sub("assédio", r"assedi\w*", r"humilh\w*"),
            _sub(
                "vínculo empregatício",
                r"sem (carteira|registro)",
                r"carteira assinada|registro em carteira",
                r"vinculo empregaticio",
            ),
            _sub(
                "acidente de trabalho",
                r"acidente (de|no) trabalho",
                r"doenca ocupacional",
                r"\bler\b|dort\b",
            ),
            _sub(
                "salários atrasados",
                r"salarios? atrasad\w*",
                r"atraso (no|do|de) salario",
                r"atras\w* (o |os |nosso |nossos |meu |meus )?salario",
            ),
        ),
        document_examples=(
            "carteira de trabalho, holerites, termo de rescisão, extrato do FGTS ou mensagens"
        ),
        complex_sub_areas=frozenset({"acidente de trabalho", "assédio"}),
    ),
    Area(
        key="consumidor",
        label="do consumidor",
        lawyer="advogado de direito do consumidor",
        general=compile_patterns(
            [
                r"compr(ei|ou|amos|a|ado|ada)\b",
                r"loja\w*",
                r"produto\w*",
                r"consumidor\w*",
                r"procon\b",
                r"reclame aqui",
                r"fornecedor\w*",
                r"operadora\w*",
                r"fatura\w*",
                r"cartao de credito",
                r"reembols\w*",
                r"atendimento",
                r"protocolo\w*",
                r"internet\b|telefonia|celular\b",
                r"entrega\w*",
                r"concessionaria\w*",
                r"contas? de (luz|agua|energia)",
                r"(companhia|empresa) de (energia|agua|luz|saneamento)",
                r"cort\w* (d[ae] |a |o )?(minha |meu |nossa |nosso )?(luz|energia|agua)",
            ]
        ),
        sub_areas=(
            _sub(
                "voo cancelado ou atrasado",
                r"voo\w*",
                r"companhia aerea|cia aerea",
                r"aeroporto",
                r"bagage\w*",
                r"overbooking",
            ),
            _sub(
                "produto com defeito",
                r"defeit\w*",
                r"nao funciona\w*|parou de funcionar",
                r"garantia",
                r"assistencia tecnica",
            ),
            _sub(
                "cobrança indevida",
                r"cobranc\w* indevid\w*",
                r"cobrad[oa]s? (indevidamente|duas vezes|a mais)",
                r"cobrando (indevidamente|a mais|uma compra)",
                r"compra que nao fiz|nao reconhec\w*",
                r"(compras?|emprestimos?|dividas?|contratos?|servicos?|financiamentos?|planos?) "
                r"que (eu )?(nunca|nao) (fiz|contratei|pedi|reconheco)",
            ),
            _sub(
                "negativação indevida",
                r"negativad\w*|negativacao",
                r"nome sujo",
                r"serasa|spc\b",
            ),
            _sub(
                "plano de saúde",
                r"plano de saude",
                r"convenio\b",
                r"operadora de saude",
                r"(nao quer|negou|negaram|recus\w*) (a )?cobr(ir|ertura)",
            ),
            _sub(
                "produto não entregue",
                r"nao (foi )?entreg\w*",
                r"nunca chegou|nao chegou",
            ),
            _sub("fraude bancária", r"golpe do pix|pix\b", r"cartao clonado|clon(ad|ar)\w*"),
            # A bank against its client is a consumer relation.
            _sub(
                "serviços bancários",
                r"bancos?\b(?! de horas)",
                r"consignad\w*",
                r"juros",
                r"tarifa\w*",
                r"cartao de credito",
            ),
        ),
        document_examples=(
            "nota fiscal, comprovantes de pagamento, protocolos de atendimento, e-mails ou prints"
        ),
    ),
    Area(
        key="familia",
        label="de família",
        lawyer="advogado de família",
        general=compile_patterns(
            [
                r"familia\w*",
                r"casamento|casad[oa]s?\b",
                r"ex[- ](marido|mulher|esposa|esposo|companheir[oa]|conjuge)",
                r"filh[oa]s?\b",
                r"crianca\w*",
                r"pensao(?! por morte)",
                # "meu ex" alone is the ex-partner.
                r"(meu|minha) ex\b(?![- ](patrao|chefe|empregador|funcionari))",
                r"(mae|pai) d[oa]s? (meus? |minhas? |nossos? |nossas? )?(filh\w*|criancas)",
            ]
        ),
        sub_areas=(
            _sub(
                "divórcio",
                r"divorci\w*",
                r"separa(r|cao|d[oa]s?)\b|separe\w*",
                r"fim do casamento",
            ),
            _sub(
                "pensão alimentícia",
                r"pensao alimenticia",
                r"alimentos\b",
                r"(paga|pagar|pagando|pague) (a )?pensao",
                r"pensao (d[oa]s?|para [oa]s?|pr[oa]s?) (meus? |minhas? )?filh",
            ),
            _sub("guarda", r"guarda\b", r"visita\w*", r"convivencia"),
            _sub(
                "partilha de bens",
                r"partilha",
                r"divisao (de|dos) bens",
                r"bens do casal",
                r"dividir (a casa|os bens|o imovel|o apartamento|tudo)",
                r"(compr|constru|adquir)\w* (tudo )?juntos?\b",
            ),
            _sub(
                "união estável",
                r"uniao estavel",
                r"sem casar( no papel)?",
                r"(vivi|vivemos|viveu|moramos|morei|morava|vive) (\w+ ){0,2}juntos?\b",
            ),
            _sub(
                "inventário e herança",
                r"inventario",
                r"heranca",
                r"testamento",
                r"deixou (uma |um |a |o )?(casa|carro|terreno|imove\w*|bens)",
            ),
            _sub("paternidade", r"paternidade", r"exame de dna|\bdna\b"),
        ),
        document_examples=(
            "certidões de casamento e de nascimento, comprovantes de renda e de despesas dos "
            "filhos ou mensagens"
        ),
        complex_sub_areas=frozenset({"partilha de bens", "inventário e herança"}),
    ),
    Area(
        key="previdenciario",
        label="previdenciário",
        lawyer="advogado previdenciário",
        general=compile_patterns(
            [
                r"inss\b",
                r"previdencia\w*",
                r"beneficio\w*",
                r"pericia\w*",
                r"cnis\b",
                r"contribuic\w*",
                r"auxilio\w*",
                r"meu inss",
                r"trabalhador\w* rural|segurad[oa] especial|roca\b|lavoura",
            ]
        ),
        sub_areas=(
            _sub("aposentadoria", r"aposentad\w*", r"aposentar", r"tempo de contribuicao"),
            _sub(
                "benefício por incapacidade (auxílio-doença)",
                r"auxilio[- ]doenca",
                r"(beneficio|auxilio) por incapacidade",
                r"afastad[oa] pelo inss",
            ),
            _sub("BPC/LOAS", r"bpc\b", r"loas\b", r"beneficio assistencial"),
            _sub(
                "pensão por morte",
                r"pensao por morte",
                r"pensao (dele|dela|do (meu )?(marido|esposo|pai)|da (minha )?(esposa|mae))",
            ),
            _sub("salário-maternidade", r"salario[- ]maternidade"),
            _sub("revisão de benefício", r"revisao (do|da|de) (beneficio|aposentadoria)"),
        ),
        document_examples=(
            "extrato do CNIS, carta de indeferimento do INSS, laudos e atestados médicos ou "
            "carteira de trabalho"
        ),
    ),
    Area(
        key="criminal",
        label="criminal",
        lawyer="advogado criminalista",
        general=compile_patterns(
            [
                r"crime\w*",
                r"policia\w*",
                r"delegad\w*|delegacia",
                r"boletim de ocorrencia|\bb\.?o\b\.?",
                r"inquerito",
                r"acusad[oa]s?|acusacao",
                r"processo criminal",
                r"agred\w*|agressao|agressor",
                r"trafico",
                r"homicidio",
                r"lesao corporal",
            ]
        ),
        sub_areas=(
            _sub(
                "prisão",
                r"pres[oa]s?\b",
                r"prisao",
                r"flagrante",
                r"detid[oa]s?\b",
                r"audiencia de custodia",
                r"cadeia|presidio|xadrez|xilindro",
                r"(levaram|levou) \w+ (pra|para|pro|a) (a )?delegacia",
                r"levad[oa]s? (pra|para|pro|a) (a )?delegacia",
                r"prend(er|eram|eu|ido|ida)\b",
                r"os cana\b",
            ),
            _sub(
                "violência doméstica",
                r"violencia domestica",
                r"maria da penha",
                r"medida protetiva",
                r"me (bate|bateu|agride|agrediu|espanca|espancou)",
            ),
            _sub(
                "crimes contra a honra",
                r"calunia\w*",
                r"difam\w*",
                r"injuri\w*",
                r"espalh\w*",
            ),
            _sub("furto ou roubo", r"furt\w*", r"roub\w*", r"assalt\w*"),
            _sub("estelionato", r"estelionat\w*", r"golpe\w*"),
            _sub(
                "ameaça",
                r"ameac\w*",
                r"(vai|vao|vou|quer|querem|prometeu) (me |te |nos |a gente )?matar",
            ),
        ),
        document_examples=(
            "boletim de ocorrência, intimações, laudos, fotos, mensagens ou nomes de testemunhas"
        ),
        complex_sub_areas=frozenset({"prisão"}),
    ),
    Area(
        key="civil",
        label="civil",
        lawyer="advogado civilista",
        general=compile_patterns(
            [
                r"indeniza\w*",
                r"prejuizo\w*",
                r"contrato\w*",
                r"divida\w*",
                r"emprestimo\w*",
                r"acordo\b",
                r"processar",
                r"execut(ad[oa]|ando)|execucao(?! fiscal)",
                r"obra\b|reforma\w*|pedreiro|empreiteir\w*|prestacao de servico",
            ]
        ),
        sub_areas=(
            _sub(
                "indenização por danos",
                r"danos? mora\w*",
                r"danos? materia\w*",
                r"indeniza\w*",
            ),
            _sub(
                "contratos",
                r"quebr\w* (o|do) contrato",
                r"descumpr\w*",
                r"clausula\w*",
                r"rescindir (o )?contrato",
                # Between private persons there is no supplier: civil, not consumer, law.
                r"(de|com|a) um particular|pessoa fisica|entre particulares",
            ),
            _sub(
                "acidente de trânsito",
                r"acidente de (transito|carro|moto)",
                r"batida\b",
                r"(bateu|bateram) (n[ao] |em |na traseira d[ao] )(meu |minha |nosso |nossa |um |"
                r"uma |o |a )?(carro|moto|veiculo|caminhao|onibus|bicicleta|traseira)",
                r"colisao",
                r"atropel\w*",
            ),
            _sub(
                "dívidas e cobranças",
                r"me deve\b|esta me devendo",
                r"nao me pag(ou|a)\b",
                r"agiota",
            ),
            _sub("direito de vizinhança", r"vizinh\w*", r"infiltrac\w*", r"barulho"),
        ),
        document_examples=(
            "contratos, comprovantes de pagamento, fotos, orçamentos, boletim de ocorrência ou "
            "mensagens"
        ),
    ),
    Area(
        key="tributario",
        label="tributário",
        lawyer="advogado tributarista",
        general=compile_patterns(
            [
                r"impostos?\b",
                r"tribut\w*",
                r"receita federal",
                r"fisco|sefaz",
                r"icms\b|\biss\b",
                r"refis\b",
                r"simples nacional",
                r"\bmei\b",
            ]
        ),
        sub_areas=(
            _sub(
                "imposto de renda",
                r"imposto de renda",
                r"irpf\b",
                r"malha fina",
                r"declaracao de (ir|imposto)",
            ),
            _sub("execução fiscal", r"execucao fiscal", r"divida ativa"),
            _sub("IPTU/IPVA", r"iptu\b", r"ipva\b"),
        ),
        document_examples=(
            "declarações de imposto de renda, notificações da Receita, guias e comprovantes de "
            "pagamento"
        ),
        complex_sub_areas=frozenset({"execução fiscal"}),
    ),
    Area(
        key="imobiliario",
        label="imobiliário",
        lawyer="advogado imobiliário",
        general=compile_patterns(
            [
                r"alug\w*",
                r"inquilin\w*",
                r"locador\w*|locatari\w*|locacao",
                r"proprietari[oa]s?\b",
                r"imove(l|is)\b",
                r"imobiliaria",
                r"condomini\w*",
                r"apartamento",
                r"terreno\w*|lote\b|\bposse\b",
                r"dono d[ao] (casa|imovel|apartamento|kitnet|quarto)",
            ]
        ),
        sub_areas=(
            _sub(
                "despejo e locação",
                r"despej\w*",
                r"aluguel|alugueis|alugad[oa]",
                r"contrato de locacao",
            ),
            _sub(
                "compra e venda de imóvel",
                r"escritura",
                r"construtora",
                r"distrato",
                r"financiamento imobiliario",
            ),
            _sub("condomínio", r"condomini\w*", r"sindic[oa]\b"),
            _sub(
                "usucapião",
                r"usucapiao",
                r"(passar|colocar|regularizar|transferir) (a casa |o imovel |o terreno |o lote )?"
                r"(pro|para o|no|em) meu nome",
            ),
            _sub(
                "invasão e posse",
                r"invad\w* (o |a |meu |minha |nosso |nossa )?(terreno|lote|imovel|area|"
                r"propriedade|sitio|chacara|fazenda)",
                r"reintegracao de posse|esbulho",
            ),
        ),
        document_examples=(
            "contrato de locação ou de compra, recibos de aluguel, notificações, matrícula do "
            "imóvel ou fotos"
        ),
        complex_sub_areas=frozenset({"usucapião"}),
    ),
)

AREAS_BY_KEY: dict[str, Area] = {a.key: a for a in AREAS}
AREA_KEYS: tuple[str, ...] = tuple(a.key for a in AREAS)
GENERAL_WEIGHT = 1
SUB_AREA_WEIGHT = 3
