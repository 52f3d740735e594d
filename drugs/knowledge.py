"""A knowledge base as graph rows, and the in-process index of it that checks use.

The graph holds the knowledge (``graph/drugs.py``); :class:`KnowledgeIndex` is a small read of
it (about 1,300 concepts) that maps ingredients to the substances and classes that can carry an
interaction. It is rebuilt whenever the stored version changes, so a reload of the thesaurus
takes effect on the next check."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from drugs.model import Knowledge
from drugs.names import DrugDictionary, fold
from terminology.model import CodeSystemInfo, ConceptRecord, Designation, ParsedSystem

ANSM_SYSTEM = "https://ansm.sante.fr/thesaurus-interactions"


def parsed_system(kb: Knowledge, dictionary: DrugDictionary) -> ParsedSystem:
    """The thesaurus's substances and classes as one code system version: a substance IS_A
    each class it belongs to; English ingredient names are designations."""
    info = CodeSystemInfo(
        url=ANSM_SYSTEM,
        version=kb.version,
        name="ANSM-Interactions",
        title=kb.title,
        source=kb.source,
        licence=kb.licence,
        content="complete",
        hierarchical=True,
        note="code = the thesaurus name folded (lower case, no accents); substances IS_A classes",
    )
    parsed = ParsedSystem(info)
    for e in kb.entities.values():
        names = []
        for ing in e.ingredients:
            entry = dictionary.entry(ing)
            names.append(Designation(entry.display if entry else ing, "en", "ingredient"))
        parsed.concepts.append(
            ConceptRecord(
                e.key,
                e.name,
                tuple(c for c in e.classes if c in kb.entities),
                (Designation(e.name, "fr", "thesaurus"), *names),
                {
                    "kind": e.kind,
                    "ingredients": "|".join(e.ingredients),
                    "rxnorm": "|".join(e.rxnorm),
                },
            )
        )
    return parsed


@dataclass(frozen=True, slots=True)
class IndexedEntity:
    code: str
    display: str
    kind: str
    ingredients: tuple[str, ...]
    rxnorm: tuple[str, ...]
    classes: tuple[str, ...]


@dataclass
class KnowledgeIndex:
    """ingredient -> substances, substance -> classes, RxNorm ingredient code -> substances."""

    version: str | None
    entities: dict[str, IndexedEntity] = field(default_factory=dict)
    by_ingredient: dict[str, list[str]] = field(default_factory=dict)
    by_rxnorm: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, version: str | None, rows: list[dict[str, Any]]) -> KnowledgeIndex:
        index = cls(version)
        by_ing: dict[str, list[str]] = defaultdict(list)
        by_rx: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            e = IndexedEntity(
                code=r["code"],
                display=r["display"],
                kind=str(r.get("kind") or "substance"),
                ingredients=tuple(x for x in str(r.get("ingredients") or "").split("|") if x),
                rxnorm=tuple(x for x in str(r.get("rxnorm") or "").split("|") if x),
                classes=tuple(r.get("classes") or ()),
            )
            index.entities[e.code] = e
            for ing in e.ingredients:
                by_ing[ing].append(e.code)
            for rx in e.rxnorm:
                by_rx[rx].append(e.code)
        index.by_ingredient = dict(by_ing)
        index.by_rxnorm = dict(by_rx)
        return index

    def substances(self, ingredient: str) -> list[str]:
        return self.by_ingredient.get(ingredient, [])

    def anchors(self, ingredient: str) -> set[str]:
        """Every code an interaction may name for this ingredient: its substances and their
        classes."""
        out: set[str] = set()
        for code in self.substances(ingredient):
            out.add(code)
            out.update(self.entities[code].classes)
        return out

    def classes_of(self, ingredient: str) -> set[str]:
        out: set[str] = set()
        for code in self.substances(ingredient):
            out.update(self.entities[code].classes)
        return out

    @cached_property
    def _named(self) -> tuple[re.Pattern[str], dict[str, str]]:
        names: dict[str, str] = {}
        for e in self.entities.values():
            if e.kind == "class":
                continue
            key = fold(e.display)
            names.setdefault(key, e.code)
            if (inverted := re.fullmatch(r"(.+?)\s*\((.+?)\)", key)) is not None:
                # the index's "sodium (oxybate de)" is written "oxybate de sodium" in texts
                names.setdefault(f"{inverted.group(2)} {inverted.group(1)}", e.code)
        usable = sorted((n for n in names if len(n) >= 4), key=len, reverse=True)
        return re.compile(r"\b(" + "|".join(re.escape(n) for n in usable) + r")\b"), names

    def named_in(self, text: str) -> set[str]:
        """Substance codes whose thesaurus name a (French) text writes: the drugs a level of
        an entry is restricted to ("CONTRE-INDICATION avec l'oxybate de sodium")."""
        pattern, codes = self._named
        return {codes[m.group(1)] for m in pattern.finditer(fold(text))}

    def display(self, code: str) -> str:
        e = self.entities.get(code)
        return e.display if e else code
