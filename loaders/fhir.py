"""FHIR R4 parser: transaction/collection bundles and bulk NDJSON -> typed graph batches.

Phase one of a load. Nothing here touches Neo4j: :func:`parse_paths` yields one
:class:`ParsedUnit` per bundle (or per NDJSON folder, whose files share one reference
namespace), each holding a :class:`~ontology.records.GraphBatch`, the resources it skipped and
the ones it quarantined with the reason and location. Good resources of a unit load even when
some of its resources are bad.

Which domain a unit belongs to: the ``domain`` argument when given; otherwise, for a bundle, the
organisation that provided all of its encounters (a split per-clinic record); otherwise the name
of the folder the files sit in. Every fact carries ``sourceDomain`` and ``sourceRecordId``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from loaders.errors import LoaderError
from ontology.model import DomainKind, Label, RelType
from ontology.records import GraphBatch

Resource = dict[str, Any]

SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
MRN_TYPE = "MR"

#: Financial resources: skipped unless asked for, and counted as skipped.
CLAIM_TYPES = frozenset({"Claim", "ExplanationOfBenefit"})
#: Valid FHIR resources the graph does not model (yet): skipped and counted, never quarantined.
UNMODELLED_TYPES = frozenset(
    {
        "MedicationAdministration",
        "ImagingStudy",
        "CareTeam",
        "SupplyDelivery",
        "Coverage",
        "Location",
        "Provenance",
        "Goal",
        "Medication",
        "MedicationDispense",
        "Media",
        "Questionnaire",
        "QuestionnaireResponse",
        "ServiceRequest",
        "Specimen",
        "Composition",
        "Group",
    }
)


class QuarantineReason(LoaderError):
    """Why one resource cannot load; caught per resource, never escapes the parser."""


@dataclass(frozen=True, slots=True)
class Quarantined:
    location: str
    resource_type: str | None
    resource_id: str | None
    reason: str
    resource: Any


@dataclass(slots=True)
class ParsedUnit:
    source: str
    domain: str
    batch: GraphBatch = field(default_factory=GraphBatch)
    parsed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    quarantined: list[Quarantined] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Entry:
    location: str
    resource: Resource


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def discover(paths: Sequence[Path]) -> list[list[Path]]:
    """Group input paths into load units: each JSON bundle alone, NDJSON files per folder."""
    units: list[list[Path]] = []
    ndjson_by_dir: dict[Path, list[Path]] = {}
    for root in paths:
        if not root.exists():
            raise LoaderError(f"{root}: no such file or directory")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if path.suffix == ".ndjson":
                ndjson_by_dir.setdefault(path.parent, []).append(path)
            elif path.suffix == ".json" and not _is_bookkeeping(path):
                units.append([path])
    units.extend(ndjson_by_dir[d] for d in sorted(ndjson_by_dir))
    return units


def _is_bookkeeping(path: Path) -> bool:
    """The generator's manifest and ground-truth files sit beside the bundles; not FHIR."""
    return path.name == "manifest.json" or path.name.startswith("ground_truth")


def parse_paths(
    paths: Sequence[Path], *, domain: str | None = None, include_claims: bool = False
) -> Iterator[ParsedUnit]:
    """Parse every load unit under ``paths`` (files or folders), one unit at a time."""
    for unit in discover(paths):
        yield parse_unit(unit, domain=domain, include_claims=include_claims)


def parse_unit(
    files: Sequence[Path], *, domain: str | None = None, include_claims: bool = False
) -> ParsedUnit:
    entries: list[_Entry] = []
    bad: list[Quarantined] = []
    for path in files:
        if path.suffix == ".ndjson":
            _read_ndjson(path, entries, bad)
        else:
            _read_bundle(path, entries, bad)
    source = str(files[0]) if len(files) == 1 else str(files[0].parent)
    unit_domain = domain or _bundle_domain(entries) or _folder_domain(files[0])
    unit = ParsedUnit(source=source, domain=unit_domain)
    unit.quarantined.extend(bad)
    _Builder(unit, entries, include_claims=include_claims).build()
    return unit


