"""Patient portal (personal health record) accounts -> typed graph batches.

The export format (``medshadow-portal/1``): one JSON object per account, either one ``.json``
file per account or one account per line of an ``.ndjson`` file::

    {
      "format": "medshadow-portal/1",
      "portal": "myhealth",                      # the portal; domain uid "portal:myhealth"
      "account": {
        "id": "a-1029", "given": ["Dell"], "family": "Hettinger", "name": "Dell Hettinger",
        "birthDate": "1966-12-24", "gender": "female",
        "email": "dell@example.org", "phone": "555-358-2683",
        "address": {"line": "12 Elm St", "postalCode": "02115", "city": "Boston"}
      },
      "entries": [
        {"id": "m1", "kind": "measurement", "metric": "body-weight", "value": 81.5,
         "unit": "kg", "time": "2025-11-02T07:30:00Z"},
        {"id": "s1", "kind": "symptom", "time": "...", "text": "dizzy after lunch",
         "severity": 4, "snomed": "404640003"},
        {"id": "d1", "kind": "medication", "name": "metformin 500 mg", "rxnorm": "860975",
         "dose": "500 mg", "frequency": "twice daily", "taking": true, "since": "2024-03-01",
         "note": "...", "time": "..."},
        {"id": "a1", "kind": "allergy", "substance": "penicillin", "reaction": "rash",
         "severity": "moderate", "time": "..."},
        {"id": "p1", "kind": "preference", "key": "contact_channel", "value": "sms",
         "time": "..."}
      ]
    }

A measurement names a ``metric`` (see :data:`METRICS`) or a ``loinc`` code (then ``unit`` is
required). Every entry needs ``time`` (when the patient entered it). Entries without an ``id``
get a content hash, so re-loading an export is idempotent either way; a preference is one node
per (account, key), so setting it again updates it.

Every fact is ``patientReported: true`` with provenance (``sourceDomain``, ``sourceRecordId``,
``date``) and ``ABOUT`` the account's Patient record; codes link through ``CODED_AS`` to
Concepts exactly as the FHIR loader's do. A bad entry is quarantined with the file, entry index
and field; the account's other entries load. An account whose own fields are bad is
quarantined as a whole (its demographics would mislead the patient index).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from loaders import patient_record as pr
from loaders.errors import LoaderError
from loaders.fhir import ParsedUnit, Quarantined, concept_uid
from loaders.patient_record import InvalidField
from ontology.model import DomainKind, Label, RelType
from ontology.records import GraphBatch

FORMAT = "medshadow-portal/1"
DEFAULT_PORTAL = "phr"
DOMAIN_PREFIX = "portal:"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

#: Observation categories of portal entries.
SELF_MEASUREMENT = "self-measurement"
SYMPTOM = "symptom"


@dataclass(frozen=True, slots=True)
class Metric:
    loinc: str
    display: str
    unit: str


#: Metrics a portal offers for self-measurement, with their LOINC code and default UCUM unit.
METRICS: Mapping[str, Metric] = {
    "body-weight": Metric("29463-7", "Body weight", "kg"),
    "body-height": Metric("8302-2", "Body height", "cm"),
    "bmi": Metric("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2"),
    "heart-rate": Metric("8867-4", "Heart rate", "/min"),
    "respiratory-rate": Metric("9279-1", "Respiratory rate", "/min"),
    "systolic-bp": Metric("8480-6", "Systolic blood pressure", "mm[Hg]"),
    "diastolic-bp": Metric("8462-4", "Diastolic blood pressure", "mm[Hg]"),
    "blood-glucose": Metric("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL"),
    "body-temperature": Metric("8310-5", "Body temperature", "Cel"),
    "oxygen-saturation": Metric(
        "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"
    ),
    "steps": Metric("55423-8", "Number of steps in unspecified time Pedometer", "{steps}"),
    "pain-score": Metric(
        "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", "{score}"
    ),
}

ENTRY_KINDS = ("measurement", "symptom", "medication", "allergy", "preference")
ALLERGY_SEVERITIES = ("mild", "moderate", "severe")


def portal_domain(name: str) -> str:
    return DOMAIN_PREFIX + pr.slug(name)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def discover(paths: Sequence[Path]) -> list[Path]:
    """Account files under ``paths``: ``.json`` (one account) and ``.ndjson`` (one per line)."""
    found: list[Path] = []
    for root in paths:
        if not root.exists():
            raise LoaderError(f"{root}: no such file or directory")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        found += [
            p
            for p in files
            if p.suffix in {".json", ".ndjson"} and not p.name.startswith("ground_truth")
        ]
    return found


def parse_paths(paths: Sequence[Path], *, portal: str | None = None) -> Iterator[ParsedUnit]:
    for path in discover(paths):
        yield from parse_file(path, portal=portal)


def parse_file(path: Path, *, portal: str | None = None) -> Iterator[ParsedUnit]:
    """One :class:`ParsedUnit` per account in the file (a malformed one: quarantined alone)."""
    if path.suffix == ".ndjson":
        with path.open("rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    yield _parse_raw(line, f"{path}:{lineno}", portal)
    else:
        yield _parse_raw(path.read_bytes(), str(path), portal)


def _parse_raw(raw: bytes, where: str, portal: str | None) -> ParsedUnit:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return _rejected(where, portal, f"malformed JSON: {e}", raw.decode(errors="replace"))
    return parse_account(doc, where, portal=portal)


def _rejected(where: str, portal: str | None, reason: str, doc: Any) -> ParsedUnit:
    unit = ParsedUnit(source=where, domain=portal_domain(portal or DEFAULT_PORTAL))
    unit.quarantined.append(Quarantined(where, "PortalAccount", None, reason, doc))
    return unit


# ---------------------------------------------------------------------------------------------
# Accounts and entries
# ---------------------------------------------------------------------------------------------


def parse_account(doc: Any, where: str, *, portal: str | None = None) -> ParsedUnit:
    """One account export -> its Patient record and facts; bad entries quarantined one by one."""
    if not isinstance(doc, dict):
        return _rejected(where, portal, "not a JSON object", doc)
    fmt = doc.get("format", FORMAT)
    if fmt != FORMAT:
        return _rejected(where, portal, f"format: {fmt!r} is not {FORMAT!r}", doc)
    name = portal or doc.get("portal") or DEFAULT_PORTAL
    if not isinstance(name, str) or not pr.slug(name):
        return _rejected(where, None, f"portal: {name!r} is not a portal name", doc)
    domain = portal_domain(name)
    unit = ParsedUnit(source=where, domain=domain)
    account = doc.get("account")
    try:
        if not isinstance(account, dict):
            raise InvalidField("account", "missing required object")
        account_id = _account_record(unit.batch, domain, name, account)
    except InvalidField as e:
        unit.quarantined.append(
            Quarantined(f"{where}#{e.field}", "PortalAccount", None, str(e), doc)
        )
        unit.batch = GraphBatch()
        return unit
    unit.parsed["PortalAccount"] += 1
    entries = doc.get("entries") or []
    if not isinstance(entries, list):
        unit.quarantined.append(
            Quarantined(
                f"{where}#entries", "PortalAccount", account_id, "entries: expected a list", entries
            )
        )
        return unit
    for i, entry in enumerate(entries):
        scratch = GraphBatch()
        try:
            kind = add_entry(scratch, domain, account_id, entry, f"entries[{i}].")
        except InvalidField as e:
            unit.quarantined.append(
                Quarantined(
                    f"{where}#entries[{i}]",
                    entry.get("kind") if isinstance(entry, dict) else None,
                    entry.get("id") if isinstance(entry, dict) else None,
                    str(e),
                    entry,
                )
            )
            continue
        unit.batch.extend(scratch)
        unit.parsed[kind] += 1
    return unit


def _account_record(batch: GraphBatch, domain: str, portal: str, account: dict[str, Any]) -> str:
    where = "account."
    account_id = account.get("id")
    if isinstance(account_id, int) and not isinstance(account_id, bool):
        account_id = str(account_id)
    if not isinstance(account_id, str) or not account_id.strip():
        raise InvalidField("account.id", "missing required field")
    account_id = account_id.strip()
    given = account.get("given")
    if isinstance(given, str):
        given = given.split()
    if given is not None and not (
        isinstance(given, list) and all(isinstance(g, str) for g in given)
    ):
        raise InvalidField("account.given", "expected a string or a list of strings")
    address = account.get("address") or {}
    if not isinstance(address, dict):
        raise InvalidField("account.address", "expected an object")
    line = address.get("line")
    if isinstance(line, list):
        line = ", ".join(str(part) for part in line if part)
    address = {**address, "line": line}
    pr.add_domain(batch, domain, portal, DomainKind.PORTAL)
    pr.add_record(
        batch,
        domain,
        account_id,
        name=pr.text(account, "name", where),
        family=pr.text(account, "family", where),
        given=given,
        gender=pr.gender(account, "gender", where),
        birth_date=pr.day(account, "birthDate", where),
        national_id=pr.text(account, "nationalId", where),
        postal_code=pr.text(address, "postalCode", "account.address."),
        city=pr.text(address, "city", "account.address."),
        address_line=pr.text(address, "line", "account.address."),
        phone=pr.text(account, "phone", where),
        email=pr.text(account, "email", where),
        extra={"patientReported": True},
    )
    return account_id


def add_entry(batch: GraphBatch, domain: str, account_id: str, entry: Any, where: str = "") -> str:
    """Add one portal entry (as in the export format) to ``batch``; returns its kind.

    Raises :class:`InvalidField` naming the field (prefixed with ``where``) when the entry is
    bad; ``batch`` may then hold part of it, so callers build into a scratch batch.
    The portal's GraphQL writes go through here too, so both paths validate alike.
    """
    if not isinstance(entry, dict):
        raise InvalidField(where.rstrip(".") or "entry", "expected an object")
    kind = pr.text(entry, "kind", where, required=True)
    handler = _ENTRIES.get(kind or "")
    if handler is None:
        raise InvalidField(f"{where}kind", f"{kind!r} is not one of {', '.join(ENTRY_KINDS)}")
    handler(_Entry(batch, domain, account_id, entry, where))
    return str(kind)


@dataclass(frozen=True, slots=True)
class _Entry:
    batch: GraphBatch
    domain: str
    account_id: str
    raw: dict[str, Any]
    where: str

    def local_id(self) -> str:
        entry_id = self.raw.get("id")
        if isinstance(entry_id, int) and not isinstance(entry_id, bool):
            entry_id = str(entry_id)
        if entry_id is None:
            entry_id = pr.content_id(self.raw)
        if not isinstance(entry_id, str) or not entry_id.strip():
            raise InvalidField(f"{self.where}id", "expected a non-empty string")
        return f"{self.account_id}/{entry_id.strip()}"

    def fact(
        self,
        label: Label,
        props: Mapping[str, Any],
        *,
        codes: Sequence[tuple[str, str, str | None]] = (),
        local_id: str | None = None,
    ) -> str:
        """The fact node with provenance, its ABOUT and CODED_AS links."""
        local = local_id or self.local_id()
        uid = pr.fact_uid(self.domain, label, local)
        record = pr.record_uid(self.domain, self.account_id)
        self.batch.node(
            label,
            uid,
            {
                "recordId": local,
                "sourceRecordId": local,
                "sourceDomain": self.domain,
                "patientReported": True,
                "date": pr.instant(self.raw, "time", self.where, required=True),
                **props,
            },
        )
        self.batch.rel(RelType.ABOUT, (label, uid), (Label.PATIENT, record))
        for rank, (system, code, display) in enumerate(codes):
            concept = concept_uid(system, code)
            self.batch.node(
                Label.CONCEPT, concept, {"system": system, "code": code, "display": display}
            )
            self.batch.rel(RelType.CODED_AS, (label, uid), (Label.CONCEPT, concept), {"rank": rank})
        return uid

    def text(self, key: str, *, required: bool = False) -> str | None:
        return pr.text(self.raw, key, self.where, required=required)

    def code(self, key: str) -> str | None:
        value = self.raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.text(key)

    def number(self, key: str, *, required: bool = False) -> float | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise InvalidField(f"{self.where}{key}", "missing required field")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidField(f"{self.where}{key}", f"{value!r} is not a number")
        return float(value)


def _measurement(e: _Entry) -> None:
    metric_name = e.text("metric")
    loinc = e.code("loinc")
    metric = METRICS.get(metric_name or "")
    if metric_name is not None and metric is None:
        raise InvalidField(f"{e.where}metric", f"{metric_name!r} is not a known metric")
    if metric is None and loinc is None:
        raise InvalidField(f"{e.where}metric", "missing required field (or give 'loinc')")
    unit = e.text("unit") or (metric.unit if metric else None)
    if unit is None:
        raise InvalidField(f"{e.where}unit", "missing required field (no metric to default it)")
    code = loinc or (metric.loinc if metric else "")
    display = metric.display if metric and metric.loinc == code else None
    e.fact(
        Label.OBSERVATION,
        {
            "resourceType": "Observation",
            "category": SELF_MEASUREMENT,
            "status": "final",
            "metric": metric_name,
            "value": e.number("value", required=True),
            "unit": unit,
        },
        codes=[(LOINC, code, display)],
    )


def _symptom(e: _Entry) -> None:
    severity = e.number("severity")
    if severity is not None and not (0 <= severity <= 10 and severity == int(severity)):
        raise InvalidField(f"{e.where}severity", f"{severity:g} is not a whole number 0-10")
    snomed = e.code("snomed")
    e.fact(
        Label.OBSERVATION,
        {
            "resourceType": "Observation",
            "category": SYMPTOM,
            "status": "final",
            "valueString": e.text("text", required=True),
            "value": severity,
            "unit": "{score}" if severity is not None else None,
        },
        codes=[(SNOMED, snomed, None)] if snomed else [],
    )


def _medication(e: _Entry) -> None:
    taking = e.raw.get("taking")
    if not isinstance(taking, bool):
        raise InvalidField(f"{e.where}taking", "missing required field (true or false)")
    rxnorm = e.code("rxnorm")
    name = e.text("name", required=True)
    e.fact(
        Label.MEDICATION_STATEMENT,
        {
            "resourceType": "MedicationStatement",
            "display": name,
            "dose": e.text("dose"),
            "frequency": e.text("frequency"),
            "taking": taking,
            "status": "active" if taking else "stopped",
            "since": pr.day(e.raw, "since", e.where),
            "note": e.text("note"),
        },
        codes=[(RXNORM, rxnorm, name)] if rxnorm else [],
    )


def _allergy(e: _Entry) -> None:
    severity = e.text("severity")
    if severity is not None and severity.lower() not in ALLERGY_SEVERITIES:
        raise InvalidField(
            f"{e.where}severity", f"{severity!r} is not one of {', '.join(ALLERGY_SEVERITIES)}"
        )
    substance = e.text("substance", required=True)
    codes = [(SNOMED, c, substance) for c in [e.code("snomed")] if c]
    codes += [(RXNORM, c, substance) for c in [e.code("rxnorm")] if c]
    e.fact(
        Label.ALLERGY_INTOLERANCE,
        {
            "resourceType": "AllergyIntolerance",
            "substance": substance,
            "reaction": e.text("reaction"),
            "severity": severity.lower() if severity else None,
            "clinicalStatus": "active",
            "verificationStatus": "unconfirmed",  # the patient says so; nobody has checked
        },
        codes=codes,
    )


def _preference(e: _Entry) -> None:
    key = pr.required_text(e.raw, "key", e.where)
    value = e.raw.get("value")
    if isinstance(value, bool):
        value = "yes" if value else "no"
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidField(f"{e.where}value", "missing required field (a string)")
    # One preference per (account, key): stating it again replaces the value.
    e.fact(
        Label.PREFERENCE,
        {"resourceType": "Preference", "key": key, "value": value.strip(), "status": "active"},
        local_id=f"{e.account_id}/preference/{pr.slug(key)}",
    )


_ENTRIES = {
    "measurement": _measurement,
    "symptom": _symptom,
    "medication": _medication,
    "allergy": _allergy,
    "preference": _preference,
}
