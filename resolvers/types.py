"""GraphQL types of the virtual EHR. Every fact carries its code(s) and its provenance."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

import strawberry

from graph.reader import ALL_FACTS, FactFilter
from ontology.model import Label
from resolvers.context import Info, in_thread

if TYPE_CHECKING:
    from resolvers.consent import AccessEvent
    from resolvers.drugs import MedicationReview
    from resolvers.readings import DeviceReading, ReadingSeries, TrendPoint
    from resolvers.shadow import PatientShadow

T = TypeVar("T")


# -- shared leaves -----------------------------------------------------------------------------


@strawberry.type(
    description="How a fact got a standard code from its local one: a published concept map."
)
class CodeMapping:
    map: str
    version: str | None
    method: str | None
    confidence: float | None
    equivalence: str | None


@strawberry.type(description="A code in a terminology (SNOMED CT, LOINC, RxNorm, CVX, ...).")
class Code:
    system: str
    code: str
    display: str | None
    mapped_by: CodeMapping | None = strawberry.field(
        default=None,
        description="Set when the code was derived from the fact's local code through a "
        "concept map (null: the source domain recorded this code itself).",
    )


@strawberry.type(description="Where a fact came from: the ecosystem domain and its local record.")
class Source:
    domain: str = strawberry.field(description="Name of the domain (e.g. the clinic's MIS).")
    domain_id: strawberry.ID
    domain_kind: str
    record_id: str = strawberry.field(description="The resource id in the source system.")


@strawberry.type
class Identifier:
    domain: str
    domain_id: strawberry.ID
    system: str
    value: str


@strawberry.type(description="How one comparison of a scored record pair came out.")
class MatchEvidence:
    comparison: str = strawberry.field(description="e.g. family, birth_date, national_id, rule")
    level: str = strawberry.field(description="e.g. exact, jaro_winkler>=0.92, null")


def match_evidence(value: Any) -> list[MatchEvidence]:
    """Evidence as stored (JSON text) or as a dict, sorted by comparison."""
    items = json.loads(value) if isinstance(value, str) else dict(value or {})
    return [MatchEvidence(comparison=k, level=str(v)) for k, v in sorted(items.items())]


@strawberry.type(description="How the master patient index linked a domain record to the person.")
class RecordLink:
    method: str = strawberry.field(
        description="rule | probabilistic (automatic), singleton, merge, steward"
    )
    probability: float | None
    weight: float | None
    evidence: list[MatchEvidence]
    linked_at: datetime | None
    linked_by: str | None


@strawberry.type(description="One kind of data a domain holds on the patient (registry entry).")
class DomainDataKind:
    kind: str = strawberry.field(description="Ontology class of the facts, e.g. Observation.")
    count: int
    latest: datetime | None = strawberry.field(description="Date of the newest fact.")
    updated_at: datetime | None = strawberry.field(
        description="When the domain last wrote this kind of data into medshadow."
    )


@strawberry.type(description="A domain that holds data about this patient, with its local record.")
class PatientDomain:
    id: strawberry.ID
    name: str
    kind: str
    record: strawberry.ID = strawberry.field(description="The domain record's graph id.")
    record_id: str
    mrn: str | None
    facts: int
    last_updated: datetime | None = strawberry.field(description="Date of the newest fact.")
    updated_at: datetime | None = strawberry.field(
        description="When the domain last wrote data on this record into medshadow."
    )
    kinds: list[DomainDataKind]
    link: RecordLink | None


@strawberry.enum(description="Width of one trend point; weeks start on Monday, all in UTC.")
class TrendInterval(Enum):
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    node: T
    cursor: str


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int | None = None


@strawberry.type
class ObservationComponent:
    code: Code | None
    value: float | None
    unit: str | None
    value_string: str | None


# -- facts -------------------------------------------------------------------------------------


@strawberry.interface(description="A clinical fact recorded in one domain about one patient.")
class Fact:
    id: strawberry.ID
    date: datetime | None
    status: str | None
    code: Code | None = strawberry.field(description="The primary code (first coding).")
    codes: list[Code]
    source: Source
    patient_reported: bool = strawberry.field(
        default=False, description="Entered by the patient (portal, community), not a clinician."
    )


@strawberry.type
class Condition(Fact):
    clinical_status: str | None
    verification_status: str | None
    end: datetime | None


@strawberry.type
class Observation(Fact):
    category: str | None
    value: float | None
    unit: str | None
    value_string: str | None
    components: list[ObservationComponent]


@strawberry.type
class Medication(Fact):
    intent: str | None
    dosage: str | None


@strawberry.type
class Encounter(Fact):
    encounter_class: str | None
    end: datetime | None
    reason: str | None


@strawberry.type
class Allergy(Fact):
    type: str | None
    category: list[str]
    criticality: str | None
    clinical_status: str | None


@strawberry.type
class Procedure(Fact):
    pass


@strawberry.type
class Immunization(Fact):
    pass


@strawberry.type
class DiagnosticReport(Fact):
    category: str | None


@strawberry.type
class Document(Fact):
    content_type: str | None
    text: str | None
    kind: str = strawberry.field(description="note (clinical), post or message (community).")
    community: str | None
    thread: str | None
    in_reply_to: str | None = strawberry.field(description="Id of the post this one answers.")
    author: str | None = strawberry.field(description="The author's handle in the community.")


@strawberry.type(description="A medication the patient says they take (or stopped taking).")
class MedicationStatement(Fact):
    display: str | None
    dose: str | None
    frequency: str | None
    taking: bool | None
    since: date | None
    note: str | None


@strawberry.type(description="A preference the patient stated (language, contact channel, ...).")
class Preference(Fact):
    key: str
    value: str


@strawberry.type
class Device(Fact):
    udi: str | None
    name: str | None


@strawberry.type
class CarePlan(Fact):
    activities: list[str]
    end: datetime | None


@strawberry.type(description="One entry of the patient's merged timeline across all domains.")
class TimelineEntry:
    id: strawberry.ID
    kind: str
    date: datetime
    code: Code | None
    source: Source


_FACT_TYPES: dict[Label, type[Fact]] = {
    Label.CONDITION: Condition,
    Label.OBSERVATION: Observation,
    Label.MEDICATION_REQUEST: Medication,
    Label.MEDICATION_STATEMENT: MedicationStatement,
    Label.PREFERENCE: Preference,
    Label.ENCOUNTER: Encounter,
    Label.ALLERGY_INTOLERANCE: Allergy,
    Label.PROCEDURE: Procedure,
    Label.IMMUNIZATION: Immunization,
    Label.DIAGNOSTIC_REPORT: DiagnosticReport,
    Label.DOCUMENT: Document,
    Label.DEVICE: Device,
    Label.CARE_PLAN: CarePlan,
}

_EXTRA_FIELDS: dict[Label, dict[str, str]] = {
    Label.CONDITION: {
        "clinical_status": "clinicalStatus",
        "verification_status": "verificationStatus",
        "end": "end",
    },
    Label.OBSERVATION: {
        "category": "category",
        "value": "value",
        "unit": "unit",
        "value_string": "valueString",
    },
    Label.MEDICATION_REQUEST: {"intent": "intent", "dosage": "dosage"},
    Label.ENCOUNTER: {"encounter_class": "class", "end": "end", "reason": "reason"},
    Label.ALLERGY_INTOLERANCE: {
        "type": "type",
        "criticality": "criticality",
        "clinical_status": "clinicalStatus",
    },
    Label.DIAGNOSTIC_REPORT: {"category": "category"},
    Label.DOCUMENT: {
        "content_type": "contentType",
        "text": "text",
        "community": "community",
        "thread": "thread",
        "in_reply_to": "inReplyTo",
        "author": "author",
    },
    Label.MEDICATION_STATEMENT: {
        "display": "display",
        "dose": "dose",
        "frequency": "frequency",
        "taking": "taking",
        "since": "since",
        "note": "note",
    },
    Label.PREFERENCE: {"key": "key", "value": "value"},
    Label.DEVICE: {"udi": "udi", "name": "name"},
    Label.CARE_PLAN: {"end": "end"},
}


def _codes(rows: list[dict[str, Any]]) -> list[Code]:
    """Standard codes from concept maps first (what the record means in shared terminology),
    then the domain's own codings in their order."""
    ordered = sorted(rows, key=lambda c: (c.get("map") is None, c.get("rank") or 0))
    return [
        Code(
            system=c["system"],
            code=c["code"],
            display=c.get("display"),
            mapped_by=CodeMapping(
                map=c["map"],
                version=c.get("mapVersion"),
                method=c.get("method"),
                confidence=c.get("confidence"),
                equivalence=c.get("equivalence"),
            )
            if c.get("map")
            else None,
        )
        for c in ordered
    ]


