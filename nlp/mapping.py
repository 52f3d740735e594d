"""The mapping engine: ranked standard-code candidates for a clinic's local codes.

For each local code (:class:`graph.mapping.CodeProfile`: its display, list properties and the data
the ecosystem recorded with it) and a target code system:

1. **Candidates** from three generators, all restricted to the target system:
   *lexical* — the full-text index over displays and designations, queried with the local text
   and its expansion through a clinical abbreviation list (``nlp/data``);
   *embedding* — nearest concepts by the packaged sentence models (MiniLM for English text,
   multilingual E5 for all text, so Russian names find English concepts);
   *pivot* — for non-English text, the English names of the ICD-10 concepts whose Russian
   designations match, used as further queries (the WHO ICD-10 translation bridges languages).
2. **Features** per candidate: token similarity (prefix-aware, digits exact), embedding cosine
   per model, whether the kind of data agrees (diagnoses ↔ disorders/findings, not procedures),
   whether the local unit agrees with the candidate's LOINC property or the units the ecosystem
   records with it, how well the local values' median fits the candidate's, whether other
   domains use the candidate at all, and LOINC's commonness rank.
3. **Re-rank**: a weighted sum of the features; the ``score`` shown to terminologists is the
   softmax share of a candidate among the top ones (how clearly it wins), the ``rationale``
   spells the evidence out. With a chat model configured (``nlp/llm_rerank.py``) the LLM picks
   among the top candidates and explains itself; without one everything runs offline.

``method`` selects the generators for the benchmark: ``lexical`` (full-text and token
similarity only), ``embedding`` (cosine only) or ``combined`` (all of the above).
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from rapidfuzz.distance import Levenshtein

from graph.connection import Driver
from graph.mapping import (
    CodeProfile,
    ValueStats,
    ensure_system_keys,
    lexical_candidates,
    target_profiles,
    value_profiles,
)
from graph.reader import lucene_escape
from nlp.embeddings import model_for
from nlp.llm_rerank import LlmError, LlmReranker, RerankItem
from nlp.semantic import SemanticSearch

ENGINE = "medshadow-mapper/1"
Method = Literal["lexical", "embedding", "combined"]
METHODS: tuple[Method, ...] = ("lexical", "embedding", "combined")
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
#: Called with (codes finished so far, codes in all).
Progress = Callable[[int, int], None]

#: Feature weights of the combined score (set on the demo ecosystem's clinic; the benchmark
#: measures them on a different population).
WEIGHTS: dict[str, float] = {
    "lexical": 1.5,
    "cognate": 1.0,
    "pivot": 1.2,
    "embedding": 1.0,
    "kind": 0.3,
    "unit": 0.3,
    "values": 0.3,
    "usage": 0.1,
    "common": 0.05,
    "hierarchy": 0.1,
}
#: Cosine of an unrelated and of a same-meaning pair, per model: embedding features are put on
#: one 0..1 scale (E5's cosines crowd into 0.75–0.95, MiniLM's spread over 0.1–0.9).
CALIBRATION: dict[str, tuple[float, float]] = {"minilm": (0.3, 0.9), "e5": (0.78, 0.93)}
#: Values a candidate needs in the ecosystem before a poor fit counts against it (fewer can
#: support a candidate, not rule it out).
MIN_VALUES = 10
#: Softmax temperature turning combined scores into the confidence shown.
TEMPERATURE = 0.08

_TOKEN = re.compile(r"[\w/]+(?:\.\d+)?", re.UNICODE)
_SEMANTIC_TAG = re.compile(r"\s*\(([a-z /]+)\)\s*$")
_STOPWORDS = frozenset(
    [
        "of",
        "the",
        "in",
        "by",
        "and",
        "or",
        "to",
        "for",
        "a",
        "an",
        "on",
        "at",
        "as",
        "with",
        "w/",
        "[",
        "]",
        "-",
        ",",
        ".",
        "by",
        "в",
        "и",
        "на",
        "по",
        "с",
        "со",
        "для",
        "при",
        "без",
    ]
)
_CONDITION_TAGS = frozenset({"disorder", "finding", "situation", "morphologic abnormality"})
_LOINC_PROPERTY = re.compile(r"\[([^\]]+)\]")


# -- text ---------------------------------------------------------------------------------------


@cache
def abbreviations() -> dict[str, str]:
    """Clinical shorthand → standard words (``nlp/data/clinical_abbreviations.tsv``)."""
    path = Path(__file__).with_name("data") / "clinical_abbreviations.tsv"
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            short, _, long = line.partition("\t")
            out[short.strip().lower()] = long.strip().lower()
    return out


@cache
def glossary() -> dict[str, str]:
    """Russian specimen and qualifier words by five-letter stem → English
    (``nlp/data/ru_clinical_glossary.tsv``)."""
    path = Path(__file__).with_name("data") / "ru_clinical_glossary.tsv"
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            word, _, english = line.partition("\t")
            out[_fold(word.strip())[:5]] = english.strip().lower()
    return out


def gloss(text: str) -> str:
    """Foreign text made comparable with English names: known specimen/qualifier words
    translated, every other word transliterated (``"Хлориды сыворотки"`` → ``"chloridy
    serum"``)."""
    table = glossary()
    return " ".join(
        table.get(t[:5], transliterate(t)) if _is_cyrillic(t) else t
        for t in _TOKEN.findall(_fold(text))
    )


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")


def tokens(text: str) -> list[str]:
    """Lower-case word tokens without stop words; ``w/``, ``h/o``, ``10*3`` stay one token."""
    return [
        t.strip(".")
        for t in _TOKEN.findall(_fold(text))
        if t.strip(".") and t.strip(".") not in _STOPWORDS
    ]


def expand(text: str) -> str:
    """``"chr CKD w/ HTN"`` → ``"chronic chronic kidney disease with hypertension"``."""
    table = abbreviations()
    return " ".join(table.get(t, t) for t in _TOKEN.findall(_fold(text)))


def strip_tag(display: str) -> tuple[str, str | None]:
    """``"Prediabetes (finding)"`` → ``("Prediabetes", "finding")``."""
    match = _SEMANTIC_TAG.search(display)
    if match is None:
        return display, None
    return display[: match.start()], match.group(1)


def _token_match(q: str, t: str) -> bool:
    """Equal; one a prefix of the other (abbreviated, truncated: "fx" / "fracture"); or, in
    Russian, a shared stem of five letters ("связок" / "связочного")."""
    if q == t:
        return True
    if q.isdigit() or t.isdigit():
        return False
    shorter, longer = (q, t) if len(q) <= len(t) else (t, q)
    if len(shorter) >= 2 and longer.startswith(shorter):
        return True
    # Russian inflects; an English stem of five letters would join hyper-tension and -lipidemia
    return len(shorter) >= 5 and q[:5] == t[:5] and _is_cyrillic(q)


def token_similarity(query: str, name: str) -> float:
    """Dice coefficient over tokens where a token matches another it is a prefix of (local
    lists abbreviate and truncate), digits only exactly ("stage 3" ≠ "stage 2")."""
    q, t = tokens(query), tokens(name)
    if not q or not t:
        return 0.0
    matched_q = sum(1 for a in q if any(_token_match(a, b) for b in t))
    matched_t = sum(1 for b in t if any(_token_match(a, b) for a in q))
    return (matched_q + matched_t) / (len(q) + len(t))


def lucene_text(text: str) -> str:
    """An OR query of prefix terms (recall first: the re-ranker orders them); Cyrillic words
    are cut to a five-letter stem (Russian inflects)."""
    terms = dict.fromkeys(
        (t[:5] if _is_cyrillic(t) else t) for t in tokens(text) if len(t) >= 2 or t.isdigit()
    )
    return " OR ".join(lucene_escape(t) if t.isdigit() else f"{lucene_escape(t)}*" for t in terms)


def lucene_fuzzy(text: str) -> str:
    """Fuzzy terms (two edits) for cognates: a transliterated word and its English relative."""
    terms = dict.fromkeys(t for t in tokens(text) if len(t) >= 5 and not t.isdigit())
    return " OR ".join(f"{lucene_escape(t)}~2 OR {lucene_escape(t)}*" for t in terms)


def _is_cyrillic(token: str) -> bool:
    return any("\u0400" <= ch <= "\u04ff" for ch in token)


#: Russian → Latin letters the way medical cognates came into Russian (х from Greek chi → ch,
#: ц → c as in "calcium"), not passport transliteration.
_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ж": "zh", "з": "z",
        "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p",
        "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "ch", "ц": "c", "ч": "ch",
        "ш": "sh", "щ": "sch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya",
    }
)  # fmt: skip