def _read_bundle(path: Path, entries: list[_Entry], bad: list[Quarantined]) -> None:
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        bad.append(Quarantined(str(path), None, None, f"malformed JSON: {e}", None))
        return
    if not isinstance(doc, dict):
        bad.append(Quarantined(str(path), None, None, "not a JSON object", None))
        return
    if doc.get("resourceType") != "Bundle":
        entries.append(_Entry(str(path), doc))  # a single resource file
        return
    for i, entry in enumerate(doc.get("entry") or []):
        where = f"{path}#entry[{i}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            bad.append(Quarantined(where, None, None, "bundle entry without a resource", entry))
            continue
        if "fullUrl" in entry:
            resource.setdefault("_fullUrl", entry["fullUrl"])
        entries.append(_Entry(where, resource))


def _read_ndjson(path: Path, entries: list[_Entry], bad: list[Quarantined]) -> None:
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                bad.append(Quarantined(where, None, None, f"malformed JSON: {e}", line.decode()))
                continue
            if not isinstance(resource, dict):
                bad.append(Quarantined(where, None, None, "not a JSON object", resource))
                continue
            entries.append(_Entry(where, resource))


def _bundle_domain(entries: list[_Entry]) -> str | None:
    orgs = {
        _ref_id(_get(e.resource, "serviceProvider", "reference"))
        for e in entries
        if e.resource.get("resourceType") == "Encounter"
    }
    if len(orgs) != 1 or None in orgs:
        return None
    (org_ref,) = orgs
    for e in entries:
        r = e.resource
        if r.get("resourceType") == "Organization" and org_ref in {r.get("id"), _full_id(r)}:
            return domain_uid(_org_key(r))
    return None


def _folder_domain(path: Path) -> str:
    return domain_uid(re.sub(r"[^A-Za-z0-9_.-]+", "-", path.parent.name) or "default")


def domain_uid(org_key: str) -> str:
    return f"mis:{org_key}"


# ---------------------------------------------------------------------------------------------
# Building the graph batch
# ---------------------------------------------------------------------------------------------


