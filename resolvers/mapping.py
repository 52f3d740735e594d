"""The mapping workbench in GraphQL (terminologists): suggestions, the review queue with
filters, reviews and bulk reviews with history, the two-reviewer agreement report, concept map
publishing, export (FHIR ConceptMap JSON, SSSOM TSV) and import. All through
:class:`access.mapping.MappingAccess`; refusals and bad requests come back as errors that say
what was wrong (``not allowed: curate_mappings``, ``unknown status 'x'``)."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Any

import strawberry

from access.mapping import MappingAccess, Published
from graph.mapping import MappingFilter
from resolvers.context import Info, in_thread
from terminology.conceptmap import from_fhir, from_sssom


def _access(info: Info) -> MappingAccess:
    reader = info.context.access.reader
    return MappingAccess(
        reader.driver,
        info.context.access.principal,
        suggester=info.context.mapper,
        database=reader.database,
    )


@strawberry.enum(description="Where a mapping is in review.")
class MappingStatus(Enum):
    UNREVIEWED = "unreviewed"
    APPROVED = "approved"
    REJECTED = "rejected"
    FLAGGED = "flagged"


@strawberry.enum(description="How the target relates to the local code (FHIR R4 equivalence).")
class MapEquivalence(Enum):
    EQUAL = "equal"
    EQUIVALENT = "equivalent"
    WIDER = "wider"
    NARROWER = "narrower"
    INEXACT = "inexact"
    UNMATCHED = "unmatched"


@strawberry.enum(description="Concept map file formats.")
class ConceptMapFormat(Enum):
    FHIR = "fhir"
    SSSOM = "sssom"


@strawberry.type(description="One piece of evidence behind a candidate's rank.")
class MappingFeature:
    name: str
    value: float


@strawberry.type(description="A target concept the engine proposes for a local code.")
class MappingCandidate:
    code: str
    display: str | None
    score: float | None = strawberry.field(description="Confidence 0-1 (share among the top).")
    method: str = strawberry.field(description="Generators that found it: lexical+embedding:e5")
    rationale: str | None
    features: list[MappingFeature]


@strawberry.type(description="One entry of a mapping's history (append-only).")
class MappingChange:
    at: str
    by: str
    action: str = strawberry.field(description="suggest | review | bulk | flag | import")
    before: str | None = strawberry.field(description="Changed fields before, as JSON")
    after: str | None = strawberry.field(description="Changed fields after, as JSON")
    comment: str | None


@strawberry.type(description="A local code's mapping onto a target code system.")
class Mapping:
    id: strawberry.ID
    workspace: str
    source_system: str
    source_code: str
    source_display: str | None
    source_frequency: int | None
    target_system: str
    target_code: str | None
    target_display: str | None
    score: float | None
    method: str | None
    rationale: str | None
    status: MappingStatus
    equivalence: MapEquivalence | None
    comment: str | None
    reviewer: str | None
    reviewed_at: str | None
    updated_at: str | None
    flag_reason: str | None
    candidates: list[MappingCandidate]

    @strawberry.field(description="Every change to this mapping, oldest first.")
    async def history(self, info: Info) -> list[MappingChange]:
        rows = await in_thread(_access(info).history, str(self.id))
        return [
            MappingChange(
                at=_iso(r["at"]) or "",
                by=r["by"],
                action=r["action"],
                before=r.get("before"),
                after=r.get("after"),
                comment=r.get("comment"),
            )
            for r in rows
        ]

    @classmethod
    def of(cls, m: dict[str, Any]) -> Mapping:
        candidates = json.loads(m["candidates"]) if m.get("candidates") else []
        equivalence = m.get("equivalence")
        return cls(
            id=strawberry.ID(m["uid"]),
            workspace=m["workspace"],
            source_system=m["sourceSystem"],
            source_code=m["sourceCode"],
            source_display=m.get("sourceDisplay"),
            source_frequency=m.get("sourceFrequency"),
            target_system=m["targetSystem"],
            target_code=m.get("targetCode"),
            target_display=m.get("targetDisplay"),
            score=m.get("score"),
            method=m.get("method"),
            rationale=m.get("rationale"),
            status=MappingStatus(m.get("status") or "unreviewed"),
            equivalence=MapEquivalence(equivalence) if equivalence else None,
            comment=m.get("comment"),
            reviewer=m.get("reviewer"),
            reviewed_at=_iso(m.get("reviewedAt")),
            updated_at=_iso(m.get("updatedAt")),
            flag_reason=m.get("flagReason"),
            candidates=[
                MappingCandidate(
                    code=c["code"],
                    display=c.get("display"),
                    score=c.get("score"),
                    method=c.get("method") or "",
                    rationale=c.get("rationale"),
                    features=[
                        MappingFeature(name=k, value=float(v))
                        for k, v in sorted((c.get("features") or {}).items())
                    ],
                )
                for c in candidates
            ],
        )


@strawberry.type(description="A page of mappings.")
class MappingPage:
    items: list[Mapping]
    total: int
    has_next_page: bool
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")


@strawberry.type(description="Mappings from one system to another in one workspace, by status.")
class MappingProject:
    workspace: str
    source_system: str
    target_system: str
    unreviewed: int
    approved: int
    rejected: int
    flagged: int
    total: int


@strawberry.type(description="A local code two reviewers decided differently.")
class MappingDisagreement:
    source_code: str
    source_display: str | None
    decision_a: str = strawberry.field(description="target code, <rejected> or <unmatched>")
    decision_b: str


@strawberry.type(description="How two independent reviewers (workspaces) agree.")
class MappingAgreement:
    codes: int
    compared: int = strawberry.field(description="Codes both reviewers decided.")
    agreed: int
    percent: float = strawberry.field(description="Observed agreement, 0-1.")
    kappa: float | None = strawberry.field(description="Cohen's kappa (beyond chance).")
    only_a: int
    only_b: int
    disagreements: list[MappingDisagreement]


@strawberry.type(description="A published version of a concept map.")
class ConceptMapVersion:
    name: str
    version: str
    source_system: str
    target_system: str
    workspace: str | None
    published_at: str | None
    published_by: str | None
    elements: int
    current: bool


@strawberry.type(description="What a suggestion run did.")
class SuggestResult:
    codes: int
    changed: int = strawberry.field(description="Mappings whose candidates changed.")
    seconds: float
    without_candidates: list[str]


@strawberry.type(description="What publishing (or importing) a concept map did.")
class PublishResult:
    name: str
    version: str
    elements: int
    links: int = strawberry.field(description="MAPS_TO links from local to standard codes.")
    facts_coded: int = strawberry.field(description="Facts that got the standard code.")

    @classmethod
    def of(cls, p: Published) -> PublishResult:
        return cls(
            name=p.name,
            version=p.version,
            elements=p.elements,
            links=p.links,
            facts_coded=p.facts_coded,
        )


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return str(value.isoformat()) if hasattr(value, "isoformat") else str(value)


def _offset(after: str | None) -> int:
    if after is None:
        return 0
    if not after.isdigit():
        raise ValueError(f"bad cursor {after!r}")
    return int(after)


@strawberry.type
class MappingQuery:
    @strawberry.field(description="Mapping projects (source → target per workspace) by status.")
    async def mapping_projects(
        self, info: Info, workspace: str | None = None
    ) -> list[MappingProject]:
        rows = await in_thread(_access(info).projects, workspace)
        out = []
        for r in rows:
            counts = r["counts"]
            out.append(
                MappingProject(
                    workspace=r["workspace"],
                    source_system=r["sourceSystem"],
                    target_system=r["targetSystem"],
                    unreviewed=counts.get("unreviewed", 0),
                    approved=counts.get("approved", 0),
                    rejected=counts.get("rejected", 0),
                    flagged=counts.get("flagged", 0),
                    total=sum(counts.values()),
                )
            )
        return out

    @strawberry.field(
        description="The review queue: mappings of a workspace, most frequent local codes "
        "first, filtered by systems, status, text (local or target code/display), score, "
        "reviewer."
    )
    async def mappings(
        self,
        info: Info,
        source_system: str | None = None,
        target_system: str | None = None,
        workspace: str = "main",
        status: list[MappingStatus] | None = None,
        text: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        reviewer: str | None = None,
        first: Annotated[int, strawberry.argument(description="page size, 1-500")] = 50,
        after: str | None = None,
    ) -> MappingPage:
        offset = _offset(after)
        flt = MappingFilter(
            workspace=workspace,
            source_system=source_system,
            target_system=target_system,
            statuses=tuple(s.value for s in status) if status else None,
            reviewer=reviewer,
            min_score=min_score,
            max_score=max_score,
            text=text,
        )
        rows, total = await in_thread(_access(info).mappings, flt, first=first, offset=offset)
        end = offset + len(rows)
        return MappingPage(
            items=[Mapping.of(r) for r in rows],
            total=total,
            has_next_page=end < total,
            end_cursor=str(end) if rows else None,
        )

    @strawberry.field(description="One mapping by id.")
    async def mapping(self, info: Info, id: strawberry.ID) -> Mapping | None:
        row = await in_thread(_access(info).get, str(id))
        return Mapping.of(row) if row else None

    @strawberry.field(description="Agreement of two reviewers who mapped the same list.")
    async def mapping_agreement(
        self,
        info: Info,
        source_system: str,
        target_system: str,
        workspace_a: str,
        workspace_b: str,
    ) -> MappingAgreement:
        r = await in_thread(
            _access(info).agreement, source_system, target_system, workspace_a, workspace_b
        )
        return MappingAgreement(
            codes=r.codes,
            compared=r.compared,
            agreed=r.agreed,
            percent=r.percent,
            kappa=r.kappa,
            only_a=r.only_a,
            only_b=r.only_b,
            disagreements=[
                MappingDisagreement(
                    source_code=d.source_code,
                    source_display=d.source_display,
                    decision_a=d.a,
                    decision_b=d.b,
                )
                for d in r.disagreements
            ],
        )

    @strawberry.field(description="Published concept maps, newest version first.")
    async def concept_maps(
        self, info: Info, source_system: str | None = None
    ) -> list[ConceptMapVersion]:
        rows = await in_thread(_access(info).concept_maps, source_system)
        return [
            ConceptMapVersion(
                name=r["name"],
                version=r["version"],
                source_system=r["sourceSystem"],
                target_system=r["targetSystem"],
                workspace=r.get("workspace"),
                published_at=_iso(r.get("publishedAt")),
                published_by=r.get("publishedBy"),
                elements=int(r.get("elements") or 0),
                current=bool(r.get("current")),
            )
            for r in rows
        ]

    @strawberry.field(description="A published concept map as FHIR ConceptMap JSON or SSSOM TSV.")
    async def concept_map_export(
        self,
        info: Info,
        name: str,
        version: str | None = None,
        format: ConceptMapFormat = ConceptMapFormat.FHIR,
    ) -> str:
        return await in_thread(_access(info).export, name, version, format.value)


@strawberry.type
class MappingMutation:
    @strawberry.mutation(
        description="Rank candidates for a local code system's codes (all, or `codes`) in the "
        "target system and store them; reviewed mappings keep their target."
    )
    async def suggest_mappings(
        self,
        info: Info,
        source_system: str,
        target_system: str,
        workspace: str = "main",
        codes: list[str] | None = None,
    ) -> SuggestResult:
        out = await in_thread(
            _access(info).suggest, source_system, target_system, workspace=workspace, codes=codes
        )
        return SuggestResult(
            codes=out.codes,
            changed=out.changed,
            seconds=out.seconds,
            without_candidates=out.without_candidates,
        )

    @strawberry.mutation(description="Review one mapping (each change goes into its history).")
    async def review_mapping(
        self,
        info: Info,
        id: strawberry.ID,
        status: MappingStatus | None = None,
        equivalence: MapEquivalence | None = None,
        target_code: str | None = None,
        comment: str | None = None,
    ) -> Mapping:
        row = await in_thread(
            _access(info).update,
            str(id),
            status=status.value if status else None,
            equivalence=equivalence.value if equivalence else None,
            target_code=target_code,
            comment=comment,
        )
        return Mapping.of(row)

    @strawberry.mutation(
        description="The same review for many mappings; `acceptTop` first puts each one's best "
        "candidate back as its target."
    )
    async def bulk_review_mappings(
        self,
        info: Info,
        ids: list[strawberry.ID],
        status: MappingStatus | None = None,
        equivalence: MapEquivalence | None = None,
        comment: str | None = None,
        accept_top: bool = False,
    ) -> list[Mapping]:
        rows = await in_thread(
            _access(info).bulk,
            [str(i) for i in ids],
            status=status.value if status else None,
            equivalence=equivalence.value if equivalence else None,
            comment=comment,
            accept_top=accept_top,
        )
        return [Mapping.of(r) for r in rows]

    @strawberry.mutation(
        description="Publish the approved mappings as the next version of a concept map; facts "
        "coded locally get the standard codes."
    )
    async def publish_concept_map(
        self,
        info: Info,
        source_system: str,
        target_system: str,
        workspace: str = "main",
        name: str | None = None,
    ) -> PublishResult:
        p = await in_thread(
            _access(info).publish, source_system, target_system, workspace=workspace, name=name
        )
        return PublishResult.of(p)

    @strawberry.mutation(
        description="Import a concept map (FHIR ConceptMap JSON or SSSOM TSV) as approved "
        "mappings and publish it; unknown codes reject the whole map."
    )
    async def import_concept_map(
        self,
        info: Info,
        content: str,
        format: ConceptMapFormat = ConceptMapFormat.FHIR,
        workspace: str = "main",
    ) -> PublishResult:
        access = _access(info)

        def run() -> PublishResult:
            from access.policy import Action, require

            require(access.principal, Action.CURATE_MAPPINGS)  # before parsing anything
            if format is ConceptMapFormat.FHIR:
                try:
                    data = json.loads(content)
                except json.JSONDecodeError as e:
                    raise ValueError(f"content is not JSON: {e}") from e
                doc = from_fhir(data, source="content")
            else:
                doc = from_sssom(content, source="content")
            return PublishResult.of(access.import_map(doc, workspace=workspace))

        return await in_thread(run)


QUERIES: tuple[type, ...] = (MappingQuery,)
MUTATIONS: tuple[type, ...] = (MappingMutation,)
