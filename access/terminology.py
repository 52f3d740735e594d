"""Checked terminology operations: reads for clinicians and terminologists, loads for
terminologists (and admins). Every method checks the principal before any query runs.

``search(semantic=True)`` goes through a :class:`SemanticSearch` when one is configured (the
embeddings and vector index of ``nlp/``); without one it says so instead of pretending.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from access.consent import fact_categories
from access.guard import DEMOGRAPHICS, ConsentGuard
from access.mapping import MappingAccess, Suggester
from access.policy import Action, Principal, Role, require
from access.records import RecordAccess
from graph import terminology as q
from graph.connection import Driver
from graph.reader import GraphReader, lucene_query
from terminology.model import UCUM, Designation, ParsedSystem
from terminology.sources import system_url, ucum_valid

MAX_PAGE = 500


class SemanticHit(Protocol):
    """One concept found by meaning (``nlp.semantic.SemanticHit`` has this shape)."""

    @property
    def uid(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def system(self) -> str | None: ...
    @property
    def code(self) -> str | None: ...
    @property
    def display(self) -> str | None: ...


class SemanticSearch(Protocol):
    """Nearest concepts to a text by meaning: ``nlp.semantic.SemanticSearch`` over the vector
    indexes. Terminology reads take it when the process has one configured."""

    def search(
        self, text: str, *, k: int = 10, system: str | None = None, model: str | None = None
    ) -> Sequence[SemanticHit]: ...


@dataclass(frozen=True, slots=True)
class ConceptView:
    system: str
    code: str
    display: str | None
    designations: list[Designation] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    score: float | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    concept: ConceptView
    parents: list[tuple[str, str | None]]
    children: int
    #: (version, display, status, changed) per code system version the concept belongs to.
    versions: list[tuple[str, str | None, str, bool]]


@dataclass(frozen=True, slots=True)
class Validation:
    result: bool
    message: str
    display: str | None = None


def concept_view(row: dict[str, Any], score: float | None = None) -> ConceptView:
    values = row.get("designationValues") or []
    languages = row.get("designationLanguages") or []
    uses = row.get("designationUses") or []
    props = json.loads(row["properties"]) if row.get("properties") else {}
    return ConceptView(
        system=row["system"],
        code=row["code"],
        display=row.get("display"),
        designations=[
            Designation(v, lang, u) for v, lang, u in zip(values, languages, uses, strict=False)
        ],
        properties=props,
        score=score,
    )


class TerminologyAccess:
    """One principal's terminology operations (one per request)."""

    def __init__(
        self,
        reader: GraphReader,
        principal: Principal,
        *,
        semantic: SemanticSearch | None = None,
        guard: ConsentGuard | None = None,
    ) -> None:
        self._reader = reader
        self.principal = principal
        self.semantic = semantic
        self._guard = guard or ConsentGuard(reader, principal)

    @classmethod
    def for_driver(
        cls, driver: Driver, principal: Principal, *, database: str | None = None
    ) -> TerminologyAccess:
        return cls(GraphReader(driver, database=database), principal)

    @classmethod
    def of(
        cls, records: RecordAccess, *, semantic: SemanticSearch | None = None
    ) -> TerminologyAccess:
        return cls(records.reader, records.principal, semantic=semantic, guard=records.guard)

    def _read(self) -> None:
        require(self.principal, Action.READ_TERMINOLOGY)

    def lookup(self, system: str, code: str, version: str | None = None) -> Lookup | None:
        self._read()
        row = q.lookup(self._reader, system_url(system), code)
        if row is None:
            return None
        versions = [
            (v["version"], v.get("display"), v["status"], bool(v.get("changed")))
            for v in row["versions"]
        ]
        if version is not None:
            versions = [v for v in versions if v[0] == version]
            if not versions:
                return None
        concept = concept_view(row["concept"])
        if version is not None and versions[0][1]:
            concept = ConceptView(
                concept.system,
                concept.code,
                versions[0][1],
                concept.designations,
                concept.properties,
            )
        return Lookup(
            concept=concept,
            parents=sorted((p["code"], p.get("display")) for p in row["parents"]),
            children=int(row["children"]),
            versions=sorted(versions),
        )

    def validate(self, system: str, code: str, display: str | None = None) -> Validation:
        self._read()
        url = system_url(system)
        found = self.lookup(url, code)
        if found is None:
            if url == UCUM and ucum_valid(code):
                return Validation(True, f"{code!r} is a valid UCUM expression")
            return Validation(False, f"unknown code {code!r} in {url}")
        if found.versions and all(v[2] == "retired" for v in found.versions[-1:]):
            return Validation(False, f"{code!r} is retired in {url} {found.versions[-1][0]}")
        names = {found.concept.display or ""} | {d.value for d in found.concept.designations}
        if display is not None and display.casefold() not in {n.casefold() for n in names}:
            return Validation(
                False,
                f"wrong display {display!r} for {code!r}; expected {found.concept.display!r}",
                found.concept.display,
            )
        return Validation(True, "valid", found.concept.display)

    def subsumes(self, system: str, code_a: str, code_b: str) -> str | None:
        self._read()
        return q.subsumes(self._reader, system_url(system), code_a, code_b)

    def expand(
        self,
        system: str,
        root: str | None,
        text: str | None,
        first: int,
        after: str | None,
    ) -> tuple[list[ConceptView], int, bool]:
        """One page ordered by code after the code ``after``; the total; whether more follow."""
        self._read()
        if not 1 <= first <= MAX_PAGE:
            raise ValueError(f"first must be between 1 and {MAX_PAGE}")
        rows, total = q.expand(self._reader, system_url(system), root, text, first + 1, after)
        return [concept_view(r) for r in rows[:first]], total, len(rows) > first

    def descendants(self, system: str, code: str) -> list[str]:
        self._read()
        return q.descendants(self._reader, system_url(system), code)

    def search(
        self,
        text: str,
        systems: Sequence[str] | None = None,
        language: str | None = None,
        first: int = 20,
        *,
        semantic: bool = False,
    ) -> list[ConceptView]:
        self._read()
        if not 1 <= first <= MAX_PAGE:
            raise ValueError(f"first must be between 1 and {MAX_PAGE}")
        urls = [system_url(s) for s in systems] if systems else None
        if semantic:
            if self.semantic is None:
                raise ValueError("semantic search is not configured (no embedding index)")
            hits = [
                hit
                for url in ([*urls] if urls else [None])
                for hit in self.semantic.search(text, k=first, system=url)
            ]
            hits.sort(key=lambda h: -h.score)
            return [
                ConceptView(h.system or "", h.code or "", h.display, score=h.score)
                for h in hits[:first]
            ]
        lucene = lucene_query(text)
        if not lucene:
            return []
        rows = q.search(self._reader, lucene, urls, language, first)
        return [concept_view(r, r.get("score")) for r in rows]

    def translate(
        self, system: str, code: str, target: str
    ) -> list[tuple[ConceptView, str, str, str]]:
        """Targets with (map, equivalence, method); a code maps to itself in its own system."""
        self._read()
        url, target_url = system_url(system), system_url(target)
        if url == target_url:
            found = self.lookup(url, code)
            return [(found.concept, "identity", "equal", "same-system")] if found else []
        return [
            (concept_view(r), r["map"], r["equivalence"], r["method"])
            for r in q.translate(self._reader, url, code, target_url)
        ]

    def code_systems(self) -> list[dict[str, Any]]:
        self._read()
        return q.code_systems(self._reader)

    def patients_with_code(
        self, system: str, code: str, include_descendants: bool, first: int
    ) -> list[dict[str, Any]]:
        self._read()
        require(self.principal, Action.SEARCH_PATIENTS)
        if not 1 <= first <= MAX_PAGE:
            raise ValueError(f"first must be between 1 and {MAX_PAGE}")
        rows = q.patients_with_code(
            self._reader, system_url(system), code, include_descendants, first
        )
        # finding a person by a code says they have it: the consent must cover that fact
        guard = self._guard
        decisions = guard.decisions([r["uid"] for r in rows])
        out = []
        for row in rows:
            hits = row.pop("hits")
            decision = decisions[row["uid"]]
            ok = guard.allows(decision, DEMOGRAPHICS) and any(
                guard.allows(decision, fact_categories(h["labels"], {}, [h["code"]])) for h in hits
            )
            guard.audit_note(
                row["uid"], "read", "allowed" if ok else "denied", what="patientsWithCode"
            )
            if ok:
                out.append(row)
        return out

    def load(
        self,
        systems: Sequence[ParsedSystem],
        *,
        progress: Callable[[int], None] | None = None,
        suggester: Suggester | None = None,
    ) -> q.TerminologyLoad:
        """Load code system versions; mappings whose targets a new version retires or
        changes are flagged for re-review (with fresh suggestions when ``suggester`` is
        given), as ``report.flagged``."""
        require(self.principal, Action.WRITE_TERMINOLOGY)
        report = q.load_systems(
            self._reader.driver, systems, database=self._reader.database, progress=progress
        )
        mappings = MappingAccess(
            self._reader.driver,
            Principal(self.principal.subject, Role.TERMINOLOGIST),  # loading implies curating
            suggester=suggester,
            database=self._reader.database,
        )
        for s in report.systems:
            if s.retired or s.changed:
                report.flagged += mappings.rereview(s.system, s.version).flagged
        return report