class _Builder:
    def __init__(self, unit: ParsedUnit, entries: list[_Entry], *, include_claims: bool) -> None:
        self.unit = unit
        self.entries = entries
        self.include_claims = include_claims
        self.batch = unit.batch
        self.domain = unit.domain
        # reference string -> (resourceType, id) for every resource of the unit
        self.refs: dict[str, tuple[str, str]] = {}
        self.org_keys: dict[str, str] = {}
        self.practitioner_keys: dict[str, str] = {}

    # -- setup ---------------------------------------------------------------------------
    def build(self) -> None:
        for e in self.entries:
            rtype, rid = e.resource.get("resourceType"), e.resource.get("id")
            if isinstance(rtype, str) and isinstance(rid, str):
                self.refs[f"{rtype}/{rid}"] = (rtype, rid)
                self.refs[f"urn:uuid:{rid}"] = (rtype, rid)
                full = e.resource.get("_fullUrl")
                if isinstance(full, str):
                    self.refs[full] = (rtype, rid)
                if rtype == "Organization":
                    self.org_keys[rid] = _org_key(e.resource)
                elif rtype == "Practitioner":
                    self.practitioner_keys[rid] = _practitioner_key(e.resource)
        self._domain_node()
        # Patients and organisations first: facts point at them.
        order = {"Organization": 0, "Practitioner": 1, "Patient": 2, "Encounter": 3}
        for e in sorted(
            self.entries, key=lambda e: order.get(str(e.resource.get("resourceType")), 9)
        ):
            self._one(e)

    def _domain_node(self) -> None:
        org_key = self.domain.removeprefix("mis:")
        org = next(
            (
                e.resource
                for e in self.entries
                if e.resource.get("resourceType") == "Organization"
                and _org_key(e.resource) == org_key
            ),
            None,
        )
        name = org.get("name") if org else org_key
        self.batch.node(Label.DOMAIN, self.domain, {"name": name, "kind": DomainKind.MIS.value})
        if org is not None:
            self.batch.rel(
                RelType.OPERATED_BY, (Label.DOMAIN, self.domain), (Label.ORGANIZATION, org_key)
            )

    def _one(self, e: _Entry) -> None:
        r = e.resource
        rtype = r.get("resourceType")
        try:
            if not isinstance(rtype, str) or not rtype:
                raise QuarantineReason("missing required field 'resourceType'")
            if rtype in CLAIM_TYPES and not self.include_claims:
                self.unit.skipped[f"{rtype} (claims skipped by default)"] += 1
                return
            if rtype in UNMODELLED_TYPES or rtype in CLAIM_TYPES:
                self.unit.skipped[f"{rtype} (not modelled)"] += 1
                return
            handler = _HANDLERS.get(rtype)
            if handler is None:
                raise QuarantineReason(f"unknown or unsupported resourceType {rtype!r}")
            if not isinstance(r.get("id"), str) or not r["id"]:
                raise QuarantineReason("missing required field 'id'")
            # Build into a scratch batch so a resource failing half-way leaves nothing behind.
            scratch = GraphBatch()
            real, self.batch = self.batch, scratch
            try:
                handler(self, r)
            finally:
                self.batch = real
            self.batch.extend(scratch)
            self.unit.parsed[rtype] += 1
        except QuarantineReason as why:
            self.unit.quarantined.append(
                Quarantined(
                    e.location,
                    rtype if isinstance(rtype, str) else None,
                    r.get("id") if isinstance(r.get("id"), str) else None,
                    str(why),
                    r,
                )
            )

    # -- references ----------------------------------------------------------------------
    def resolve(self, ref: object, *expected: str, field_name: str) -> str:
        """The id of the referenced resource, which must be in this unit and of a known type."""
        if not isinstance(ref, str) or not ref:
            raise QuarantineReason(f"missing required reference '{field_name}'")
        hit = self.refs.get(ref)
        if hit is None:
            raise QuarantineReason(f"broken reference {field_name}={ref!r}: not in this load unit")
        if expected and hit[0] not in expected:
            raise QuarantineReason(
                f"reference {field_name}={ref!r} points at a {hit[0]}, "
                f"expected {'/'.join(expected)}"
            )
        return hit[1]

    def uid(self, rtype: str, rid: str) -> str:
        return f"{self.domain}/{rtype}/{rid}"

    def patient_uid(self, r: Resource, *fields: str) -> str:
        for name in fields:
            ref = _get(r, name, "reference")
            if ref is not None:
                return self.uid("Patient", self.resolve(ref, "Patient", field_name=name))
        raise QuarantineReason(f"missing required reference '{fields[0]}'")

    # -- shared fact plumbing ------------------------------------------------------------
    def fact(
        self,
        label: Label,
        r: Resource,
        props: Mapping[str, Any],
        *,
        patient_fields: tuple[str, ...] = ("subject", "patient"),
        codes: Iterable[Mapping[str, Any]] = (),
        encounter_field: str | None = "encounter",
    ) -> str:
        uid = self.uid(r["resourceType"], r["id"])
        patient = self.patient_uid(r, *patient_fields)
        base = {"recordId": r["id"], "sourceDomain": self.domain, "resourceType": r["resourceType"]}
        self.batch.node(label, uid, {**base, **props})
        self.batch.rel(RelType.ABOUT, (label, uid), (Label.PATIENT, patient))
        self.code_links(label, uid, codes)
        if encounter_field:
            ref = _get(r, encounter_field, "reference")
            if ref is not None:
                enc = self.resolve(ref, "Encounter", field_name=encounter_field)
                self.batch.rel(
                    RelType.DURING, (label, uid), (Label.ENCOUNTER, self.uid("Encounter", enc))
                )
        return uid

    def code_links(self, label: Label, uid: str, codings: Iterable[Mapping[str, Any]]) -> None:
        for rank, coding in enumerate(codings):
            concept = self.concept(coding)
            if concept:
                self.batch.rel(
                    RelType.CODED_AS, (label, uid), (Label.CONCEPT, concept), {"rank": rank}
                )

    def concept(self, coding: Mapping[str, Any]) -> str | None:
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(code, str) or not code:
            return None
        system = system if isinstance(system, str) and system else "urn:medshadow:unknown-system"
        uid = concept_uid(system, code)
        self.batch.node(
            Label.CONCEPT, uid, {"system": system, "code": code, "display": coding.get("display")}
        )
        return uid


