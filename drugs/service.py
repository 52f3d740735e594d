"""The drug-safety service: knowledge loading, name resolution, list checks, the medication
review of a person and what-if prescriptions. One per process; it holds the drug dictionary
(built once, about a second) and an index of the stored knowledge, rebuilt when the stored
version changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drugs import ansm
from drugs import checks as ck
from drugs.knowledge import ANSM_SYSTEM, KnowledgeIndex, parsed_system
from drugs.model import Finding, MedItem, MedSource
from drugs.names import DrugDictionary, default_dictionary
from drugs.reconcile import ingredients_of, reconcile, strength
from graph import drugs as q
from graph.connection import Driver
from graph.mapping import concept_display
from shadow import engine
from shadow.service import ShadowService
from terminology.model import RXNORM

#: Condition codes that mean an ongoing pregnancy (SNOMED CT as Synthea writes them; ICD-10
#: chapter O and Z33/Z34 by prefix).
PREGNANCY_SNOMED = frozenset({"72892002", "77386006", "47200007", "16356006", "237240001"})


class KnowledgeNotLoadedError(ValueError):
    def __init__(self) -> None:
        super().__init__("no interaction knowledge is loaded: run `medshadow drugs load`")


class UnknownPersonError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Resolved:
    """What one name or code given by a user stands for."""

    query: str
    ingredients: tuple[str, ...]
    display: str
    how: str  # "dictionary", "french", "rxnorm ingredient", "rxnorm product", "" (unresolved)


@dataclass(slots=True)
class Review:
    items: list[MedItem]
    findings: list[Finding]
    context: ck.PatientContext | None = None
    unresolved: list[str] = field(default_factory=list)
    knowledge: str | None = None
    seconds: float = 0.0

    @property
    def active_count(self) -> int:
        return sum(1 for i in self.items if i.active)


@dataclass(slots=True)
class LoadReport:
    version: str
    substances: int
    classes: int
    others: int
    interactions: int
    mapped_to_ingredients: int
    unmapped: list[str]
    removed: int
    problems: list[str]
    nodes_changed: int
    seconds: float
    medication_concepts: int = 0  # concepts medication records are coded with
    medication_concepts_linked: int = 0  # ... tied to thesaurus substances (HAS_INGREDIENT)


class DrugSafety:
    def __init__(
        self,
        driver: Driver,
        *,
        database: str | None = None,
        dictionary: DrugDictionary | None = None,
        shadow: ShadowService | None = None,
    ) -> None:
        self.driver = driver
        self.database = database
        self._dictionary = dictionary
        self.shadow = shadow  # shadow.service.ShadowService: patient context (eGFR, conditions)
        self._index: KnowledgeIndex | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    @property
    def dictionary(self) -> DrugDictionary:
        if self._dictionary is None:
            self._dictionary = default_dictionary()
        return self._dictionary

    # -- knowledge ---------------------------------------------------------------------------

    def load(self, progress: Callable[[str], None] | None = None) -> LoadReport:
        """Parse the ANSM thesaurus and write it (idempotent; a new edition replaces the old)."""
        started = time.perf_counter()
        if progress:
            progress("parsing the ANSM thesaurus")
        kb = ansm.parse(self.dictionary)
        if progress:
            progress(f"writing {len(kb.entities)} concepts and {len(kb.interactions)} interactions")
        system_load, stats, removed = q.write_knowledge(
            self.driver, parsed_system(kb, self.dictionary), kb.interactions, database=self.database
        )
        kinds = [e.kind for e in kb.entities.values()]
        substances = [e for e in kb.entities.values() if e.kind != "class"]
        self._index = None
        if progress:
            progress("linking the graph's medication concepts to their substances")
        concepts, linked = self.link_medications()
        return LoadReport(
            version=kb.version,
            substances=kinds.count("substance"),
            classes=kinds.count("class"),
            others=kinds.count("other"),
            interactions=len(kb.interactions),
            mapped_to_ingredients=sum(1 for e in substances if e.ingredients),
            unmapped=sorted(e.name for e in substances if not e.ingredients),
            removed=removed,
            problems=[*kb.problems, *system_load.problems],
            nodes_changed=sum(stats.nodes_changed.values())
            + sum(system_load.write.nodes_changed.values()),
            seconds=time.perf_counter() - started,
            medication_concepts=concepts,
            medication_concepts_linked=linked,
        )

    def link_medications(self) -> tuple[int, int]:
        """``HAS_INGREDIENT`` from every concept a medication record is coded with (RxNorm
        products, clinics' local codes through their mappings) to the thesaurus substances of
        its ingredients, so the graph itself answers "who takes an anticoagulant". Returns
        (concepts, concepts linked). Reviews normalise names themselves and do not need it."""
        index = self.index()
        links: dict[str, list[str]] = {}
        rows = q.medication_concepts(self.driver, database=self.database)
        for row in rows:
            ingredients = ingredients_of(self.dictionary, row)
            links[row["uid"]] = sorted(
                {f"{ANSM_SYSTEM}|{code}" for ing in ingredients for code in index.substances(ing)}
            )
        q.link_ingredients(self.driver, ANSM_SYSTEM, links, database=self.database)
        return len(rows), sum(1 for v in links.values() if v)

    def index(self) -> KnowledgeIndex:
        """The stored knowledge's index; the version is re-checked at most once a second."""
        with self._lock:
            now = time.monotonic()
            if self._index is not None and now - self._checked < 1.0:
                return self._index
            self._checked = now
            version = q.knowledge_version(self.driver, ANSM_SYSTEM, database=self.database)
            if version is None:
                raise KnowledgeNotLoadedError()
            if self._index is None or self._index.version != version:
                rows = q.substance_rows(self.driver, ANSM_SYSTEM, database=self.database)
                self._index = KnowledgeIndex.from_rows(version, rows)
            return self._index

    # -- names ---------------------------------------------------------------------------------

    def resolve(self, query: str) -> Resolved:
        """A drug name (any case, brand, French) or code (``rxnorm:1191``) to ingredients."""
        text = query.strip()
        system, _, code = text.rpartition("|" if "|" in text else ":")
        if code and "rxnorm" in system.lower():
            index = self.index()
            subs = index.by_rxnorm.get(code, [])
            ings = tuple(sorted({i for s in subs for i in index.entities[s].ingredients}))
            if ings:
                return Resolved(query, ings, self._display(ings), "rxnorm ingredient")
            display = concept_display(self.driver, f"{RXNORM}|{code}", database=self.database)
            if display:
                found = self.dictionary.ingredients(display)
                if found:
                    ings = tuple(sorted(i.name for i in found))
                    return Resolved(query, ings, self._display(ings), "rxnorm product")
            return Resolved(query, (), text, "")
        found = self.dictionary.ingredients(text)
        if found:
            ings = tuple(sorted(i.name for i in found))
            return Resolved(query, ings, self._display(ings), "dictionary")
        ings = self.dictionary.from_french(text)
        if ings:
            return Resolved(query, tuple(sorted(ings)), self._display(ings), "french")
        return Resolved(query, (), text, "")

    def _display(self, ingredients: Sequence[str]) -> str:
        return ", ".join(self.dictionary.display_names(ingredients))

    def items_for(
        self, queries: Sequence[str], *, source: str = "query"
    ) -> tuple[list[MedItem], list[str]]:
        """Items for a typed list; the names nothing matched are returned, not dropped."""
        items: dict[str, MedItem] = {}
        unresolved = []
        for query in queries:
            r = self.resolve(query)
            if not r.ingredients:
                unresolved.append(query)
                continue
            key = "+".join(r.ingredients)
            src = _typed(f"{source}:{len(items)}", source, query, None)
            if key in items:
                items[key].sources.append(src)
            else:
                items[key] = MedItem(key, r.display, r.ingredients, [src])
        return list(items.values()), unresolved

    # -- checks ----------------------------------------------------------------------------------

    def check(
        self, items: Sequence[MedItem], ctx: ck.PatientContext | None = None
    ) -> list[Finding]:
        index = self.index()
        rows = q.interactions_among(
            self.driver, ANSM_SYSTEM, ck.anchors_of(items, index), database=self.database
        )
        return ck.review(items, index, ck.pair_interactions(items, index, rows), ctx)

    def check_names(self, queries: Sequence[str]) -> Review:
        started = time.perf_counter()
        items, unresolved = self.items_for(queries)
        findings = self.check(items)
        return Review(
            items, findings, None, unresolved, self.index().version, time.perf_counter() - started
        )

    def person_items(self, person: str, as_of: int) -> list[MedItem]:
        rows = q.person_medications(
            self.driver, person, datetime.fromtimestamp(as_of, UTC), database=self.database
        )
        return reconcile(self.dictionary, rows)

    def context(self, person: str, as_of: int) -> ck.PatientContext:
        """Age, latest eGFR (measured or derived by the shadow) and an ongoing pregnancy."""
        if self.shadow is None:
            return ck.PatientContext()
        data = self.shadow.read([person], as_of).get(person)
        if data is None:
            return ck.PatientContext()
        egfr = next((v for v in engine.vitals(data) if v.metric == "egfr"), None)
        # every active condition, not only those the shadow's scores look at
        conditions = q.active_conditions(
            self.driver, person, datetime.fromtimestamp(as_of, UTC), database=self.database
        )
        pregnancy = sorted(c for c in conditions if _is_pregnancy(c))
        return ck.PatientContext(
            age=data.age_at(as_of),
            egfr=egfr.value if egfr else None,
            egfr_source=(egfr.method or "derived")
            if egfr and egfr.derived
            else (egfr.source if egfr else None),
            pregnant=bool(pregnancy),
            pregnancy_evidence=pregnancy[0] if pregnancy else None,
        )

    def review(self, person: str, as_of: int) -> Review:
        """The reconciled list of every domain, checked with the patient's context."""
        started = time.perf_counter()
        if not q.person_exists(self.driver, person, database=self.database):
            raise UnknownPersonError(f"no person {person!r}")
        items = self.person_items(person, as_of)
        ctx = self.context(person, as_of)
        findings = self.check(items, ctx)
        unresolved = [i.display for i in items if not i.resolved]
        return Review(
            items, findings, ctx, unresolved, self.index().version, time.perf_counter() - started
        )

    def check_prescription(self, person: str, drug: str, as_of: int) -> Review:
        """What-if: the findings a proposed prescription would add to the current list."""
        started = time.perf_counter()
        resolved = self.resolve(drug)
        if not resolved.ingredients:
            raise ValueError(f"no drug matches {drug!r} (try a generic name or rxnorm:<code>)")
        if not q.person_exists(self.driver, person, database=self.database):
            raise UnknownPersonError(f"no person {person!r}")
        items = self.person_items(person, as_of)
        key = "+".join(resolved.ingredients)
        src = _typed("proposed", "proposed", drug, as_of)
        existing = next((i for i in items if i.key == key), None)
        proposed = MedItem(
            key + "#proposed", resolved.display, resolved.ingredients, [src], proposed=True
        )
        all_items = [*items, proposed]
        ctx = self.context(person, as_of)
        findings = [f for f in self.check(all_items, ctx) if proposed.key in f.items]
        if existing is not None:
            findings.insert(0, ck.already_taking(existing, proposed))
        return Review(
            all_items, findings, ctx, [], self.index().version, time.perf_counter() - started
        )

    def literature(self, items: Sequence[MedItem], limit: int = 200) -> list[dict[str, Any]]:
        """Text-mined statements about pairs of the items' ingredients (never curated)."""
        ings = sorted({i for item in items for i in item.ingredients})
        pairs = [f"{a}|{b}" for n, a in enumerate(ings) for b in ings[n + 1 :]]
        return q.statements_for(self.driver, pairs, limit=limit, database=self.database)


def _typed(record: str, domain: str, display: str, at: int | None) -> MedSource:
    """A source for a drug typed by a user (a checked list, a proposed prescription)."""
    return MedSource(
        record=record,
        kind="MedicationRequest",
        domain=domain,
        domain_kind=None,
        domain_name=None,
        status="active",
        at=at,
        display=display,
        strength=strength(display),
        patient_reported=False,
        code=None,
    )


def _is_pregnancy(concept_uid: str) -> bool:
    system, _, code = concept_uid.rpartition("|")
    if "snomed" in system:
        return code in PREGNANCY_SNOMED
    if "icd" in system:
        return code.startswith(("O", "Z33", "Z34"))
    return False