def _source(fact: dict[str, Any], domain: dict[str, Any]) -> Source:
    return Source(
        domain=domain["name"],
        domain_id=strawberry.ID(domain["uid"]),
        domain_kind=domain["kind"],
        record_id=fact["recordId"],
    )


def _dt(value: Any) -> Any:
    """neo4j temporal -> Python (the driver's types have ``to_native``)."""
    return value.to_native() if hasattr(value, "to_native") else value


def fact_from_row(label: Label, row: dict[str, Any]) -> Fact:
    fact, codes = row["fact"], _codes(row["codes"])
    kwargs: dict[str, Any] = {
        "id": strawberry.ID(fact["uid"]),
        "date": _dt(fact.get("date")),
        "status": fact.get("status") or fact.get("clinicalStatus"),
        "code": codes[0] if codes else None,
        "codes": codes,
        "source": _source(fact, row["domain"]),
        "patient_reported": bool(fact.get("patientReported")),
    }
    for attr, prop in _EXTRA_FIELDS.get(label, {}).items():
        kwargs[attr] = _dt(fact.get(prop))
    if label is Label.OBSERVATION:
        kwargs["components"] = [
            ObservationComponent(
                code=Code(**c["concept"]) if c.get("concept") else None,
                value=c.get("value"),
                unit=c.get("unit"),
                value_string=c.get("valueString"),
            )
            for c in row.get("components") or []
        ]
    elif label is Label.ALLERGY_INTOLERANCE:
        kwargs["category"] = list(fact.get("category") or [])
    elif label is Label.CARE_PLAN:
        kwargs["activities"] = list(fact.get("activities") or [])
    elif label is Label.DOCUMENT:
        kwargs["kind"] = fact.get("documentKind") or "note"
    return _FACT_TYPES[label](**kwargs)