def concept_uid(system: str, code: str) -> str:
    return f"{system}|{code}"


# ---------------------------------------------------------------------------------------------
# One handler per resource type
# ---------------------------------------------------------------------------------------------


def _organization(b: _Builder, r: Resource) -> None:
    addr = _first(r.get("address"))
    b.batch.node(
        Label.ORGANIZATION,
        _org_key(r),
        {
            "name": r.get("name"),
            "recordId": r["id"],
            "city": addr.get("city"),
            "state": addr.get("state"),
        },
    )


def _practitioner(b: _Builder, r: Resource) -> None:
    b.batch.node(
        Label.PRACTITIONER,
        _practitioner_key(r),
        {"name": _human_name(r), "recordId": r["id"], "npi": _identifier(r, NPI_SYSTEM)},
    )


def _practitioner_role(b: _Builder, r: Resource) -> None:
    prac = b.resolve(
        _get(r, "practitioner", "reference"), "Practitioner", field_name="practitioner"
    )
    org = b.resolve(_get(r, "organization", "reference"), "Organization", field_name="organization")
    specialty = _first(r.get("specialty"))
    b.batch.rel(
        RelType.WORKS_FOR,
        (Label.PRACTITIONER, b.practitioner_keys[prac]),
        (Label.ORGANIZATION, b.org_keys[org]),
        {"specialty": specialty.get("text")},
    )


def _patient(b: _Builder, r: Resource) -> None:
    birth = _parse_date(r.get("birthDate"), "birthDate")
    if birth is None:
        raise QuarantineReason("missing required field 'birthDate'")
    uid = b.uid("Patient", r["id"])
    mrn = next(
        (
            i.get("value")
            for i in r.get("identifier") or []
            if any(c.get("code") == MRN_TYPE for c in _get(i, "type", "coding") or [])
        ),
        None,
    )
    props = {
        "recordId": r["id"],
        "sourceDomain": b.domain,
        **patient_demographics(r),
        "birthDate": birth,
        "deceased": _parse_datetime(r.get("deceasedDateTime"), "deceasedDateTime"),
        "mrn": mrn,
        "identifiers": [
            f"{i.get('system', '')}|{i.get('value', '')}"
            for i in r.get("identifier") or []
            if i.get("value")
        ],
    }
    # No Person here: the master patient index links records to persons after the load.
    b.batch.node(Label.PATIENT, uid, props)
    b.batch.rel(RelType.IN_DOMAIN, (Label.PATIENT, uid), (Label.DOMAIN, b.domain))


def patient_demographics(r: Resource) -> dict[str, Any]:
    """The demographic properties record linkage compares, from a FHIR Patient as entered.

    The current name is the first one not marked ``maiden``/``old``; family names of those
    are kept as ``otherFamily`` (a maiden name links a married woman's records).
    """
    names = [n for n in r.get("name") or [] if isinstance(n, dict)]
    current = next((n for n in names if n.get("use") not in ("maiden", "old")), _first(names))
    others = [
        n["family"]
        for n in names
        if n is not current and isinstance(n.get("family"), str) and n["family"]
    ]
    addr = _first(r.get("address"))
    telecom = [t for t in r.get("telecom") or [] if isinstance(t, dict)]
    return {
        "name": _human_name({"name": [current]}),
        "family": current.get("family"),
        "given": list(current.get("given") or []),
        "otherFamily": others,
        "gender": r.get("gender"),
        "birthDate": r.get("birthDate"),
        "nationalId": _identifier(r, SSN_SYSTEM),
        "addressLine": next(iter(addr.get("line") or []), None),
        "postalCode": addr.get("postalCode"),
        "city": addr.get("city"),
        "state": addr.get("state"),
        "phone": next((t.get("value") for t in telecom if t.get("system") == "phone"), None),
        "email": next((t.get("value") for t in telecom if t.get("system") == "email"), None),
    }