def transliterate(text: str) -> str:
    folded = _fold(text)
    for russian, latin in (("ций", "cium"), ("ий", "ium"), ("ци", "cy")):  # кальций, -циты
        folded = folded.replace(russian, latin)
    return folded.translate(_TRANSLIT)


_PHONETIC = (("ph", "f"), ("th", "t"), ("ch", "k"), ("c", "k"), ("y", "i"), ("z", "s"),
             ("x", "ks"), ("w", "v"), ("h", ""))  # fmt: skip


def phonetic(word: str) -> str:
    """A crude sound key, so a transliteration meets its Latin/Greek cognate half-way:
    "fosfataza" and "phosphatase" → "fosfatasa" / "fosfatase"."""
    for a, b in _PHONETIC:
        word = word.replace(a, b)
    return word


def cognate_similarity(query: str, name: str) -> float:
    """Share of the (glossed) query words that have a near-identical word in ``name``:
    "холестерин" → "cholesterin" ~ "cholesterol", "сыворотки" → "serum"."""
    q = [phonetic(t) for t in tokens(gloss(query)) if len(t) >= 4]
    t = [phonetic(w) for w in tokens(name) if len(w) >= 4]
    if not q or not t:
        return 0.0
    hits = sum(1 for a in q if max(Levenshtein.normalized_similarity(a, b) for b in t) >= 0.7)
    return hits / len(q)


