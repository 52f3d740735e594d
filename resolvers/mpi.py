"""The master patient index in GraphQL: ``matchPatient`` ($match), the steward's review queue
and decisions (confirm, reject, unlink). All through :class:`access.identity.IdentityAccess`."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from access.identity import IdentityAccess
from access.policy import AccessDeniedError
from identity.model import DemographicRecord
from mpi.service import Candidate
from resolvers.context import Info, in_thread
from resolvers.types import (
    AccessDenied,
    Connection,
    Edge,
    MatchEvidence,
    PageInfo,
    Patient,
    PatientNotFound,
    PatientResult,
    decode_cursor,
    encode_cursor,
    load_person,
    match_evidence,
)


@strawberry.input(description="Demographics to look a person up by; give what you have.")
class DemographicsInput:
    family: str | None = None
    given: str | None = None
    birth_date: date | None = None
    gender: str | None = None
    national_id: str | None = None
    postal_code: str | None = None
    city: str | None = None
    address_line: str | None = None
    phone: str | None = None
    other_family: list[str] | None = strawberry.field(
        default=None, description="Other family names: maiden, former, alias."
    )

    def to_record(self) -> DemographicRecord:
        return DemographicRecord(
            record_id="query",
            domain="query",
            family=self.family,
            given=self.given,
            birth_date=self.birth_date,
            gender=self.gender,
            national_id=self.national_id,
            postal_code=self.postal_code,
            city=self.city,
            address_line=self.address_line,
            phone=self.phone,
            other_family=tuple(self.other_family or ()),
        )


@strawberry.enum(
    description="FHIR match-grade: certain links automatically, probable needs review."
)
class MatchGrade(Enum):
    CERTAIN = "certain"
    PROBABLE = "probable"
    POSSIBLE = "possible"


@strawberry.enum
class MatchStatus(Enum):
    OPEN = "open"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    LINKED = "linked"


@strawberry.type(description="A candidate person for the demographics asked about.")
class PatientMatch:
    person_id: strawberry.ID
    record_id: strawberry.ID = strawberry.field(description="The best-matching domain record.")
    domain_id: strawberry.ID
    probability: float
    weight: float = strawberry.field(description="Match weight (log2 Bayes factor).")
    grade: MatchGrade
    evidence: list[MatchEvidence]

    @strawberry.field(description="The person's virtual EHR, if you may read it.")
    async def patient(self, info: Info) -> PatientResult:
        try:
            row = await load_person(info, str(self.person_id))
        except AccessDeniedError as e:
            return AccessDenied(message=str(e))
        return Patient.from_row(row) if row else PatientNotFound(id=self.person_id)

    @classmethod
    def from_candidate(cls, c: Candidate) -> PatientMatch:
        return cls(
            person_id=strawberry.ID(c.person),
            record_id=strawberry.ID(c.record),
            domain_id=strawberry.ID(c.domain),
            probability=c.probability,
            weight=c.weight,
            grade=MatchGrade(c.grade),
            evidence=match_evidence(c.evidence),
        )


@strawberry.type(description="One domain record of a match candidate, as the domain entered it.")
class MatchRecord:
    id: strawberry.ID
    domain_id: strawberry.ID
    record_id: str | None
    person_id: strawberry.ID | None
    name: str | None
    family: str | None
    given: list[str]
    other_family: list[str]
    birth_date: date | None
    gender: str | None
    national_id: str | None
    address_line: str | None
    city: str | None
    postal_code: str | None
    phone: str | None


@strawberry.type(description="A possible match in the data steward's review queue.")
class MatchCandidate:
    id: strawberry.ID
    status: MatchStatus
    probability: float | None
    weight: float | None
    evidence: list[MatchEvidence]
    records: list[MatchRecord]
    created_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None


@strawberry.type(description="What a steward's decision did.")
class LinkDecisionResult:
    action: str
    candidate_id: strawberry.ID | None
    person_id: strawberry.ID | None = strawberry.field(
        description="The person the record(s) now belong to (confirm, unlink)."
    )


def _native(value: Any) -> Any:
    return value.to_native() if hasattr(value, "to_native") else value


def _record(row: dict[str, Any]) -> MatchRecord:
    return MatchRecord(
        id=strawberry.ID(row["uid"]),
        domain_id=strawberry.ID(row.get("domain") or ""),
        record_id=row.get("recordId"),
        person_id=strawberry.ID(row["person"]) if row.get("person") else None,
        name=row.get("name"),
        family=row.get("family"),
        given=list(row.get("given") or []),
        other_family=list(row.get("otherFamily") or []),
        birth_date=_native(row.get("birthDate")),
        gender=row.get("gender"),
        national_id=row.get("nationalId"),
        address_line=row.get("addressLine"),
        city=row.get("city"),
        postal_code=row.get("postalCode"),
        phone=row.get("phone"),
    )


def _candidate(row: dict[str, Any]) -> MatchCandidate:
    return MatchCandidate(
        id=strawberry.ID(row["uid"]),
        status=MatchStatus(row["status"]),
        probability=row.get("probability"),
        weight=row.get("weight"),
        evidence=match_evidence(row.get("evidence")),
        records=[_record(r) for r in row["records"]],
        created_at=_native(row.get("createdAt")),
        decided_by=row.get("decidedBy"),
        decided_at=_native(row.get("decidedAt")),
    )


def _identity(info: Info) -> IdentityAccess:
    return IdentityAccess.for_access(info.context.access)


@strawberry.type
class IdentityQuery:
    @strawberry.field(
        description="Patient/$match: scored candidate persons for these demographics, best "
        "first, one per person."
    )
    async def match_patient(
        self,
        info: Info,
        demographics: DemographicsInput,
        limit: Annotated[int, strawberry.argument(description="1-100")] = 10,
    ) -> list[PatientMatch]:
        found = await in_thread(_identity(info).match, demographics.to_record(), limit)
        return [PatientMatch.from_candidate(c) for c in found]

    @strawberry.field(
        description="The data steward's queue of possible matches, most likely first."
    )
    async def match_review_queue(
        self,
        info: Info,
        status: MatchStatus | None = MatchStatus.OPEN,
        first: Annotated[int, strawberry.argument(description="page size, 1-100")] = 20,
        after: str | None = None,
    ) -> Connection[MatchCandidate]:
        if not 1 <= first <= 100:
            raise ValueError("first must be between 1 and 100")
        cursor = None
        if after:
            probability, uid = decode_cursor(after, 2)
            cursor = (float(probability), uid)
        rows, total = await in_thread(
            _identity(info).review_queue, status.value if status else None, first + 1, cursor
        )
        page = rows[:first]
        edges = [
            Edge(
                node=_candidate(r), cursor=encode_cursor(str(r.get("probability") or 0.0), r["uid"])
            )
            for r in page
        ]
        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
            total_count=total,
        )


@strawberry.type
class IdentityMutation:
    @strawberry.mutation(
        description="Confirm a possible match: its two records' persons become one."
    )
    async def confirm_match(
        self, info: Info, id: strawberry.ID, comment: str | None = None
    ) -> LinkDecisionResult:
        person = await in_thread(_identity(info).confirm, str(id), comment)
        return LinkDecisionResult(
            action="confirm", candidate_id=id, person_id=strawberry.ID(person)
        )

    @strawberry.mutation(
        description="Reject a possible match: the two records stay apart, for good."
    )
    async def reject_match(
        self, info: Info, id: strawberry.ID, comment: str | None = None
    ) -> LinkDecisionResult:
        await in_thread(_identity(info).reject, str(id), comment)
        return LinkDecisionResult(action="reject", candidate_id=id, person_id=None)

    @strawberry.mutation(
        description="Take a domain record out of its person into a new person of its own."
    )
    async def unlink_record(
        self, info: Info, record_id: strawberry.ID, comment: str | None = None
    ) -> LinkDecisionResult:
        person = await in_thread(_identity(info).unlink, str(record_id), comment)
        return LinkDecisionResult(
            action="unlink", candidate_id=None, person_id=strawberry.ID(person)
        )