def _encounter(b: _Builder, r: Resource) -> None:
    period = r.get("period") or {}
    uid = b.fact(
        Label.ENCOUNTER,
        r,
        {
            "status": r.get("status"),
            "class": _get(r, "class", "code"),
            "date": _required_datetime(period.get("start"), "period.start"),
            "end": _parse_datetime(period.get("end"), "period.end"),
            "reason": ", ".join(_texts(r.get("reasonCode"))) or None,
        },
        codes=_codings_of(r.get("type")),
        encounter_field=None,
    )
    provider = _get(r, "serviceProvider", "reference")
    if provider is not None:
        org = b.resolve(provider, "Organization", field_name="serviceProvider")
        b.batch.rel(
            RelType.SERVICE_PROVIDER, (Label.ENCOUNTER, uid), (Label.ORGANIZATION, b.org_keys[org])
        )
    for i, part in enumerate(r.get("participant") or []):
        ref = _get(part, "individual", "reference")
        if ref is not None:
            prac = b.resolve(ref, "Practitioner", field_name=f"participant[{i}].individual")
            b.batch.rel(
                RelType.PERFORMED_BY,
                (Label.ENCOUNTER, uid),
                (Label.PRACTITIONER, b.practitioner_keys[prac]),
            )


def _condition(b: _Builder, r: Resource) -> None:
    b.fact(
        Label.CONDITION,
        r,
        {
            "clinicalStatus": _status(r, "clinicalStatus"),
            "verificationStatus": _status(r, "verificationStatus"),
            "category": _first_code(r.get("category")),
            "date": _parse_datetime(
                r.get("onsetDateTime") or r.get("recordedDate"), "onsetDateTime"
            ),
            "end": _parse_datetime(r.get("abatementDateTime"), "abatementDateTime"),
        },
        codes=_required_codings(r, "code"),
    )


def _observation(b: _Builder, r: Resource) -> None:
    date_ = _parse_datetime(r.get("effectiveDateTime") or r.get("issued"), "effectiveDateTime")
    common = {"status": r.get("status"), "category": _first_code(r.get("category")), "date": date_}
    uid = b.fact(Label.OBSERVATION, r, {**common, **_value(r)}, codes=_required_codings(r, "code"))
    patient = b.patient_uid(r, "subject", "patient")
    for i, comp in enumerate(r.get("component") or []):
        cuid = f"{uid}#{i}"
        props = {
            "recordId": f"{r['id']}#component[{i}]",
            "sourceDomain": b.domain,
            "resourceType": "Observation",
            "isComponent": True,
            **common,
            **_value(comp),
        }
        b.batch.node(Label.OBSERVATION, cuid, props)
        b.batch.rel(RelType.HAS_COMPONENT, (Label.OBSERVATION, uid), (Label.OBSERVATION, cuid))
        b.batch.rel(RelType.ABOUT, (Label.OBSERVATION, cuid), (Label.PATIENT, patient))
        b.code_links(Label.OBSERVATION, cuid, _required_codings(comp, "code"))


def _medication_request(b: _Builder, r: Resource) -> None:
    if "medicationCodeableConcept" in r:
        codings = _required_codings(r, "medicationCodeableConcept")
    elif "medicationReference" in r:
        # Synthea writes a contained-style Medication resource we do not model: keep the display.
        codings = []
    else:
        raise QuarantineReason("missing required field 'medication[x]'")
    dosage = _first(r.get("dosageInstruction"))
    b.fact(
        Label.MEDICATION_REQUEST,
        r,
        {
            "status": r.get("status"),
            "intent": r.get("intent"),
            "date": _parse_datetime(r.get("authoredOn"), "authoredOn"),
            "dosage": dosage.get("text"),
            "display": _get(r, "medicationReference", "display"),
        },
        codes=codings,
    )