def is_english(text: str) -> bool:
    return model_for(text) == "minilm"


# -- units and values ---------------------------------------------------------------------------


def unit_kind(unit: str | None) -> str | None:
    """The LOINC property a UCUM unit measures (coarse: what tells lab variants apart)."""
    if not unit:
        return None
    u = unit.strip()
    if u == "%":
        return "fraction"
    if u in {"fL"}:
        return "entitic volume"
    if u in {"pg"}:
        return "entitic mass"
    if u in {"s", "min", "h"}:
        return "time"
    if "mm[Hg]" in u:
        return "pressure"
    if u.startswith("{") or u in {"[pH]", "1"}:
        return "unitless"
    if "mol/" in u:
        return "substance"
    if "[IU]" in u or u.startswith(("U/", "kU/", "mU/")):
        return "activity"
    if re.match(r"^(10\*\d+|#|\{cells\})?/", u) or u.startswith("10*"):
        return "count"
    if re.match(r"^[mnpuµk]?g/", u):
        return "mass"
    return None


_LOINC_KIND = {
    "mass/volume": "mass",
    "moles/volume": "substance",
    "#/volume": "count",
    "number/volume": "count",
    "enzymatic activity/volume": "activity",
    "units/volume": "activity",
    "volume fraction": "fraction",
    "mass fraction": "fraction",
    "partial pressure": "pressure",
    "entitic mass": "entitic mass",
    "entitic volume": "entitic volume",
    "presence": "unitless",
    "ph": "unitless",
    "time": "time",
    "mass/time": "mass rate",
    "ratio": "unitless",
}


def loinc_kind(display: str | None) -> str | None:
    """The property in a LOINC long common name: ``Glucose [Mass/volume] in Serum`` → mass."""
    if not display:
        return None
    match = _LOINC_PROPERTY.search(display)
    return _LOINC_KIND.get(match.group(1).strip().lower()) if match else None


def quantile_fit(a: ValueStats, b: ValueStats) -> float:
    """1 when two value distributions have the same 10th, 50th and 90th percentiles, 0 when
    they differ by a factor of 1.5 on average, −1 at 2.25 or more (scale-free: units cancel)."""
    gaps = []
    for x, y in ((a.p10, b.p10), (a.median, b.median), (a.p90, b.p90)):
        if x <= 0 or y <= 0:
            gaps.append(0.0 if x == y else math.log(1.5) * 2)
        else:
            gaps.append(abs(math.log(x / y)))
    return max(-1.0, 1.0 - (sum(gaps) / len(gaps)) / math.log(1.5))


