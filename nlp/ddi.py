"""Drug-drug interaction statements mined from free text, as literature evidence.

A sentence such as "Ketoconazole increases the plasma concentrations of midazolam" becomes an
:class:`InteractionStatement` that keeps the sentence and its source, so the graph can store it
as *evidence from text* and never confuse it with curated interaction knowledge.

The extractor is rule-based on purpose. The only labelled corpus for this task (DDI Extraction
2013) is licensed CC BY-NC, so nothing learnt from it can ship in the product; the rules below are
general pharmacology phrasing (cue words, negation and hedging, coordination lists, intervening
mentions) and the corpus is only used to measure them (``bench/bench_ddi.py``).

Drug names come from the dictionary packaged with ``drug_named_entity_recognition`` (MIT); drug
*classes* ("beta-blockers", "MAO inhibitors") from the hand-written cue patterns in
``nlp/data/ddi_classes.tsv``. Both load lazily, once per process.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from terminology.sources import drug_ner_data

DDI_TYPES = ("mechanism", "effect", "advice", "unspecified")

#: DDI 2013 labels -> ours; "int" means the text states an interaction without saying what kind.
CORPUS_TYPES = {
    "mechanism": "mechanism",
    "effect": "effect",
    "advise": "advice",
    "int": "unspecified",
}

CLASSES_FILE = Path(__file__).parent / "data" / "ddi_classes.tsv"


@dataclass(frozen=True)
class DrugMention:
    """A drug, brand or drug-class mention; ``start``/``end`` index the sentence (end exclusive)."""

    text: str
    start: int
    end: int
    kind: str  # "drug" | "brand" | "group"
    canonical: str | None
    drugbank_id: str | None


@dataclass(frozen=True)
class InteractionStatement:
    """One candidate interaction between two mentions of one sentence, with its provenance.

    ``confidence`` is a rule score, not a probability: the strength of the cue that decided the
    type (advice 0.75, mechanism 0.7, effect 0.6, unspecified 0.4; see ``_CUES``), minus 0.08 for
    every other drug mention between the two and 0.005 per word of distance beyond ten, clipped
    to 0.05..1. Rank by it; do not read it as a calibrated probability.
    """

    sentence: str
    source: str
    drug_a: DrugMention
    drug_b: DrugMention
    type: str
    cue: str
    confidence: float


@dataclass(frozen=True)
class CorpusEntity:
    """A gold entity of the DDI corpus; ``spans`` has more than one part when discontinuous."""

    id: str
    mention: DrugMention
    spans: tuple[tuple[int, int], ...]
    corpus_type: str  # the corpus's own label, including "drug_n"


@dataclass(frozen=True)
class CorpusPair:
    e1: str
    e2: str
    type: str | None  # one of DDI_TYPES, None when the corpus says there is no interaction


@dataclass(frozen=True)
class CorpusSentence:
    id: str
    text: str
    entities: tuple[CorpusEntity, ...]
    pairs: tuple[CorpusPair, ...]

    def entity(self, entity_id: str) -> CorpusEntity:
        for e in self.entities:
            if e.id == entity_id:
                return e
        raise KeyError(f"{self.id}: no entity {entity_id!r}")


# --------------------------------------------------------------------------- corpus reader


def _spans(char_offset: str, where: str) -> tuple[tuple[int, int], ...]:
    parts = []
    for part in char_offset.split(";"):
        try:
            a, b = part.split("-")
            parts.append((int(a), int(b) + 1))  # the corpus's end offset is inclusive
        except ValueError as e:
            raise ValueError(f"{where}: charOffset {char_offset!r} is not 'a-b[;c-d]'") from e
    return tuple(parts)


def read_ddi_xml(path: Path) -> list[CorpusSentence]:
    """The sentences of one DDI 2013 XML document, with gold entities and gold pairs."""
    root = ET.parse(path).getroot()  # noqa: S314 - the local evaluation corpus, not user input
    sentences = []
    for s in root.iter("sentence"):
        sid, text = s.get("id", ""), s.get("text", "")
        entities = []
        for e in s.iter("entity"):
            eid = e.get("id", "")
            spans = _spans(e.get("charOffset", ""), f"{path.name} {eid}")
            corpus_type = e.get("type", "")
            kind = corpus_type if corpus_type in ("brand", "group") else "drug"
            mention = DrugMention(e.get("text", ""), spans[0][0], spans[-1][1], kind, None, None)
            entities.append(CorpusEntity(eid, mention, spans, corpus_type))
        pairs = []
        for p in s.iter("pair"):
            label = None
            if p.get("ddi") == "true":
                label = CORPUS_TYPES.get(p.get("type", ""), "unspecified")
            pairs.append(CorpusPair(p.get("e1", ""), p.get("e2", ""), label))
        sentences.append(CorpusSentence(sid, text, tuple(entities), tuple(pairs)))
    return sentences


# --------------------------------------------------------------------------- mentions

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’.-][A-Za-z0-9]+)*")
_MAX_NGRAM = 5

# Dictionary variants that are ordinary English (or lab/assay words) far more often than drug
# names in pharmacology prose.
_NOT_DRUG_WORDS = """
    a an and are as at be by can do for from has have he in is it may no not of on or the to was
    were will with all any each other same some such this that these those use used dose
    doses drug drugs agent agents patients patient effect effects level levels plasma serum blood
    oral tablet tablets injection therapy treatment table figure study studies cell cells
    response time day days week weeks hour hours rate risk care pain fever sleep water food
    oxygen iron salt sugar fat protein acid base air light heat cold control test tests result
    results data case cases group groups area dose-related increase decrease plan ace mao
    cyp cyp3a4 cyp2d6 cyp1a2 cyp2c9 cyp2c19 p450 auc cmax inr gaba pt ptt alt ast sgpt sgot
    t-20 ii iii iv 5-ht hiv hcv hbv ras"""
_NOT_DRUGS = frozenset(_NOT_DRUG_WORDS.split())


@dataclass(frozen=True, slots=True)
class _Lexicon:
    variants: dict[str, str]  # normalised variant -> canonical
    brands: frozenset[str]
    drugbank: dict[str, str]  # canonical -> DrugBank id


@cache
def _lexicon() -> _Lexicon:
    data = drug_ner_data()
    variants: dict[str, str] = {}
    for variant, canonicals in data["drug_variant_to_canonical"].items():
        key = " ".join(_TOKEN.findall(variant.lower()))
        if key and key not in _NOT_DRUGS and len(key) > 2 and canonicals:
            variants.setdefault(key, canonicals[0])
    # The dictionary flags few brands, so a variant also counts as one when it is not the
    # canonical name, not a listed synonym, and neither contains nor shares a stem with the
    # canonical name ("coumadin" -> warfarin is a brand; "warfarin sodium", "warfarina" are not).
    flagged = {k for k, d in data["drug_variant_to_variant_data"].items() if d.get("is_brand")}
    canonical_data = data["drug_canonical_to_data"]
    brands = set()
    for variant, canonical in variants.items():
        synonyms = canonical_data.get(canonical, {}).get("synonyms") or ()
        if variant in flagged or not (
            canonical in variant
            or variant in canonical
            or variant[:5] == canonical[:5]
            or variant in synonyms
        ):
            brands.add(variant)
    drugbank = {
        c: d["drugbank_id"]
        for c, d in data["drug_canonical_to_data"].items()
        if d.get("drugbank_id")
    }
    return _Lexicon(variants, frozenset(brands), drugbank)


_MOD_STOP = (
    r"(?:the|a|an|of|with|and|or|other|potent|strong|moderate|weak|known|these|those|such|all|any"
    r"|some|drug|drugs|concomitant|certain|specific|is|are|as|by|to|in|on|for|not|may|be|that"
    r"|which|its|their|than|both|either|e\.g|i\.e|including|use|using|receiving|taking|when)"
)
_MOD = rf"(?:(?!{_MOD_STOP}\b)[a-z0-9][a-z0-9/-]*\s+){{0,2}}(?!{_MOD_STOP}\b)[a-z0-9][a-z0-9/-]*"


# The dictionary also holds MeSH pharmacological classes ("anti-inflammatory agents,
# non-steroidal" for "NSAIDs"); their canonical names read like this.
_CLASS_CANONICAL = re.compile(r",\s|\b(?:agents|inhibitors|drugs|antagonists|agonists|blockers)$")


@cache
def _class_patterns() -> tuple[re.Pattern[str], ...]:
    patterns = []
    for number, line in enumerate(CLASSES_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        source = line.split("\t", 1)[0].replace("{MOD}", _MOD)
        try:
            patterns.append(re.compile(rf"(?<![\w-])(?:{source})(?![\w-])", re.IGNORECASE))
        except re.error as e:
            raise ValueError(f"{CLASSES_FILE.name}:{number}: bad class pattern: {e}") from e
    return tuple(patterns)


def find_mentions(sentence: str) -> list[DrugMention]:
    """Drug, brand and drug-class mentions, longest match first, without overlaps."""
    return list(_mentions(sentence))


@lru_cache(maxsize=1024)
def _mentions(sentence: str) -> tuple[DrugMention, ...]:
    # cached: classify_pair looks at the same sentence once per pair
    lex = _lexicon()
    candidates: list[DrugMention] = []
    for pattern in _class_patterns():
        for m in pattern.finditer(sentence):
            text = m.group(0).strip()
            start = m.start() + (len(m.group(0)) - len(m.group(0).lstrip()))
            candidates.append(DrugMention(text, start, start + len(text), "group", None, None))
    tokens = list(_TOKEN.finditer(sentence))
    for i in range(len(tokens)):
        for n in range(min(_MAX_NGRAM, len(tokens) - i), 0, -1):
            window = tokens[i : i + n]
            key = " ".join(t.group(0).lower() for t in window)
            canonical = lex.variants.get(key)
            if canonical is None:
                continue
            start, end = window[0].start(), window[-1].end()
            kind = "brand" if key in lex.brands else "drug"
            if _CLASS_CANONICAL.search(canonical):
                kind = "group"
            candidates.append(
                DrugMention(
                    sentence[start:end], start, end, kind, canonical, lex.drugbank.get(canonical)
                )
            )
            break
    # Longest first; at equal length the class pattern wins (it was added first), because the
    # dictionary also lists some classes ("antacids") as if they were substances.
    candidates.sort(key=lambda m: (-(m.end - m.start), m.start))
    chosen: list[DrugMention] = []
    for c in candidates:
        if all(c.end <= o.start or c.start >= o.end for o in chosen):
            chosen.append(c)
    return tuple(sorted(chosen, key=lambda m: m.start))


# --------------------------------------------------------------------------- pair classification

# (type, pattern, strength). The first type with a match wins, in this order: advice is the most
# specific reading of a sentence (it usually also names the mechanism or effect it guards
# against), then the pharmacokinetic mechanism, then the pharmacodynamic effect, then a bare
# "interacts with".
_CUES: tuple[tuple[str, str, float], ...] = (
    (
        "advice",
        r"\b(?:should(?:\s+\w+){0,2}\s+be|should\s+(?:not\s+)?(?:be\s+)?(?:avoid|use|monitor|consider"
        r"|reduce|adjust|take|receive|administer)\w*|(?:is|are)\s+(?:\w+\s+)?(?:not\s+)?recommended"
        r"|contraindicated|caution|avoid(?:ed)?|must\s+(?:not\s+)?be"
        r"|(?:dose|dosage)\s+(?:adjustment|reduction)|careful(?:ly)?\s+monitor\w*"
        r"|closely\s+monitor\w*|monitor(?:ed|ing)?\s+(?:closely|carefully)"
        r"|(?:is|are)\s+advised|not\s+be\s+(?:used|given|co-?administered|taken)"
        r"|(?:is|are|be)\s+(?:required|necessary|advisable)|observed\s+closely)",
        0.75,
    ),
    (
        "mechanism",
        r"\b(?:auc|cmax|c\s?max|area\s+under|half-?li(?:fe|ves)|clearance|bioavailability"
        r"|absorption|metaboli[sz]\w*|pharmacokinetics|(?:plasma|serum|blood)\s+"
        r"(?:levels?|concentrations?)|concentrations?\s+of|exposure|excretion"
        r"|elimination|protein\s+binding|cytochrome|p-?glycoprotein|renal\s+tubular"
        r"|steady[- ]state|trough|(?:increas|decreas|rais|elevat|reduc|lower)\w*\s+(?:\S+\s+){0,2}"
        r"(?:levels?|concentrations?))",
        0.7,
    ),
    (
        "effect",
        r"\b(?:potentiat\w*|enhanc\w*|antagoni[sz]\w*|additive|synergi\w*|risk|toxicity"
        r"|(?:pharmacologic(?:al)?|therapeutic|hypotensive|anticoagulant|sedative|depressant"
        r"|adverse|side)\s+effects?|effects?\s+of|response|hypotension|hypertensi\w*"
        r"|bleeding|hemorrhag\w*|serotonin\s+syndrome|hypoglycemi\w*|hyperkalemi\w*|seizures?"
        r"|arrhythmi\w*|qt|prolong\w*|sedation|depression|blunt\w*|counteract\w*|reverse\w*"
        r"|efficacy|activity|action|toxic|fatal|death|syndrome|intensif\w*|augment\w*|diminish\w*"
        r"|impair\w*|effectiveness|less\s+effective|myopathy|rhabdomyolysis|hypokalemi\w*"
        r"|prothrombin|inr)",
        0.6,
    ),
    (
        "unspecified",
        r"\b(?:interacts?|interacting|interactions|in\s+conjunction)",
        0.4,
    ),
)
_CUE_PATTERNS = tuple((t, re.compile(rf"{p}\b", re.IGNORECASE), s) for t, p, s in _CUES)

# Statements that an interaction was looked for and not found, or not studied at all.
_NEGATION = re.compile(
    r"\b(?:no\s+(?:\w+\s+){0,3}(?:interactions?|effects?|changes?|differences?|alteration"
    r"|influence)|(?:did|does|do)\s+not\s+(?:\w+\s+)?(?:alter|affect|change|influence|modify|interact"
    r"|increase|decrease|reduce|result|cause|produce|potentiate)|(?:was|were|is|are)\s+not\s+"
    r"(?:\w+\s+)?(?:altered|affected|changed|influenced|modified|observed|seen|detected|found)"
    r"|(?:has|have)\s+not\s+been\s+(?:\w+\s+)?(?:studied|established|evaluated|investigated"
    r"|reported|performed|conducted|observed|systematically)|not\s+(?:been\s+)?(?:known|studied)"
    r"|\bnot\s+to\s+(?:\w+\s+)?(?:alter|affect|change|influence|modify|interact|increase|decrease"
    r"|potentiate|reduce)|unlikely|unchanged|unaffected|failed\s+to|(?:were|was)\s+similar"
    r"|without\s+clinical"
    r"|not\s+(?:\w+\s+){0,3}(?:clinically\s+)?(?:significant|important|relevant|meaningful)"
    r"|no\s+(?:formal|specific|clinical|drug)|without\s+(?:any\s+)?(?:effect|change"
    r"|alteration)|none\s+of)",
    re.IGNORECASE,
)

# Text between two mentions that only lists them ("A, B, and C", "A (e.g., B)", "A; B; C"): such
# mentions are enumerated together, not said to interact with one another. A gap is a list when
# it has a separator and every piece between separators is a short phrase (a salt, a brand in
# parentheses, a name the dictionary missed) with no word that relates drugs.
_LIST_SEPARATOR = re.compile(
    r"[,;:()\[\]/*]|\band/or\b|\band\b|\bor\b|\bnor\b|\be\.\s?g\.|\bi\.\s?e\.|\bie\b"
    r"|\bsuch\s+as\b|\bincluding\b|\betc\b\.?|\bas\s+well\s+as\b",
    re.IGNORECASE,
)
_RELATING_WORD = re.compile(
    r"\b(?:include|includes|following|with|by|when|if|while|in\s+patients|taking|receiving"
    r"|given|is|are|was|were|be|been|may|can|could|should|must|might|will|would|has|have|had|not|increas\w*|decreas\w*"
    r"|reduc\w*|inhibit\w*|induc\w*|potentiat\w*|enhanc\w*)\b",
    re.IGNORECASE,
)
_MAX_LIST_PIECE_WORDS = 4


def _is_list_gap(gap: str) -> bool:
    if not _LIST_SEPARATOR.search(gap) and gap.strip():
        return False
    pieces = [p.strip() for p in _LIST_SEPARATOR.split(gap)]
    return all(
        len(p.split()) <= _MAX_LIST_PIECE_WORDS and not _RELATING_WORD.search(p)
        for p in pieces
        if p
    )


# A label before a colon at the start ("Antacids: ...", "Cardiac glycosides: ...") names the
# section the sentence sits in, it is not a participant of what the sentence says.
_HEADING = re.compile(
    r"^[^:.;]{1,80}?:(?!\d)(?!\s*(?:may|can|could|might|will|has|have|is|are|increase|decrease"
    r"|reduce|inhibit|induce|enhance|potentiate)\b)",
    re.IGNORECASE,
)

# ...unless the list itself is the combination given ("coadministration of A and B").
_COMBINED_BEFORE = re.compile(
    r"(?:co-?administ\w*|concomitant(?:ly)?|concurrent(?:ly)?|combination|combined|together"
    r"|simultaneous\w*|both)\b[^.;]{0,60}$",
    re.IGNORECASE,
)


def _crosses_parenthesis(gap: str) -> bool:
    """One mention sits inside a parenthesis the other is outside of: "X (e.g., A) with B".

    Examples or synonyms in parentheses illustrate the word before them; the statement is about
    that word, so pairing the example with the rest of the sentence duplicates or misleads.
    """
    depth = 0
    for char in gap:
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return True
            depth -= 1
    return depth > 0


# Exactly two mentions joined as one regimen ("A and B are given together", "A with B").
_PAIR_JOIN = re.compile(
    r"^\s*(?:and|with|plus|to)(?:\s+(?:the|a|an|another|other))?\s*$", re.IGNORECASE
)
_EXAMPLE_GAP = re.compile(r"\b(?:e\.g\.|i\.e\.|such\s+as|including|incl\.)", re.IGNORECASE)


# Beyond this many words apart, two mentions are rarely the two sides of one statement.
_MAX_GAP_WORDS = 35


def _same_drug(a: DrugMention, b: DrugMention) -> bool:
    if a.canonical is not None and a.canonical == b.canonical:
        return True
    return a.text.lower().rstrip("s") == b.text.lower().rstrip("s")


def _mask(text: str, mentions: list[DrugMention]) -> str:
    """``text`` with each mention blanked to spaces of its length, so offsets stay valid."""
    for m in reversed(mentions):
        text = text[: m.start] + " " * (m.end - m.start) + text[m.end :]
    return text


@lru_cache(maxsize=256)
def _masked(sentence: str) -> str:
    return _mask(sentence, list(_mentions(sentence)))


def classify_pair(sentence: str, a: DrugMention, b: DrugMention) -> tuple[str, str, float] | None:
    """(type, cue, confidence) when ``sentence`` states an interaction between ``a`` and ``b``.

    ``None`` when the two are the same drug, merely listed together, one is an example of the
    other, or the sentence says the interaction is absent or was never studied.
    """
    first, second = (a, b) if a.start <= b.start else (b, a)
    if _same_drug(first, second) or first.end > second.start:
        return None
    heading = _HEADING.match(sentence)
    if (
        heading
        and first.start < heading.end() <= second.start
        and not _RELATING_WORD.search(heading.group(0))
    ):
        return None
    gap = sentence[first.end : second.start]
    before = sentence[: first.start]
    inner = find_mentions(gap)
    bare_gap = _mask(gap, inner)
    if _crosses_parenthesis(bare_gap):
        return None
    after = sentence[second.end :]
    pair_only = (
        _PAIR_JOIN.match(bare_gap)
        and not re.match(r"\s*(?:,|and\b|or\b)", after)
        and not re.search(r",\s*$", before)
    )
    if (
        _is_list_gap(bare_gap)
        and not pair_only
        and (_EXAMPLE_GAP.search(gap) or not _COMBINED_BEFORE.search(before))
    ):
        return None
    # Only the clause holding the pair can state or deny its interaction: a cue or a negation
    # beyond a ";" or ":" belongs to another statement of the same sentence.
    start, end = _clause(sentence, first.start, second.end)
    if _NEGATION.search(sentence, start, end) or len(gap.split()) > _MAX_GAP_WORDS:
        return None
    # Cue words inside a drug name ("H2 antagonists", "CYP3A4 inhibitors") are not cues.
    masked = _masked(sentence)
    for ddi_type, pattern, strength in _CUE_PATTERNS:
        match = pattern.search(masked, start, end)
        if match is None:
            continue
        # Mentions between the two make it likelier that the cue concerns another pair.
        score = strength - 0.08 * len(inner) - 0.005 * max(0, len(gap.split()) - 10)
        return ddi_type, sentence[match.start() : match.end()], round(max(0.05, min(1.0, score)), 3)
    return None


def _clause(sentence: str, start: int, end: int) -> tuple[int, int]:
    """From the clause break (";" or ":") before ``start`` to the one after ``end``."""
    left = max(sentence.rfind(";", 0, start), sentence.rfind(":", 0, start))
    breaks = [i for i in (sentence.find(";", end), sentence.find(":", end)) if i >= 0]
    return left + 1, min(breaks, default=len(sentence))


# --------------------------------------------------------------------------- free text

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATION = re.compile(
    r"(?:\b(?i:e\.g|i\.e|vs|approx|fig|ref|dr|et\s+al|no|inc|ca)\.|\b[A-Z]\.)$"
)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` on end punctuation, not after common abbreviations or initials."""
    sentences: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        candidate = text[start : m.start()]
        if _ABBREVIATION.search(candidate):
            continue
        sentences.append(candidate.strip())
        start = m.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def mine_text(text: str, source: str) -> list[InteractionStatement]:
    """Every interaction statement of ``text``; each source is ``f"{source}#s{index}"``."""
    statements = []
    for index, sentence in enumerate(split_sentences(text)):
        mentions = find_mentions(sentence)
        for i, a in enumerate(mentions):
            for b in mentions[i + 1 :]:
                decision = classify_pair(sentence, a, b)
                if decision is not None:
                    ddi_type, cue, confidence = decision
                    statements.append(
                        InteractionStatement(
                            sentence, f"{source}#s{index}", a, b, ddi_type, cue, confidence
                        )
                    )
    return statements
