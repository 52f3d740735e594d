"""The research export against the real graph: consenting persons only, nothing that names
them, dates shifted per person, k-anonymous quasi-identifiers (Sweeney 2002) with the achieved
k reported, excluded categories withheld, OMOP CDM v5.4 tables and FHIR R4 bulk NDJSON that
validate, and an audit event per person. HIPAA Safe Harbor (45 CFR 164.514(b)(2)) lists the
identifiers that must not appear."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import neo4j
import pytest
from fhir.resources.R4B import get_fhir_model_class

from access.policy import AccessDeniedError, Principal, Role
from access.research import ResearchAccess
from graph.consent import revoke_consent, write_consent
from research.export import ExportReport
from research.formats import OMOP_COLUMNS
from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("loaded_sample")
BY = "test-research"


@dataclass
class Exported:
    report: ExportReport
    out: Path
    consenting: list[str]
    excluded_mh: str
    others: list[str]
    identifiers: list[str]


def _research(driver: neo4j.Driver, person: str, **extra: Any) -> dict[str, Any]:
    row = write_consent(
        driver,
        {"person": person, "kind": "permit", "granteeType": "research", "grantee": "*",
         "categories": ["all"], "excluded": [], "purposes": ["research"], **extra},
        by=BY,
    )  # fmt: skip
    assert row is not None
    return row


@pytest.fixture(scope="module")
def exported(driver: neo4j.Driver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    persons = [r["uid"] for r in driver.execute_query(
        "MATCH (p:Person) RETURN p.uid AS uid ORDER BY uid").records]  # fmt: skip
    mh, _, _ = driver.execute_query(
        "MATCH (p:Person)<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(:Condition)-[:CODED_AS]->(k) "
        "WHERE k.display =~ '(?i).*(depress|anxiety).*' RETURN DISTINCT p.uid AS uid LIMIT 1"
    )
    excluded_mh = mh[0]["uid"]
    rest = [p for p in persons if p != excluded_mh]
    consenting = rest[: len(rest) - 2]  # all but two, who stay out of the bank
    consenting.append(excluded_mh)
    for p in consenting:
        _research(driver, p, excluded=["mental-health"] if p == excluded_mh else [])
    others = [p for p in persons if p not in consenting]
    # a revoked research consent and a treatment-only grant do not enter the bank
    revoke_consent(driver, _research(driver, others[0])["uid"], person=others[0], by=BY)
    write_consent(
        driver,
        {"person": others[1], "kind": "permit", "granteeType": "everyone", "grantee": "*",
         "categories": ["all"], "purposes": ["treatment"]},
        by=BY,
    )  # fmt: skip
    ids, _, _ = driver.execute_query(
        "MATCH (p:Person)<-[:RECORD_OF]-(r:Patient) RETURN p.uid AS uid, r.name AS name, "
        "r.family AS family, r.mrn AS mrn, r.nationalId AS nid, r.phone AS phone, "
        "r.email AS email, r.recordId AS rid, r.addressLine AS address"
    )
    identifiers = sorted({str(v) for r in ids for v in r.values() if v and len(str(v)) >= 5})
    out = tmp_path_factory.mktemp("bank")
    access = ResearchAccess(driver, Principal("researcher-1", Role.RESEARCHER))
    report = access.export(out, k=5)
    yield Exported(report, out, consenting, excluded_mh, others, identifiers)
    driver.execute_query("MATCH (c:Consent {createdBy: $by}) DETACH DELETE c", by=BY)


def _omop(out: Path, table: str) -> list[dict[str, str]]:
    with (out / "omop" / f"{table}.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _ndjson(out: Path, kind: str) -> list[dict[str, Any]]:
    lines = (out / "fhir" / f"{kind}.ndjson").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_only_consenting_persons_and_k_anonymity(exported: Exported) -> None:
    r = exported.report
    assert r.consenting == len(exported.consenting)
    assert r.exported + r.suppressed == r.consenting
    assert r.exported > 0
    persons = _omop(exported.out, "person")
    assert len(persons) == r.exported
    # the quasi-identifiers as released: every class has at least k persons
    patients = _ndjson(exported.out, "Patient")
    assert len(patients) == r.exported
    classes = Counter(
        (
            p.get("extension", [{}])[0].get("valueString", "*"),
            p.get("gender", "*"),
            (p.get("address") or [{}])[0].get("postalCode", "*"),
            (p.get("address") or [{}])[0].get("state", "*"),
        )
        for p in patients
    )
    assert min(classes.values()) >= 5
    assert r.k_achieved == min(classes.values())
    assert r.classes == len(classes)
    assert json.loads((exported.out / "report.json").read_text())["k_achieved"] == r.k_achieved


def test_nothing_that_names_a_person_is_released(exported: Exported) -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in exported.out.rglob("*") if p.is_file())
    leaked = [i for i in exported.identifiers if i in text]
    assert leaked == []
    assert "person:" not in text  # no master person ids either


def test_dates_are_shifted_per_person_keeping_intervals(
    exported: Exported, driver: neo4j.Driver
) -> None:
    released: dict[str, list[datetime]] = {}
    for e in _omop(exported.out, "visit_occurrence"):
        released.setdefault(e["person_id"], []).append(
            datetime.fromisoformat(e["visit_start_datetime"])
        )
    assert released
    originals, _, _ = driver.execute_query(
        "MATCH (p:Person)<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(e:Encounter) WHERE p.uid IN $ps "
        "RETURN p.uid AS uid, collect(e.date) AS dates",
        ps=exported.consenting,
    )
    real = [
        sorted(d.to_native().replace(tzinfo=None, microsecond=0) for d in r["dates"])
        for r in originals
    ]
    for times in released.values():
        times.sort()
        # some consenting person's encounters, every one moved by the same non-zero offset
        offsets = [
            {t - o for t, o in zip(times, orig, strict=True)}
            for orig in real
            if len(orig) == len(times)
        ]
        assert any(len(o) == 1 and next(iter(o)).total_seconds() != 0 for o in offsets)


def test_excluded_categories_are_withheld(exported: Exported, driver: neo4j.Driver) -> None:
    allowed = [
        r["p"]
        for r in driver.execute_query(
            "MATCH (e:AuditEvent {request: $r, outcome: 'allowed'}) RETURN e.person AS p",
            r=exported.report.export_id,
        ).records
    ]
    count = (
        "MATCH (p:Person)<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(c:Condition)-[:CODED_AS]->(k) "
        "WHERE p.uid IN $ps AND k.display =~ '(?i).*(depress|anxiety).*' RETURN count(c) AS n"
    )
    others = [p for p in allowed if p != exported.excluded_mh]
    expected = driver.execute_query(count, ps=others).records[0]["n"]
    mine = driver.execute_query(count, ps=[exported.excluded_mh]).records[0]["n"]
    released = [
        c
        for c in _ndjson(exported.out, "Condition")
        if any(
            word in (k.get("display") or "").lower()
            for k in c["code"].get("coding", [])
            for word in ("depress", "anxiety")
        )
    ]
    # everyone else's mental-health conditions are in the bank; not one of the person's who
    # excluded mental health (and the report counts what their consent withheld)
    assert len(released) == expected
    if exported.excluded_mh in allowed:
        assert mine > 0
        assert exported.report.facts_withheld_by_consent >= mine


def test_formats_validate(exported: Exported) -> None:
    for table, columns in OMOP_COLUMNS.items():
        with (exported.out / "omop" / f"{table}.csv").open(encoding="utf-8") as fh:
            assert tuple(next(csv.reader(fh))) == columns
    manifest = json.loads((exported.out / "fhir" / "manifest.json").read_text())
    assert manifest["requiresAccessToken"] is False
    assert manifest["request"] == exported.report.export_id
    for entry in manifest["output"]:
        lines = (exported.out / "fhir" / entry["url"]).read_text().splitlines()
        assert len(lines) == entry["count"]
        model = get_fhir_model_class(entry["type"])
        for line in lines[:200]:
            model.model_validate_json(line)  # raises on anything not valid FHIR R4(B)


def test_audit_and_access(exported: Exported, driver: neo4j.Driver, tmp_path: Path) -> None:
    rows, _, _ = driver.execute_query(
        "MATCH (e:AuditEvent {request: $r}) RETURN e.person AS p, e.outcome AS o, e.purpose AS u",
        r=exported.report.export_id,
    )
    assert {r["p"] for r in rows} == set(exported.consenting)
    assert {r["u"] for r in rows} == {"research"}
    assert sum(r["o"] == "allowed" for r in rows) == exported.report.exported
    # the export path of the who-sees-what matrix, by role (consent states are the tests
    # above): only the research bank's operators run it; every other role is refused before
    # anything is read or written
    may_export = {Role.RESEARCHER, Role.STEWARD, Role.ADMIN}
    for role in Role:
        if role in may_export:
            continue
        with pytest.raises(AccessDeniedError, match="not allowed: export_research"):
            ResearchAccess(driver, Principal(f"who-{role.value}", role)).export(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_export(neo4j_uri: str, tmp_path: Path, exported: Exported) -> None:
    done = run_cli(
        ["research", "export", "--out", str(tmp_path / "bank"), "--k", "3", "--format", "omop"],
        neo4j_uri,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "k requested / achieved" in done.stderr
    assert (tmp_path / "bank" / "omop" / "person.csv").exists()
    assert not (tmp_path / "bank" / "fhir").exists()
    report = json.loads((tmp_path / "bank" / "report.json").read_text())
    assert report["k_requested"] == 3
    assert report["k_achieved"] >= 3