def value_fit(source: CodeProfile, target: CodeProfile) -> float | None:
    """:func:`quantile_fit` of the local values and the candidate's; None when either side has
    no values or their units differ."""
    if source.values is None or target.values is None:
        return None
    if source.units and target.units and not set(source.units) & set(target.units):
        return None
    fit = quantile_fit(source.values, target.values)
    return fit if target.values.n >= MIN_VALUES else max(fit, 0.0)


# -- candidates ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Candidate:
    """One target concept proposed for a local code, with the evidence behind its rank."""

    uid: str
    code: str
    display: str | None
    score: float = 0.0
    #: the generators that found it, e.g. ``lexical+embedding:e5``
    method: str = ""
    features: dict[str, float] = field(default_factory=dict)
    rationale: str | None = None
    raw: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "code": self.code,
            "display": self.display,
            "score": round(self.score, 4),
            "method": self.method,
            "features": {k: round(v, 4) for k, v in sorted(self.features.items())},
            "rationale": self.rationale,
        }


@dataclass(slots=True)
class _Pool:
    found_by: dict[str, set[str]] = field(default_factory=dict)
    lucene: dict[str, float] = field(default_factory=dict)
    cosine: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> uid -> cos
    floor: dict[str, float] = field(default_factory=dict)  # model -> lowest cos returned
    #: English ICD-10 names of a foreign text, with how well their Russian names matched it
    pivot: list[tuple[str, float]] = field(default_factory=list)

    def add(self, uid: str, how: str) -> None:
        self.found_by.setdefault(uid, set()).add(how)


@dataclass(frozen=True, slots=True)
class SuggestReport:
    codes: int
    seconds: float
    llm_calls: int = 0
    llm_errors: tuple[str, ...] = ()