# -- cursors -----------------------------------------------------------------------------------


def encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode()


def decode_cursor(cursor: str, parts: int) -> list[str]:
    try:
        values = base64.urlsafe_b64decode(cursor.encode()).decode().split("\x1f")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise ValueError("invalid cursor") from e
    if len(values) != parts:
        raise ValueError("invalid cursor")
    return values


def _keyset_cursor(fact: dict[str, Any]) -> str:
    date_value = _dt(fact.get("date"))
    return encode_cursor(date_value.isoformat() if date_value else "", fact["uid"])


def _after(after: str | None) -> tuple[datetime, str] | None:
    if after is None:
        return None
    iso, uid = decode_cursor(after, 2)
    return datetime.fromisoformat(iso), uid


# -- the patient -------------------------------------------------------------------------------


@strawberry.type(description="One person's virtual EHR, assembled from every domain's records.")
class Patient:
    id: strawberry.ID
    name: str | None
    family: str | None
    given: list[str]
    gender: str | None
    birth_date: date | None
    national_id: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Patient:
        return cls(
            id=strawberry.ID(row["uid"]),
            name=row.get("name"),
            family=row.get("family"),
            given=list(row.get("given") or []),
            gender=row.get("gender"),
            birth_date=_dt(row.get("birthDate")),
            national_id=row.get("nationalId"),
        )

    async def _facts(self, info: Info, label: Label, flt: FactFilter = ALL_FACTS) -> list[Fact]:
        rows = await info.context.loaders.facts(label, flt).load(str(self.id))
        return [fact_from_row(label, row) for row in rows]

    @strawberry.field(
        description="The patient's digital shadow: vitals and trends across every domain, "
        "validated scores, care gaps, data requests and alerts."
    )
    def shadow(self) -> Annotated[PatientShadow, strawberry.lazy("resolvers.shadow")]:
        from resolvers.shadow import PatientShadow

        return PatientShadow(person_id=str(self.id))

    @strawberry.field(
        description="The reconciled medication list of every domain (clinic prescriptions, "
        "portal entries), checked for interactions, duplicate therapy, polypharmacy and the "
        "patient's context (age, eGFR, pregnancy); findings ranked, most dangerous first."
    )
    async def medication_review(
        self, info: Info
    ) -> Annotated[MedicationReview, strawberry.lazy("resolvers.drugs")]:
        from resolvers.drugs import medication_review

        return await medication_review(info, str(self.id))

    @strawberry.field(
        description="Who read or changed this patient's data, newest first: the patient "
        "themself or a data steward."
    )
    async def access_log(
        self, info: Info, first: int = 50, before: int | None = None
    ) -> list[Annotated[AccessEvent, strawberry.lazy("resolvers.consent")]]:
        from resolvers.consent import access_log

        return await access_log(info, str(self.id), first, before)

    @strawberry.field(
        description="Categories the patient's consent may withhold from you (shown whether or "
        "not such data exists); empty when nothing is restricted."
    )
    async def withheld_categories(self, info: Info) -> list[str]:
        decision = await in_thread(info.context.access.guard.decision, str(self.id))
        return sorted(c.value for c in decision.restricted)

    @strawberry.field(description="Which domains hold data on this patient, with their records.")
    async def domains(self, info: Info) -> list[PatientDomain]:
        rows = await info.context.loaders.records().load(str(self.id))
        return [_patient_domain(r) for r in rows]

    @strawberry.field(description="Identifiers of this patient in every domain.")
    async def identifiers(self, info: Info) -> list[Identifier]:
        rows = await info.context.loaders.records().load(str(self.id))
        out = []
        for r in rows:
            for ident in r["record"].get("identifiers") or []:
                system, _, value = ident.partition("|")
                out.append(
                    Identifier(
                        domain=r["domain"]["name"],
                        domain_id=strawberry.ID(r["domain"]["uid"]),
                        system=system,
                        value=value,
                    )
                )
        return out

    @strawberry.field
    async def conditions(self, info: Info) -> list[Condition]:
        return await self._facts(info, Label.CONDITION)  # type: ignore[return-value]

    @strawberry.field
    async def medications(self, info: Info) -> list[Medication]:
        return await self._facts(info, Label.MEDICATION_REQUEST)  # type: ignore[return-value]

    @strawberry.field
    async def encounters(self, info: Info) -> list[Encounter]:
        return await self._facts(info, Label.ENCOUNTER)  # type: ignore[return-value]

    @strawberry.field
    async def allergies(self, info: Info) -> list[Allergy]:
        return await self._facts(info, Label.ALLERGY_INTOLERANCE)  # type: ignore[return-value]

    @strawberry.field
    async def procedures(self, info: Info) -> list[Procedure]:
        return await self._facts(info, Label.PROCEDURE)  # type: ignore[return-value]

    @strawberry.field
    async def immunizations(self, info: Info) -> list[Immunization]:
        return await self._facts(info, Label.IMMUNIZATION)  # type: ignore[return-value]

    @strawberry.field
    async def diagnostic_reports(self, info: Info) -> list[DiagnosticReport]:
        return await self._facts(info, Label.DIAGNOSTIC_REPORT)  # type: ignore[return-value]

    @strawberry.field
    async def documents(self, info: Info) -> list[Document]:
        return await self._facts(info, Label.DOCUMENT)  # type: ignore[return-value]

    @strawberry.field(description="Medications the patient reports taking or having stopped.")
    async def medication_statements(self, info: Info) -> list[MedicationStatement]:
        return await self._facts(info, Label.MEDICATION_STATEMENT)  # type: ignore[return-value]

    @strawberry.field(description="Preferences the patient stated in a portal.")
    async def preferences(self, info: Info) -> list[Preference]:
        return await self._facts(info, Label.PREFERENCE)  # type: ignore[return-value]

    @strawberry.field
    async def devices(self, info: Info) -> list[Device]:
        return await self._facts(info, Label.DEVICE)  # type: ignore[return-value]

    @strawberry.field
    async def care_plans(self, info: Info) -> list[CarePlan]:
        return await self._facts(info, Label.CARE_PLAN)  # type: ignore[return-value]

    @strawberry.field(description="Observations, newest first; `code` matches panel components.")
    async def observations(
        self,
        info: Info,
        code: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        first: Annotated[int, strawberry.argument(description="page size, 1-500")] = 100,
        after: str | None = None,
    ) -> Connection[Observation]:
        first = _page_size(first)
        after_key = _after(after)
        flt = FactFilter(
            code=code,
            since=since,
            until=until,
            first=first + 1,
            after_date=after_key[0] if after_key else None,
            after_uid=after_key[1] if after_key else None,
        )
        rows = await info.context.loaders.facts(Label.OBSERVATION, flt).load(str(self.id))
        page = rows[:first]
        edges: list[Edge[Observation]] = [
            Edge(
                node=fact_from_row(Label.OBSERVATION, r),  # type: ignore[arg-type]
                cursor=_keyset_cursor(r["fact"]),
            )
            for r in page
        ]
        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )

    @strawberry.field(description="Every dated fact from every domain, newest first.")
    async def timeline(
        self,
        info: Info,
        since: datetime | None = None,
        until: datetime | None = None,
        first: int = 100,
        after: str | None = None,
    ) -> Connection[TimelineEntry]:
        first = _page_size(first)
        after_key = _after(after)
        access = info.context.access

        def fetch(uids: list[str]) -> list[Any]:
            grouped: dict[str, list[dict[str, Any]]] = {uid: [] for uid in uids}
            rows = access.timeline(uids, since=since, until=until, first=first + 1, after=after_key)
            for row in rows:
                grouped[row["uid"]].append(row)
            return [grouped[uid] for uid in uids]

        key = (since, until, first, after)
        rows = await info.context.loaders.timeline(key, fetch).load(str(self.id))
        edges = []
        for r in rows[:first]:
            codes = _codes(r["codes"])
            kind = next((lbl for lbl in r["labels"] if lbl in Label.__members__.values()), "Fact")
            edges.append(
                Edge(
                    node=TimelineEntry(
                        id=strawberry.ID(r["fact"]["uid"]),
                        kind=str(kind),
                        date=_dt(r["fact"]["date"]),
                        code=codes[0] if codes else None,
                        source=_source(r["fact"], r["domain"]),
                    ),
                    cursor=_keyset_cursor(r["fact"]),
                )
            )
        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
        )

    @strawberry.field(description="Device reading series (wearables, home monitors) per metric.")
    async def reading_series(
        self, info: Info, metric: str | None = None
    ) -> list[Annotated[ReadingSeries, strawberry.lazy("resolvers.readings")]]:
        from resolvers import readings

        return await readings.reading_series(info, str(self.id), metric)

    @strawberry.field(
        description="A metric's readings aggregated per hour, day or week (UTC), from every "
        "device; periods without readings are left out."
    )
    async def reading_trend(
        self,
        info: Info,
        metric: str,
        since: datetime,
        every: TrendInterval,
        until: datetime | None = None,
    ) -> list[Annotated[TrendPoint, strawberry.lazy("resolvers.readings")]]:
        from resolvers import readings

        return await readings.reading_trend(info, str(self.id), metric, since, until, every)

    @strawberry.field(description="A metric's raw readings in [since, until), oldest first.")
    async def readings(
        self,
        info: Info,
        metric: str,
        since: datetime,
        until: datetime | None = None,
        first: Annotated[int, strawberry.argument(description="page size, 1-5000")] = 1000,
        after: str | None = None,
    ) -> Connection[Annotated[DeviceReading, strawberry.lazy("resolvers.readings")]]:
        from resolvers import readings

        return await readings.readings_window(
            info, str(self.id), metric, since, until, first, after
        )


