"""The research bank's two output formats, written from de-identified persons.

* **OMOP CDM v5.4** CSV tables (``person``, ``observation_period``, ``visit_occurrence``,
  ``condition_occurrence``, ``drug_exposure``, ``procedure_occurrence``, ``measurement``,
  ``observation``), columns in CDM order. No OMOP vocabulary (Athena) ships offline, so
  ``*_concept_id`` is 0 and ``*_source_value`` carries ``<system>|<code>``; the standard ids
  used are gender 8507/8532 and type concept 32817 ("EHR").
* **FHIR bulk data** NDJSON, one file per resource type, and the bulk-export manifest.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

EHR = 32817
GENDER_CONCEPT = {"male": 8507, "female": 8532}

OMOP_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "person": (
        "person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "day_of_birth",
        "birth_datetime", "race_concept_id", "ethnicity_concept_id", "location_id",
        "provider_id", "care_site_id", "person_source_value", "gender_source_value",
        "gender_source_concept_id", "race_source_value", "race_source_concept_id",
        "ethnicity_source_value", "ethnicity_source_concept_id",
    ),
    "observation_period": (
        "observation_period_id", "person_id", "observation_period_start_date",
        "observation_period_end_date", "period_type_concept_id",
    ),
    "visit_occurrence": (
        "visit_occurrence_id", "person_id", "visit_concept_id", "visit_start_date",
        "visit_start_datetime", "visit_end_date", "visit_end_datetime", "visit_type_concept_id",
        "provider_id", "care_site_id", "visit_source_value", "visit_source_concept_id",
        "admitted_from_concept_id", "admitted_from_source_value", "discharged_to_concept_id",
        "discharged_to_source_value", "preceding_visit_occurrence_id",
    ),
    "condition_occurrence": (
        "condition_occurrence_id", "person_id", "condition_concept_id", "condition_start_date",
        "condition_start_datetime", "condition_end_date", "condition_end_datetime",
        "condition_type_concept_id", "condition_status_concept_id", "stop_reason",
        "provider_id", "visit_occurrence_id", "visit_detail_id", "condition_source_value",
        "condition_source_concept_id", "condition_status_source_value",
    ),
    "drug_exposure": (
        "drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date",
        "drug_exposure_start_datetime", "drug_exposure_end_date", "drug_exposure_end_datetime",
        "verbatim_end_date", "drug_type_concept_id", "stop_reason", "refills", "quantity",
        "days_supply", "sig", "route_concept_id", "lot_number", "provider_id",
        "visit_occurrence_id", "visit_detail_id", "drug_source_value", "drug_source_concept_id",
        "route_source_value", "dose_unit_source_value",
    ),
    "procedure_occurrence": (
        "procedure_occurrence_id", "person_id", "procedure_concept_id", "procedure_date",
        "procedure_datetime", "procedure_end_date", "procedure_end_datetime",
        "procedure_type_concept_id", "modifier_concept_id", "quantity", "provider_id",
        "visit_occurrence_id", "visit_detail_id", "procedure_source_value",
        "procedure_source_concept_id", "modifier_source_value",
    ),
    "measurement": (
        "measurement_id", "person_id", "measurement_concept_id", "measurement_date",
        "measurement_datetime", "measurement_time", "measurement_type_concept_id",
        "operator_concept_id", "value_as_number", "value_as_concept_id", "unit_concept_id",
        "range_low", "range_high", "provider_id", "visit_occurrence_id", "visit_detail_id",
        "measurement_source_value", "measurement_source_concept_id", "unit_source_value",
        "unit_source_concept_id", "value_source_value", "measurement_event_id",
        "meas_event_field_concept_id",
    ),
    "observation": (
        "observation_id", "person_id", "observation_concept_id", "observation_date",
        "observation_datetime", "observation_type_concept_id", "value_as_number",
        "value_as_string", "value_as_concept_id", "qualifier_concept_id", "unit_concept_id",
        "provider_id", "visit_occurrence_id", "visit_detail_id", "observation_source_value",
        "observation_source_concept_id", "unit_source_value", "qualifier_source_value",
        "value_source_value", "observation_event_id", "obs_event_field_concept_id",
    ),
}  # fmt: skip


@dataclass
class Fact:
    """One clinical fact after de-identification: codes, shifted dates, coded values only."""

    label: str
    codes: list[dict[str, str]]
    start: datetime | date | None
    end: datetime | date | None
    status: str | None = None
    category: str | None = None
    value: float | None = None
    unit: str | None = None
    clinical_status: str | None = None
    encounter_class: str | None = None

    @property
    def source_value(self) -> str:
        code = self.codes[0] if self.codes else {}
        return f"{code.get('system', '')}|{code.get('code', '')}"[:50]


@dataclass
class Released:
    """A de-identified person ready to write."""

    person_id: int
    fhir_id: str
    quasi: dict[str, str]
    facts: list[Fact] = field(default_factory=list)


def _d(value: datetime | date | None) -> str:
    if value is None:
        return ""
    return (value.date() if isinstance(value, datetime) else value).isoformat()


def _dt(value: datetime | date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{value.isoformat()} 00:00:00"


def _year(quasi: Mapping[str, str]) -> str:
    band = quasi.get("birth_year", "*")
    return "" if band == "*" else band.split("-")[0]


def omop_rows(people: Sequence[Released]) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in OMOP_COLUMNS}
    ids = iter(range(1, 10**12))
    for p in people:
        gender = p.quasi.get("gender", "*")
        tables["person"].append(
            {
                "person_id": p.person_id,
                "gender_concept_id": GENDER_CONCEPT.get(gender, 0),
                "year_of_birth": _year(p.quasi),
                "race_concept_id": 0,
                "ethnicity_concept_id": 0,
                "gender_source_value": gender,
            }
        )
        dated = [f.start for f in p.facts if f.start is not None]
        if dated:
            tables["observation_period"].append(
                {
                    "observation_period_id": next(ids),
                    "person_id": p.person_id,
                    "observation_period_start_date": _d(min(dated, key=_d)),
                    "observation_period_end_date": _d(max(dated, key=_d)),
                    "period_type_concept_id": EHR,
                }
            )
        for f in p.facts:
            table, row = _omop_fact(f)
            if table is None:
                continue
            row[f"{table}_id" if table != "visit_occurrence" else "visit_occurrence_id"] = next(ids)
            row["person_id"] = p.person_id
            tables[table].append(row)
    return tables


def _omop_fact(f: Fact) -> tuple[str | None, dict[str, Any]]:
    src = f.source_value
    if f.label == "Encounter":
        return "visit_occurrence", {
            "visit_concept_id": 0, "visit_start_date": _d(f.start),
            "visit_start_datetime": _dt(f.start), "visit_end_date": _d(f.end or f.start),
            "visit_end_datetime": _dt(f.end or f.start), "visit_type_concept_id": EHR,
            "visit_source_value": f.encounter_class or src, "visit_source_concept_id": 0,
        }  # fmt: skip
    if f.label == "Condition":
        return "condition_occurrence", {
            "condition_concept_id": 0, "condition_start_date": _d(f.start),
            "condition_start_datetime": _dt(f.start), "condition_end_date": _d(f.end),
            "condition_end_datetime": _dt(f.end), "condition_type_concept_id": EHR,
            "condition_source_value": src, "condition_source_concept_id": 0,
            "condition_status_source_value": f.clinical_status or "",
        }  # fmt: skip
    if f.label in ("MedicationRequest", "MedicationStatement"):
        return "drug_exposure", {
            "drug_concept_id": 0, "drug_exposure_start_date": _d(f.start),
            "drug_exposure_start_datetime": _dt(f.start),
            "drug_exposure_end_date": _d(f.end or f.start),
            "drug_exposure_end_datetime": _dt(f.end or f.start), "drug_type_concept_id": EHR,
            "drug_source_value": src, "drug_source_concept_id": 0,
        }  # fmt: skip
    if f.label == "Procedure":
        return "procedure_occurrence", {
            "procedure_concept_id": 0, "procedure_date": _d(f.start),
            "procedure_datetime": _dt(f.start), "procedure_type_concept_id": EHR,
            "procedure_source_value": src, "procedure_source_concept_id": 0,
        }  # fmt: skip
    if f.label == "Observation" and f.start is not None:
        if f.value is not None:
            return "measurement", {
                "measurement_concept_id": 0, "measurement_date": _d(f.start),
                "measurement_datetime": _dt(f.start), "measurement_type_concept_id": EHR,
                "value_as_number": f.value, "unit_concept_id": 0,
                "measurement_source_value": src, "measurement_source_concept_id": 0,
                "unit_source_value": f.unit or "",
            }  # fmt: skip
        return "observation", {
            "observation_concept_id": 0, "observation_date": _d(f.start),
            "observation_datetime": _dt(f.start), "observation_type_concept_id": EHR,
            "observation_source_value": src, "observation_source_concept_id": 0,
        }  # fmt: skip
    return None, {}


def write_omop(people: Sequence[Released], out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for table, rows in omop_rows(people).items():
        with (out / f"{table}.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=OMOP_COLUMNS[table], extrasaction="raise")
            writer.writeheader()
            writer.writerows(rows)
        counts[table] = len(rows)
    return counts


# --- FHIR bulk data ------------------------------------------------------------------------

_BAND = "https://medshadow.org/fhir/StructureDefinition/generalised-birth-year"
_FHIR_STATUS = {
    "Observation": ({"registered", "preliminary", "final", "amended", "corrected",
                     "cancelled", "entered-in-error", "unknown"}, "final"),
    "MedicationRequest": ({"active", "on-hold", "cancelled", "completed", "entered-in-error",
                           "stopped", "draft", "unknown"}, "unknown"),
    "MedicationStatement": ({"active", "completed", "entered-in-error", "intended", "stopped",
                             "on-hold", "unknown", "not-taken"}, "unknown"),
    "Encounter": ({"planned", "arrived", "triaged", "in-progress", "onleave", "finished",
                   "cancelled", "entered-in-error", "unknown"}, "unknown"),
    "Procedure": ({"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                   "entered-in-error", "unknown"}, "unknown"),
    "Immunization": ({"completed", "entered-in-error", "not-done"}, "completed"),
}  # fmt: skip


def _status(label: str, value: str | None) -> str:
    allowed, default = _FHIR_STATUS[label]
    return value if value in allowed else default


def _concept(f: Fact) -> dict[str, Any]:
    coding = [
        {k: v for k, v in (("system", c.get("system")), ("code", c.get("code")),
                           ("display", c.get("display"))) if v}
        for c in f.codes
    ]  # fmt: skip
    return {"coding": coding} if coding else {"text": "uncoded"}


def _when(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def fhir_resources(p: Released) -> Iterable[dict[str, Any]]:
    subject = {"reference": f"Patient/{p.fhir_id}"}
    patient: dict[str, Any] = {"resourceType": "Patient", "id": p.fhir_id}
    gender = p.quasi.get("gender")
    if gender in ("male", "female", "other", "unknown"):
        patient["gender"] = gender
    year = _year(p.quasi)
    if year:
        patient["birthDate"] = year
        patient["extension"] = [{"url": _BAND, "valueString": p.quasi["birth_year"]}]
    address = {k: p.quasi[q] for k, q in (("state", "state"), ("postalCode", "zip3"))
               if p.quasi.get(q, "*") != "*"}  # fmt: skip
    if address:
        patient["address"] = [address]
    yield patient
    for f in p.facts:
        rid = str(uuid.uuid4())
        when = _when(f.start)
        if f.label == "Condition":
            r: dict[str, Any] = {"resourceType": "Condition", "id": rid, "subject": subject,
                                 "code": _concept(f)}  # fmt: skip
            if f.clinical_status in ("active", "recurrence", "relapse", "inactive", "remission",
                                     "resolved"):  # fmt: skip
                r["clinicalStatus"] = {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": f.clinical_status}]}  # fmt: skip
            if when:
                r["onsetDateTime"] = when
            if f.end is not None and r.get("clinicalStatus", {}).get("coding", [{}])[0].get(
                "code"
            ) in ("inactive", "remission", "resolved"):
                r["abatementDateTime"] = _when(f.end)
        elif f.label == "Observation":
            r = {"resourceType": "Observation", "id": rid, "subject": subject,
                 "status": _status("Observation", f.status), "code": _concept(f)}  # fmt: skip
            if f.category:
                r["category"] = [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": f.category}]}]  # fmt: skip
            if when:
                r["effectiveDateTime"] = when
            if f.value is not None:
                r["valueQuantity"] = {"value": f.value, **({"unit": f.unit} if f.unit else {})}
        elif f.label == "MedicationRequest":
            r = {"resourceType": "MedicationRequest", "id": rid, "subject": subject,
                 "status": _status("MedicationRequest", f.status), "intent": "order",
                 "medicationCodeableConcept": _concept(f)}  # fmt: skip
            if when:
                r["authoredOn"] = when
        elif f.label == "MedicationStatement":
            r = {"resourceType": "MedicationStatement", "id": rid, "subject": subject,
                 "status": _status("MedicationStatement", f.status),
                 "medicationCodeableConcept": _concept(f)}  # fmt: skip
            if when:
                r["effectiveDateTime"] = when
        elif f.label == "Encounter":
            r = {"resourceType": "Encounter", "id": rid, "subject": subject,
                 "status": _status("Encounter", f.status),
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                           "code": f.encounter_class or "AMB"}}  # fmt: skip
            if f.codes:
                r["type"] = [_concept(f)]
            if when:
                r["period"] = {"start": when, **({"end": _when(f.end)} if f.end else {})}
        elif f.label == "Procedure":
            r = {"resourceType": "Procedure", "id": rid, "subject": subject,
                 "status": _status("Procedure", f.status), "code": _concept(f)}  # fmt: skip
            if when:
                r["performedDateTime"] = when
        elif f.label == "Immunization" and when:
            r = {"resourceType": "Immunization", "id": rid, "patient": subject,
                 "status": _status("Immunization", f.status), "vaccineCode": _concept(f),
                 "occurrenceDateTime": when}  # fmt: skip
        elif f.label == "AllergyIntolerance":
            r = {"resourceType": "AllergyIntolerance", "id": rid, "patient": subject,
                 "code": _concept(f)}  # fmt: skip
            if when:
                r["recordedDate"] = when
        else:
            continue
        yield r


def write_fhir(
    people: Sequence[Released], out: Path, *, request: str, at: datetime
) -> dict[str, int]:
    """NDJSON per resource type and ``manifest.json`` (FHIR Bulk Data Access 2.0 shape)."""
    out.mkdir(parents=True, exist_ok=True)
    handles: dict[str, Any] = {}
    counts: dict[str, int] = {}
    try:
        for p in people:
            for resource in fhir_resources(p):
                kind = resource["resourceType"]
                if kind not in handles:
                    handles[kind] = (out / f"{kind}.ndjson").open("w", encoding="utf-8")
                handles[kind].write(json.dumps(resource, separators=(",", ":")) + "\n")
                counts[kind] = counts.get(kind, 0) + 1
    finally:
        for fh in handles.values():
            fh.close()
    manifest = {
        "transactionTime": _when(at),
        "request": request,
        "requiresAccessToken": False,
        "output": [
            {"type": kind, "url": f"{kind}.ndjson", "count": n}
            for kind, n in sorted(counts.items())
        ],
        "error": [],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return counts