def _allergy(b: _Builder, r: Resource) -> None:
    b.fact(
        Label.ALLERGY_INTOLERANCE,
        r,
        {
            "clinicalStatus": _status(r, "clinicalStatus"),
            "verificationStatus": _status(r, "verificationStatus"),
            "type": r.get("type"),
            "category": list(r.get("category") or []),
            "criticality": r.get("criticality"),
            "date": _parse_datetime(
                r.get("recordedDate") or r.get("onsetDateTime"), "recordedDate"
            ),
        },
        codes=_required_codings(r, "code"),
    )


def _procedure(b: _Builder, r: Resource) -> None:
    performed = r.get("performedDateTime") or _get(r, "performedPeriod", "start")
    b.fact(
        Label.PROCEDURE,
        r,
        {"status": r.get("status"), "date": _parse_datetime(performed, "performed[x]")},
        codes=_required_codings(r, "code"),
    )


def _immunization(b: _Builder, r: Resource) -> None:
    b.fact(
        Label.IMMUNIZATION,
        r,
        {
            "status": r.get("status"),
            "date": _parse_datetime(r.get("occurrenceDateTime"), "occurrenceDateTime"),
        },
        codes=_required_codings(r, "vaccineCode"),
    )


def _diagnostic_report(b: _Builder, r: Resource) -> None:
    uid = b.fact(
        Label.DIAGNOSTIC_REPORT,
        r,
        {
            "status": r.get("status"),
            "category": _first_code(r.get("category")),
            "date": _parse_datetime(r.get("effectiveDateTime") or r.get("issued"), "effective"),
        },
        codes=_required_codings(r, "code"),
    )
    for i, res in enumerate(r.get("result") or []):
        obs = b.resolve(res.get("reference"), "Observation", field_name=f"result[{i}]")
        b.batch.rel(
            RelType.HAS_RESULT,
            (Label.DIAGNOSTIC_REPORT, uid),
            (Label.OBSERVATION, b.uid("Observation", obs)),
        )