def _patient_domain(r: dict[str, Any]) -> PatientDomain:
    record, link = r["record"], r.get("link")
    kinds, times = record.get("updatedKinds") or [], record.get("updatedTimes") or []
    updated = dict(zip(kinds, times, strict=False))
    return PatientDomain(
        id=strawberry.ID(r["domain"]["uid"]),
        name=r["domain"]["name"],
        kind=r["domain"]["kind"],
        record=strawberry.ID(record["uid"]),
        record_id=record["recordId"],
        mrn=record.get("mrn"),
        facts=r["facts"],
        last_updated=_dt(r["lastDate"]),
        updated_at=_dt(record.get("updatedAt")),
        kinds=[
            DomainDataKind(
                kind=k["kind"],
                count=k["count"],
                latest=_dt(k["lastDate"]),
                updated_at=_dt(updated.get(k["kind"])),
            )
            for k in sorted(r.get("kinds") or [], key=lambda k: k["kind"])
        ],
        link=RecordLink(
            method=link.get("method", "unknown"),
            probability=link.get("probability"),
            weight=link.get("weight"),
            evidence=match_evidence(link.get("evidence")),
            linked_at=_dt(link.get("linkedAt")),
            linked_by=link.get("linkedBy"),
        )
        if link
        else None,
    )


def _page_size(first: int) -> int:
    if not 1 <= first <= 500:
        raise ValueError("first must be between 1 and 500")
    return first


@strawberry.type(description="No patient with that id is visible to you.")
class PatientNotFound:
    id: strawberry.ID
    message: str = "patient not found"


@strawberry.type(description="The request's principal may not perform this operation.")
class AccessDenied:
    message: str


@strawberry.type(
    description="This person id was merged into another by the master patient index; "
    "ask for `mergedInto`."
)
class PatientMerged:
    id: strawberry.ID
    merged_into: strawberry.ID
    message: str = "patient merged into another person"


PatientResult = Annotated[
    Patient | PatientMerged | PatientNotFound | AccessDenied, strawberry.union("PatientResult")
]


async def load_person(info: Info, uid: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = await info.context.loaders.persons().load(uid)
    return row