class MappingEngine:
    """Ranked candidates for local codes in a target system; see the module docstring."""

    def __init__(
        self,
        driver: Driver,
        *,
        semantic: SemanticSearch | None = None,
        llm: LlmReranker | None = None,
        database: str | None = None,
        k_lexical: int = 30,
        k_embedding: int = 30,
        weights: dict[str, float] | None = None,
    ) -> None:
        self.driver = driver
        self.semantic = semantic
        self.llm = llm
        self.database = database
        self.k_lexical = k_lexical
        self.k_embedding = k_embedding
        self.weights = {**WEIGHTS, **(weights or {})}
        self._profiles: dict[str, CodeProfile] = {}
        self._values_by_unit: dict[str, dict[str, dict[str, ValueStats]]] = {}
        self.last_report: SuggestReport | None = None

    def suggest(
        self,
        sources: Sequence[CodeProfile],
        target_system: str,
        *,
        k: int = 10,
        method: Method = "combined",
        batch_size: int = 64,
        progress: Progress | None = None,
    ) -> list[list[Candidate]]:
        """Up to ``k`` ranked candidates per source code, best first."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
        if method != "lexical" and self.semantic is None:
            raise ValueError(f"method {method!r} needs the embedding index (semantic search)")
        started = time.perf_counter()
        self._profiles.clear()  # each call sees the graph as it is (retired codes, new data)
        self._values_by_unit.clear()
        if method != "embedding":
            ensure_system_keys(self.driver, target_system, database=self.database)
        out: list[list[Candidate]] = []
        llm_calls, llm_errors = 0, []
        if progress:
            progress(0, len(sources))
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            pools = self._generate(chunk, target_system, method)
            needed = {uid for pool in pools for uid in pool.found_by}
            self._load_profiles(needed)
            for source, pool in zip(chunk, pools, strict=True):
                ranked = self._rank(source, pool, method)[: max(k, 10)]
                if self.llm is not None and method == "combined" and ranked:
                    llm_calls += 1
                    try:
                        ranked = self._llm_rerank(source, ranked)
                    except LlmError as e:
                        llm_errors.append(f"{source.code}: {e}")
                out.append(ranked[:k])
            if progress:
                progress(len(out), len(sources))
        self.last_report = SuggestReport(
            len(sources), time.perf_counter() - started, llm_calls, tuple(llm_errors)
        )
        return out

    # -- generation --------------------------------------------------------------------------

    def _generate(self, sources: Sequence[CodeProfile], target: str, method: Method) -> list[_Pool]:
        pools = [_Pool() for _ in sources]
        texts = [self._text(s) for s in sources]
        if method in ("lexical", "combined"):
            queries = [lucene_text(expand(t)) for t in texts]
            hits = lexical_candidates(
                self.driver, queries, target, k=self.k_lexical, database=self.database
            )
            for pool, found in zip(pools, hits, strict=True):
                for uid, score in found:
                    pool.add(uid, "lexical")
                    pool.lucene[uid] = score
        if method in ("embedding", "combined"):
            assert self.semantic is not None
            self._embed(pools, texts, target)
        if method == "combined":
            self._pivot(pools, texts, sources, target)
            self._cognates(pools, texts, target)
            self._data(pools, sources, target)
        return pools

    def _cognates(self, pools: list[_Pool], texts: list[str], target: str) -> None:
        """Non-English text, transliterated, against the target's names with fuzzy terms."""
        positions = [i for i, t in enumerate(texts) if not is_english(t)]
        if not positions:
            return
        hits = lexical_candidates(
            self.driver,
            [lucene_fuzzy(gloss(texts[i])) for i in positions],
            target,
            k=self.k_lexical // 2,
            database=self.database,
        )
        for i, found in zip(positions, hits, strict=True):
            for uid, _ in found:
                pools[i].add(uid, "cognate")

    def _data(self, pools: list[_Pool], sources: Sequence[CodeProfile], target: str) -> None:
        """Concepts the ecosystem records in the local code's unit with values like its own."""
        units = sorted({u for s in sources if s.values is not None for u in _units(s)})
        missing = [u for u in units if u not in self._values_by_unit.setdefault(target, {})]
        if missing:
            found = value_profiles(self.driver, target, missing, database=self.database)
            for unit in missing:
                self._values_by_unit[target][unit] = found.get(unit, {})
        for pool, source in zip(pools, sources, strict=True):
            if source.values is None:
                continue
            fits = [
                (fit, uid)
                for unit in _units(source)
                for uid, stats in self._values_by_unit[target].get(unit, {}).items()
                if (fit := quantile_fit(source.values, stats)) > 0
            ]
            for _, uid in sorted(fits, reverse=True)[:15]:
                pool.add(uid, "data")

    def _embed(self, pools: list[_Pool], texts: list[str], target: str) -> None:
        assert self.semantic is not None
        for model in ("minilm", "e5"):
            # MiniLM reads English only; E5 reads everything (and is the only one for Russian)
            positions = [i for i, t in enumerate(texts) if model == "e5" or is_english(t)]
            if not positions:
                continue
            queries = [expand(texts[i]) if is_english(texts[i]) else texts[i] for i in positions]
            results = self.semantic.search_many(
                queries, k=self.k_embedding, system=target, model=model
            )
            for i, hits in zip(positions, results, strict=True):
                pool = pools[i]
                scores = pool.cosine.setdefault(model, {})
                for hit in hits:
                    pool.add(hit.uid, f"embedding:{model}")
                    scores[hit.uid] = 2 * hit.score - 1  # back from [0, 1] to cosine
                if hits:
                    pool.floor[model] = min(scores.values())

    def _pivot(
        self,
        pools: list[_Pool],
        texts: list[str],
        sources: Sequence[CodeProfile],
        target: str,
    ) -> None:
        """Non-English text: the English names of ICD-10 concepts it matches, as extra queries."""
        positions = [
            i
            for i, t in enumerate(texts)
            if not is_english(t) and not _units(sources[i])  # diagnoses, not lab tests
        ]
        if not positions or target == ICD10:
            return
        hits = lexical_candidates(
            self.driver,
            [lucene_text(texts[i]) for i in positions],
            ICD10,
            k=3,
            database=self.database,
        )
        names: dict[int, list[tuple[str, float]]] = {}
        self._load_profiles({uid for found in hits for uid, _ in found})
        for i, found in zip(positions, hits, strict=True):
            scored = sorted(
                (
                    (max(token_similarity(texts[i], d) for d in p.designations), p.display)
                    for uid, _ in found
                    if (p := self._profiles.get(uid)) is not None and p.display and p.designations
                ),
                reverse=True,
            )
            best = [(name, quality) for quality, name in scored if quality >= 0.6]
            if best:
                names[i] = best[:2]
        if not names:
            return
        order = sorted(names)
        queries = [lucene_text(" ".join(name for name, _ in names[i])) for i in order]
        lexical = lexical_candidates(
            self.driver, queries, target, k=self.k_lexical // 2, database=self.database
        )
        for i, found in zip(order, lexical, strict=True):
            for uid, _ in found:
                pools[i].add(uid, "pivot:icd10")
            pools[i].lucene.update({uid: s for uid, s in found if uid not in pools[i].lucene})
        for i in order:
            pools[i].pivot = names[i]

    def _load_profiles(self, uids: set[str]) -> None:
        missing = [u for u in uids if u not in self._profiles]
        if missing:
            self._profiles.update(target_profiles(self.driver, missing, database=self.database))

    @staticmethod
    def _text(source: CodeProfile) -> str:
        description = source.properties.get("description")
        display = source.display or source.code
        return f"{display} {description}" if description else display

    # -- ranking -----------------------------------------------------------------------------

    def _rank(self, source: CodeProfile, pool: _Pool, method: Method) -> list[Candidate]:
        text = self._text(source)
        expanded = expand(text) if is_english(text) else text
        candidates: list[Candidate] = []
        for uid, how in pool.found_by.items():
            target = self._profiles.get(uid)
            if target is None or target.retired_in is not None:
                continue
            features = self._features(source, expanded, target, pool)
            candidates.append(
                Candidate(
                    uid=uid,
                    code=target.code,
                    display=target.display,
                    method="+".join(sorted(how)),
                    features=features,
                )
            )
        for c in candidates:
            c.raw = self._combine(c.features, method)
        if method == "combined":
            self._hierarchy(candidates)
        candidates.sort(key=lambda c: (-c.raw, c.code))
        top = candidates[:10]
        if top:
            exps = [math.exp((c.raw - top[0].raw) / TEMPERATURE) for c in top]
            total = sum(exps)
            for c, e in zip(top, exps, strict=True):
                c.score = e / total
        for c in top:
            c.rationale = _rationale(source, self._profiles[c.uid], c.features)
            if c.features.get("pivot", 0.0) >= 0.3 and pool.pivot:
                c.rationale += f"; via ICD-10 {pool.pivot[0][0]!r}"
        return candidates

    def _hierarchy(self, candidates: list[Candidate]) -> None:
        """In a hierarchical target, a candidate whose parent or child is also a strong
        candidate sits in the right part of the tree: the neighbourhood agrees."""
        strong = {c.uid for c in sorted(candidates, key=lambda c: -c.raw)[:10]}
        parents = {c.uid: self._profiles[c.uid].parents for c in candidates}
        children: dict[str, set[str]] = {}
        for uid, ps in parents.items():
            for parent in ps:
                children.setdefault(parent, set()).add(uid)
        for c in candidates:
            related = set(parents[c.uid]) | children.get(c.uid, set())
            if related:
                c.features["hierarchy"] = 1.0 if related & (strong - {c.uid}) else 0.0
                c.raw += self.weights["hierarchy"] * c.features["hierarchy"]

    def _features(
        self, source: CodeProfile, expanded: str, target: CodeProfile, pool: _Pool
    ) -> dict[str, float]:
        names = [strip_tag(target.display or "")[0], *target.designations]
        f: dict[str, float] = {
            "lexical": max((token_similarity(expanded, n) for n in names), default=0.0),
        }
        calibrated = []
        for model, scores in pool.cosine.items():
            cos = scores.get(target.uid, pool.floor.get(model, 0.0))
            low, high = CALIBRATION[model]
            calibrated.append(min(1.0, max(0.0, (cos - low) / (high - low))))
        if calibrated:
            f["embedding"] = sum(calibrated) / len(calibrated)
        if not is_english(expanded):
            f["cognate"] = max((cognate_similarity(expanded, n) for n in names), default=0.0)
        if pool.pivot:
            f["pivot"] = max(
                quality * token_similarity(name, n) for name, quality in pool.pivot for n in names
            )
        kind = _kind_agreement(source, target)
        if kind is not None:
            f["kind"] = kind
        unit = _unit_agreement(source, target)
        if unit is not None:
            f["unit"] = unit
        fit = value_fit(source, target)
        if fit is not None:
            f["values"] = fit
        f["usage"] = 1.0 if target.facts else 0.0
        rank = target.properties.get("rankUS") or target.properties.get("rankSI")
        if isinstance(rank, int) and rank > 0:
            f["common"] = 1.0 - math.log(rank) / math.log(2000)
        return f

    def _combine(self, features: dict[str, float], method: Method) -> float:
        if method == "lexical":
            return features.get("lexical", 0.0)
        if method == "embedding":
            return features.get("embedding", 0.0)
        return sum(self.weights.get(k, 0.0) * v for k, v in features.items())

    def _llm_rerank(self, source: CodeProfile, ranked: list[Candidate]) -> list[Candidate]:
        assert self.llm is not None
        items = [
            RerankItem(
                c.uid,
                c.code,
                c.display or c.code,
                self._profiles[c.uid].system,
                _detail(self._profiles[c.uid]),
            )
            for c in ranked
        ]
        choice = self.llm.choose(source.display or source.code, _context(source), items)
        if choice.key is None:
            for c in ranked:
                c.features["llm"] = 0.0
            return ranked
        chosen = next(c for c in ranked if c.uid == choice.key)
        chosen.method = f"{chosen.method}+llm:{choice.model}"
        chosen.rationale = f"{choice.rationale} ({choice.model}; {chosen.rationale})"
        chosen.features["llm"] = choice.confidence
        chosen.score = max(chosen.score, choice.confidence)
        return [chosen, *(c for c in ranked if c is not chosen)]