def _document(b: _Builder, r: Resource) -> None:
    attachment = _get(_first(r.get("content")), "attachment") or {}
    text = None
    if "data" in attachment:
        try:
            text = base64.b64decode(attachment["data"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise QuarantineReason(
                f"content[0].attachment.data is not base64 UTF-8 text: {e}"
            ) from e
    b.fact(
        Label.DOCUMENT,
        r,
        {
            "status": r.get("status"),
            "date": _parse_datetime(r.get("date"), "date"),
            "contentType": attachment.get("contentType"),
            "url": attachment.get("url"),
            "text": text,
            "category": _first_code(r.get("category")),
        },
        codes=_codings_of(r.get("type")),
        encounter_field=None,
    )
    enc = _get(r, "context", "encounter")
    for i, ref in enumerate(enc or []):
        eid = b.resolve(ref.get("reference"), "Encounter", field_name=f"context.encounter[{i}]")
        b.batch.rel(
            RelType.DURING,
            (Label.DOCUMENT, b.uid("DocumentReference", r["id"])),
            (Label.ENCOUNTER, b.uid("Encounter", eid)),
        )


def _device(b: _Builder, r: Resource) -> None:
    udi = _first(r.get("udiCarrier"))
    b.fact(
        Label.DEVICE,
        r,
        {
            "status": r.get("status"),
            "udi": udi.get("deviceIdentifier"),
            "date": _parse_datetime(r.get("manufactureDate"), "manufactureDate"),
            "name": _get(_first(r.get("deviceName")), "name"),
        },
        codes=_codings_of(r.get("type")),
        encounter_field=None,
    )


def _care_plan(b: _Builder, r: Resource) -> None:
    period = r.get("period") or {}
    categories = [c for cat in r.get("category") or [] for c in cat.get("coding") or []]
    activities = [
        _get(a, "detail", "code", "coding", 0, "display") for a in r.get("activity") or []
    ]
    b.fact(
        Label.CARE_PLAN,
        r,
        {
            "status": r.get("status"),
            "intent": r.get("intent"),
            "date": _parse_datetime(period.get("start"), "period.start"),
            "end": _parse_datetime(period.get("end"), "period.end"),
            "activities": [a for a in activities if isinstance(a, str)],
        },
        # The US Core "assess-plan" category says nothing clinical; the SNOMED one does.
        codes=[c for c in categories if c.get("system") == "http://snomed.info/sct"],
    )


_HANDLERS: dict[str, Callable[[_Builder, Resource], None]] = {
    "Organization": _organization,
    "Practitioner": _practitioner,
    "PractitionerRole": _practitioner_role,
    "Patient": _patient,
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "MedicationRequest": _medication_request,
    "AllergyIntolerance": _allergy,
    "Procedure": _procedure,
    "Immunization": _immunization,
    "DiagnosticReport": _diagnostic_report,
    "DocumentReference": _document,
    "Device": _device,
    "CarePlan": _care_plan,
}

SUPPORTED_TYPES = frozenset(_HANDLERS)


# ---------------------------------------------------------------------------------------------
# Small field helpers
# ---------------------------------------------------------------------------------------------


def _get(obj: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or len(obj) <= step:
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[step] if isinstance(step, int) else obj.get(step)
    return obj


def _first(items: Any) -> dict[str, Any]:
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0]
    return {}


def _ref_id(ref: Any) -> str | None:
    if not isinstance(ref, str):
        return None
    return ref.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def _full_id(r: Resource) -> str | None:
    return _ref_id(r.get("_fullUrl"))


def _org_key(r: Resource) -> str:
    ident = _first(r.get("identifier")).get("value")
    return str(ident or r.get("id"))


def _practitioner_key(r: Resource) -> str:
    return str(_identifier(r, NPI_SYSTEM) or r.get("id"))


def _identifier(r: Resource, system: str) -> str | None:
    for ident in r.get("identifier") or []:
        if ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return None


def _human_name(r: Resource) -> str | None:
    name = _first(r.get("name"))
    if name.get("text"):
        return str(name["text"])
    parts = [*(name.get("given") or []), name.get("family")]
    joined = " ".join(p for p in parts if isinstance(p, str) and p)
    return joined or None


def _codings_of(concepts: Any) -> list[dict[str, Any]]:
    if isinstance(concepts, dict):
        concepts = [concepts]
    return [c for concept in concepts or [] for c in (concept.get("coding") or [])]


def _required_codings(r: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    codings = _codings_of(r.get(name))
    if not any(isinstance(c.get("code"), str) and c["code"] for c in codings):
        raise QuarantineReason(f"missing required field '{name}' (no coding with a code)")
    return codings


def _first_code(concepts: Any) -> str | None:
    codings = _codings_of(concepts)
    return codings[0].get("code") if codings else None


def _status(r: Resource, name: str) -> str | None:
    return _first_code(r.get(name))


def _texts(concepts: Any) -> list[str]:
    out = []
    for c in concepts or []:
        text = c.get("text") or _get(c, "coding", 0, "display")
        if isinstance(text, str):
            out.append(text)
    return out


def _value(r: Mapping[str, Any]) -> dict[str, Any]:
    if "valueQuantity" in r:
        q = r["valueQuantity"] or {}
        value = q.get("value")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise QuarantineReason("valueQuantity.value is not a number")
        return {"value": float(value), "unit": q.get("code") or q.get("unit")}
    if "valueCodeableConcept" in r:
        coding = _first(_get(r, "valueCodeableConcept", "coding"))
        return {
            "valueString": coding.get("display") or _get(r, "valueCodeableConcept", "text"),
            "valueCode": coding.get("code"),
        }
    for key in ("valueString", "valueBoolean", "valueInteger"):
        if key in r:
            return {"valueString": str(r[key])}
    return {}


def _parse_datetime(value: Any, field_name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise QuarantineReason(f"{field_name} is not a date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise QuarantineReason(f"{field_name}={value!r} is not an ISO date-time") from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.now().astimezone().tzinfo)
    return parsed


def _required_datetime(value: Any, field_name: str) -> datetime:
    parsed = _parse_datetime(value, field_name)
    if parsed is None:
        raise QuarantineReason(f"missing required field '{field_name}'")
    return parsed


def _parse_date(value: Any, field_name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as e:
        raise QuarantineReason(f"{field_name}={value!r} is not an ISO date") from e
