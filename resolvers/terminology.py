"""FHIR-style terminology operations in GraphQL: ``lookup``, ``validateCode``, ``subsumes``,
``expand``, ``searchConcepts``, ``translate``, ``codeSystems``, ``patientsWithCode``; and the
terminologist's ``loadCodeSystems``. All through :class:`access.terminology.TerminologyAccess`.

A system is named by its URI or a short alias (``icd10``, ``icd10cm``, ``loinc``, ``snomed``,
``rxnorm``, ``cvx``, ``ucum``, ``drugs``).
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import strawberry

from access.policy import AccessDeniedError
from access.terminology import ConceptView, TerminologyAccess
from resolvers.context import Info, in_thread
from resolvers.types import AccessDenied, Patient, PatientResult
from terminology.sources import parse


def _access(info: Info) -> TerminologyAccess:
    return TerminologyAccess.of(info.context.access, semantic=info.context.semantic)


@strawberry.type(description="Another name of a concept: synonym, inclusion term, translation.")
class ConceptDesignation:
    value: str
    language: str
    use: str


@strawberry.type(description="A property of a concept in its code system (kind, class, ids).")
class ConceptProperty:
    name: str
    value: str


@strawberry.type(description="A concept of a code system.")
class TermConcept:
    system: str
    code: str
    display: str | None
    designations: list[ConceptDesignation]
    properties: list[ConceptProperty]
    score: float | None = strawberry.field(
        default=None, description="Search relevance (full-text or cosine similarity)."
    )

    @classmethod
    def of(cls, c: ConceptView) -> TermConcept:
        return cls(
            system=c.system,
            code=c.code,
            display=c.display,
            designations=[
                ConceptDesignation(value=d.value, language=d.language, use=d.use)
                for d in c.designations
            ],
            properties=[
                ConceptProperty(name=k, value=v if isinstance(v, str) else json.dumps(v))
                for k, v in sorted(c.properties.items())
            ],
            score=c.score,
        )


@strawberry.type(description="A code's membership in one version of its code system.")
class ConceptVersion:
    version: str
    display: str | None
    status: str = strawberry.field(description="active | retired")
    changed: bool = strawberry.field(description="Display differs from an earlier version.")


@strawberry.type(description="A code system version loaded in the graph.")
class CodeSystemVersion:
    system: str
    version: str
    name: str
    title: str | None
    source: str | None
    licence: str | None
    content: str = strawberry.field(description="complete | fragment")
    hierarchical: bool
    note: str | None
    concepts: int


@strawberry.type(description="$lookup: a code with its designations, parents and versions.")
class CodeLookup:
    concept: TermConcept
    parents: list[TermConcept]
    children_count: int
    versions: list[ConceptVersion]


@strawberry.type(description="The code is not in the graph (or not in that version).")
class ConceptNotFound:
    system: str
    code: str
    message: str = "concept not found"


LookupResult = Annotated[
    CodeLookup | ConceptNotFound | AccessDenied, strawberry.union("LookupResult")
]


@strawberry.type(description="$validate-code outcome.")
class CodeValidation:
    result: bool
    message: str
    display: str | None = strawberry.field(description="The code's display, when known.")


@strawberry.enum(description="$subsumes outcome: how code A relates to code B.")
class SubsumptionOutcome(Enum):
    EQUIVALENT = "equivalent"
    SUBSUMES = "subsumes"
    SUBSUMED_BY = "subsumed-by"
    NOT_SUBSUMED = "not-subsumed"


@strawberry.type(description="One page of an expansion, ordered by code.")
class Expansion:
    concepts: list[TermConcept]
    total: int
    has_next_page: bool
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")


@strawberry.type(description="A target of $translate, with the concept map it came through.")
class Translation:
    concept: TermConcept
    map: str
    equivalence: str
    method: str


@strawberry.type(description="What loading one code system version did.")
class CodeSystemLoad:
    system: str
    version: str
    concepts: int
    created: int
    changed: int
    retired: int
    problems: list[str]


def _system_version(row: dict[str, object]) -> CodeSystemVersion:
    return CodeSystemVersion(
        system=str(row["system"]),
        version=str(row["version"]),
        name=str(row.get("name") or ""),
        title=_opt(row.get("title")),
        source=_opt(row.get("source")),
        licence=_opt(row.get("licence")),
        content=str(row.get("content") or ""),
        hierarchical=bool(row.get("hierarchical")),
        note=_opt(row.get("note")),
        concepts=int(str(row.get("concepts") or 0)),
    )


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


@strawberry.type
class TerminologyQuery:
    @strawberry.field(description="$lookup: a code's display, designations, parents, versions.")
    async def lookup(
        self, info: Info, system: str, code: str, version: str | None = None
    ) -> LookupResult:
        try:
            found = await in_thread(_access(info).lookup, system, code, version)
        except AccessDeniedError as e:
            return AccessDenied(message=str(e))
        if found is None:
            return ConceptNotFound(system=system, code=code)
        return CodeLookup(
            concept=TermConcept.of(found.concept),
            parents=[
                TermConcept(
                    system=found.concept.system,
                    code=code_,
                    display=display,
                    designations=[],
                    properties=[],
                )
                for code_, display in found.parents
            ],
            children_count=found.children,
            versions=[
                ConceptVersion(version=v, display=d, status=s, changed=c)
                for v, d, s, c in found.versions
            ],
        )

    @strawberry.field(description="$validate-code: is the code known (and the display right)?")
    async def validate_code(
        self, info: Info, system: str, code: str, display: str | None = None
    ) -> CodeValidation:
        v = await in_thread(_access(info).validate, system, code, display)
        return CodeValidation(result=v.result, message=v.message, display=v.display)

    @strawberry.field(description="$subsumes: does code A subsume code B (through IS_A)?")
    async def subsumes(
        self, info: Info, system: str, code_a: str, code_b: str
    ) -> SubsumptionOutcome | None:
        outcome = await in_thread(_access(info).subsumes, system, code_a, code_b)
        return SubsumptionOutcome(outcome) if outcome else None

    @strawberry.field(description="$expand: descendants of `under` (or the whole system), paged.")
    async def expand(
        self,
        info: Info,
        system: str,
        under: Annotated[
            str | None, strawberry.argument(description="root code; none: the whole system")
        ] = None,
        filter: str | None = None,
        first: Annotated[int, strawberry.argument(description="page size, 1-500")] = 50,
        after: str | None = None,
    ) -> Expansion:
        rows, total, has_next = await in_thread(
            _access(info).expand, system, under, filter, first, after
        )
        return Expansion(
            concepts=[TermConcept.of(c) for c in rows],
            total=total,
            has_next_page=has_next,
            end_cursor=rows[-1].code if rows else None,
        )

    @strawberry.field(
        description="Full-text search over displays and designations in any language; "
        "`semantic: true` ranks by embeddings when an embedding index is configured."
    )
    async def search_concepts(
        self,
        info: Info,
        text: str,
        systems: list[str] | None = None,
        language: str | None = None,
        first: int = 20,
        semantic: bool = False,
    ) -> list[TermConcept]:
        found = await in_thread(
            _access(info).search, text, systems, language, first, semantic=semantic
        )
        return [TermConcept.of(c) for c in found]

    @strawberry.field(description="$translate: the code's targets in another system (maps).")
    async def translate(
        self, info: Info, system: str, code: str, target_system: str
    ) -> list[Translation]:
        rows = await in_thread(_access(info).translate, system, code, target_system)
        return [
            Translation(concept=TermConcept.of(c), map=m, equivalence=e, method=method)
            for c, m, e, method in rows
        ]

    @strawberry.field(description="Code system versions loaded in the graph.")
    async def code_systems(self, info: Info) -> list[CodeSystemVersion]:
        rows = await in_thread(_access(info).code_systems)
        return [_system_version(r) for r in rows]

    @strawberry.field(
        description="Patients with a fact coded by this code (or, with includeDescendants, by "
        "any code under it)."
    )
    async def patients_with_code(
        self,
        info: Info,
        system: str,
        code: str,
        include_descendants: bool = True,
        first: int = 100,
    ) -> list[PatientResult]:
        try:
            rows = await in_thread(
                _access(info).patients_with_code, system, code, include_descendants, first
            )
        except AccessDeniedError as e:
            return [AccessDenied(message=str(e))]
        loader = info.context.loaders.persons()
        for row in rows:
            loader.prime(row["uid"], row)
        return [Patient.from_row(row) for row in rows]


@strawberry.type
class TerminologyMutation:
    @strawberry.mutation(
        description="Load code systems from their packaged sources (terminologists); "
        "idempotent: re-loading changes nothing."
    )
    async def load_code_systems(
        self, info: Info, sources: list[str] | None = None
    ) -> list[CodeSystemLoad]:
        access = _access(info)

        def run() -> list[CodeSystemLoad]:
            from access.policy import Action, require

            require(access.principal, Action.WRITE_TERMINOLOGY)  # before any parsing work
            report = access.load(list(parse(list(sources or []))))
            return [
                CodeSystemLoad(
                    system=s.system,
                    version=s.version,
                    concepts=s.concepts,
                    created=s.write.nodes_created["Concept"],
                    changed=s.write.nodes_changed["Concept"],
                    retired=s.retired,
                    problems=s.problems[:100],
                )
                for s in report.systems
            ]

        return await in_thread(run)


QUERIES: tuple[type, ...] = (TerminologyQuery,)
MUTATIONS: tuple[type, ...] = (TerminologyMutation,)