def _units(source: CodeProfile) -> list[str]:
    listed = source.properties.get("unit")
    units = [listed] if isinstance(listed, str) and listed else []
    return units + [u for u in source.units if u not in units]


def _kind_agreement(source: CodeProfile, target: CodeProfile) -> float | None:
    """−1 when the ecosystem records the candidate as another kind of fact (a procedure for a
    diagnosis); a diagnosis against a SNOMED semantic tag: +1 disorder/finding, −1 otherwise."""
    if source.kinds and target.kinds and not set(source.kinds) & set(target.kinds):
        return -1.0
    _, tag = strip_tag(target.display or "")
    if "Condition" in source.kinds and tag is not None:
        return 1.0 if tag in _CONDITION_TAGS else -1.0
    return None


def _unit_agreement(source: CodeProfile, target: CodeProfile) -> float | None:
    units = _units(source)
    unit = units[0] if units else None
    if unit is None:
        return None
    if target.units and unit in target.units:
        return 1.0
    want = unit_kind(unit)
    have = loinc_kind(target.display) if target.system == LOINC else None
    if want is None or have is None:
        return -0.5 if target.units else None
    return 1.0 if want == have else -1.0


def _detail(target: CodeProfile) -> str | None:
    parts = []
    if target.units:
        parts.append("units " + ", ".join(target.units))
    if target.values is not None:
        parts.append(f"median {target.values.median:g}")
    return "; ".join(parts) or None


def _context(source: CodeProfile) -> str:
    parts = [f"local code {source.code} of {source.system}"]
    units = _units(source)
    if units:
        parts.append(f"unit {units[0]}")
    if source.values is not None:
        v = source.values
        parts.append(f"values {v.p10:g}–{v.p90:g} (median {v.median:g}, n={v.n})")
    if source.kinds:
        parts.append("recorded as " + ", ".join(source.kinds))
    return "; ".join(parts)


def _rationale(source: CodeProfile, target: CodeProfile, f: dict[str, float]) -> str:
    parts = [f"words {f.get('lexical', 0):.2f}"]
    if f.get("cognate"):
        parts.append(f"cognates {f['cognate']:.2f}")
    if "embedding" in f:
        parts.append(f"meaning {f['embedding']:.2f}")
    if f.get("unit", 0) > 0:
        parts.append("unit agrees")
    elif f.get("unit", 0) < 0:
        parts.append("unit differs")
    if "values" in f and source.values and target.values:
        parts.append(f"median {source.values.median:g} vs {target.values.median:g}")
    if f.get("kind", 0) < 0:
        parts.append("other kind of concept")
    if f.get("usage"):
        parts.append(f"used by {target.facts} facts elsewhere")
    return "; ".join(parts)
