"""GraphQL of drug safety: ``interactions(drugs:)``, ``Patient.medicationReview`` and
``checkPrescription`` (what-if). Every call goes through :class:`access.drugs.DrugAccess`."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry

from access.drugs import DrugAccess
from drugs.model import Finding, MedItem, MedSource
from drugs.service import Review
from resolvers.context import Info, in_thread


def _drugs(info: Info) -> DrugAccess:
    ctx = info.context
    if ctx.drugs is None:
        raise ValueError("drug safety is not configured in this process")
    return DrugAccess(ctx.access, ctx.drugs, clock=ctx.shadow_clock)


@strawberry.enum(description="The common severity scale every source's own levels map onto.")
class DrugSeverity(Enum):
    CONTRAINDICATED = "contraindicated"
    MAJOR = "major"
    MODERATE = "moderate"
    MINOR = "minor"


@strawberry.type(description="One domain's latest record of a medication.")
class MedicationSource:
    record: str = strawberry.field(description="Uid of the MedicationRequest/Statement.")
    kind: str = strawberry.field(description="MedicationRequest (clinic) | MedicationStatement")
    domain: str
    domain_kind: str | None
    domain_name: str | None
    status: str
    active: bool
    at: datetime | None
    display: str = strawberry.field(description="The medication as this source names it.")
    strength: str | None
    patient_reported: bool
    code: str | None = strawberry.field(description="Coded concept uid (system|code).")
    note: str | None

    @classmethod
    def of(cls, s: MedSource) -> MedicationSource:
        return cls(
            record=s.record,
            kind=s.kind,
            domain=s.domain,
            domain_kind=s.domain_kind,
            domain_name=s.domain_name,
            status=s.status,
            active=s.active,
            at=datetime.fromtimestamp(s.at, UTC) if s.at is not None else None,
            display=s.display,
            strength=s.strength,
            patient_reported=s.patient_reported,
            code=s.code,
            note=s.note,
        )


@strawberry.type(description="One medication of the reconciled list, with every source.")
class MedicationItem:
    key: str = strawberry.field(description="The sorted ingredients (or 'unresolved:<name>').")
    display: str
    ingredients: list[str] = strawberry.field(description="Drug dictionary ingredient names.")
    active: bool
    resolved: bool = strawberry.field(description="False: no ingredient matched its name.")
    proposed: bool = strawberry.field(description="A what-if prescription, not written.")
    prescribers: list[str] = strawberry.field(description="Domains with an active prescription.")
    conflicts: list[str] = strawberry.field(
        description="Sources that disagree: stopped vs active, different strengths."
    )
    sources: list[MedicationSource]

    @classmethod
    def of(cls, i: MedItem) -> MedicationItem:
        return cls(
            key=i.key,
            display=i.display,
            ingredients=list(i.ingredients),
            active=i.active,
            resolved=i.resolved,
            proposed=i.proposed,
            prescribers=i.prescribers,
            conflicts=list(i.conflicts),
            sources=[MedicationSource.of(s) for s in i.sources],
        )


@strawberry.type(description="One result of a check, ranked; the evidence says where it is from.")
class DrugFinding:
    kind: str = strawberry.field(description="interaction | duplicate | polypharmacy | context")
    severity: DrugSeverity = strawberry.field(description="After patient context.")
    base_severity: DrugSeverity = strawberry.field(description="As the source states it.")
    priority: str = strawberry.field(
        description="interrupt (contraindicated/major: show first) | review | info"
    )
    title: str
    items: list[str] = strawberry.field(description="Keys of the medication items concerned.")
    drugs: list[str] = strawberry.field(description="Their displays.")
    evidence: str = strawberry.field(description="Knowledge base and version, or the rule.")
    source_level: str | None = strawberry.field(description="The source's own level wording.")
    mechanism: str | None
    management: str | None
    via: list[str] = strawberry.field(description="Thesaurus entries or classes matched.")
    rules: list[str] = strawberry.field(description="Patient-context rules applied, with why.")
    also: list[str] = strawberry.field(description="Weaker entries about the same pair.")
    sources: list[str] = strawberry.field(description="Domains the drugs concerned come from.")
    interaction: str | None = strawberry.field(description="DrugInteraction uid in the graph.")
    score: float

    @classmethod
    def of(cls, f: Finding, items: dict[str, MedItem]) -> DrugFinding:
        concerned = [items[k] for k in f.items if k in items]
        return cls(
            kind=f.kind,
            severity=DrugSeverity(f.severity.value),
            base_severity=DrugSeverity(f.base_severity.value),
            priority=f.priority,
            title=f.title,
            items=list(f.items),
            drugs=[i.display for i in concerned],
            evidence=f.evidence,
            source_level=f.source_level,
            mechanism=f.mechanism,
            management=f.management,
            via=list(f.via),
            rules=list(f.rules),
            also=list(f.also),
            sources=sorted({s.domain for i in concerned for s in i.sources if s.active}),
            interaction=f.interaction,
            score=f.score,
        )


@strawberry.type(description="What the graph knows of the patient that changes a drug's risk.")
class MedicationContext:
    age: float | None
    egfr: float | None = strawberry.field(description="Latest eGFR, mL/min/1.73m2.")
    egfr_source: str | None = strawberry.field(description="Domain, or the derivation used.")
    pregnant: bool
    pregnancy_evidence: str | None = strawberry.field(description="The condition's concept.")


@strawberry.type(description="A text-mined interaction statement: literature, never curated.")
class LiteratureStatement:
    drugs: list[str]
    type: str = strawberry.field(description="mechanism | effect | advice | unspecified")
    sentence: str
    source: str
    cue: str
    confidence: float
    method: str


@strawberry.type(description="Counts of findings by priority.")
class FindingCounts:
    interrupt: int
    review: int
    info: int


@strawberry.type(description="A checked medication list: reconciled items and ranked findings.")
class MedicationReview:
    items: list[MedicationItem]
    findings: list[DrugFinding] = strawberry.field(description="Most dangerous first.")
    counts: FindingCounts
    active_count: int
    context: MedicationContext | None
    unresolved: list[str] = strawberry.field(description="Names no ingredient matched.")
    knowledge: str | None = strawberry.field(description="Version of the knowledge used.")
    checked_in_ms: float
    _review: strawberry.Private[Review]
    _access: strawberry.Private[DrugAccess]

    @strawberry.field(
        description="Text-mined statements about pairs of these drugs, kept apart from the "
        "curated findings."
    )
    async def literature(self) -> list[LiteratureStatement]:
        rows = await in_thread(self._access.literature, self._review)
        return [_statement(r) for r in rows]

    @classmethod
    def of(cls, r: Review, access: DrugAccess) -> MedicationReview:
        items = {i.key: i for i in r.items}
        findings = [DrugFinding.of(f, items) for f in r.findings]
        ctx = r.context
        return cls(
            items=[MedicationItem.of(i) for i in r.items],
            findings=findings,
            counts=FindingCounts(
                interrupt=sum(f.priority == "interrupt" for f in findings),
                review=sum(f.priority == "review" for f in findings),
                info=sum(f.priority == "info" for f in findings),
            ),
            active_count=r.active_count,
            context=MedicationContext(
                age=round(ctx.age, 1) if ctx.age is not None else None,
                egfr=ctx.egfr,
                egfr_source=ctx.egfr_source,
                pregnant=ctx.pregnant,
                pregnancy_evidence=ctx.pregnancy_evidence,
            )
            if ctx is not None
            else None,
            unresolved=list(r.unresolved),
            knowledge=r.knowledge,
            checked_in_ms=round(r.seconds * 1000, 2),
            _review=r,
            _access=access,
        )


def _statement(r: dict[str, Any]) -> LiteratureStatement:
    return LiteratureStatement(
        drugs=[r.get("drugA") or "", r.get("drugB") or ""],
        type=str(r.get("type")),
        sentence=str(r.get("sentence")),
        source=str(r.get("source")),
        cue=str(r.get("cue") or ""),
        confidence=float(r.get("confidence") or 0.0),
        method=str(r.get("method") or ""),
    )


async def medication_review(info: Info, person: str) -> MedicationReview:
    access = _drugs(info)
    review = await in_thread(access.review, person)
    return MedicationReview.of(review, access)


@strawberry.type
class DrugQuery:
    @strawberry.field(
        description="Check a typed list of drugs (names in any case, brands, French INNs, or "
        "rxnorm:<code>) for interactions and duplicate therapy; no patient data."
    )
    async def interactions(self, info: Info, drugs: list[str]) -> MedicationReview:
        access = _drugs(info)
        review = await in_thread(access.check, drugs)
        return MedicationReview.of(review, access)

    @strawberry.field(
        description="What-if: the findings a proposed prescription would add to the patient's "
        "current reconciled list, before it is written."
    )
    async def check_prescription(
        self, info: Info, patient_id: strawberry.ID, drug: str
    ) -> MedicationReview:
        access = _drugs(info)
        review = await in_thread(access.check_prescription, str(patient_id), drug)
        return MedicationReview.of(review, access)


QUERIES: tuple[type, ...] = (DrugQuery,)
