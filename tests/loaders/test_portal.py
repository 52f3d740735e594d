"""Portal (PHR) accounts: generated from the sample ecosystem, parsed, loaded into the real Neo4j."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import orjson
import pytest

from app.channels import load_portal
from loaders import person_view as pv
from loaders.portal import METRICS, parse_paths, portal_domain
from loaders.portal_gen import GROUND_TRUTH_PORTAL, generate_portal
from ontology.model import Label, RelType
from tests.conftest import purge_domains


def _one(driver: neo4j.Driver, query: str, **params: Any) -> Any:
    records, _, _ = driver.execute_query(query, params)
    return records[0][0]


def _drop_domain(driver: neo4j.Driver, domain: str) -> None:
    purge_domains(driver, domain)


@pytest.fixture(scope="module")
def portal_name() -> str:
    return f"test-portal-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def export(
    sample_domains: Path, tmp_path_factory: pytest.TempPathFactory, portal_name: str
) -> Path:
    out = tmp_path_factory.mktemp("portal-export")
    report = generate_portal(sample_domains, out, seed=11, fraction=0.7, portal=portal_name)
    assert report.accounts >= 3
    return out


@pytest.fixture(scope="module")
def persons(sample_domains: Path) -> dict[str, pv.PersonView]:
    return {p.pid: p for p in pv.read_persons(sample_domains)}


@pytest.fixture
def domain(driver: neo4j.Driver, portal_name: str) -> Iterator[str]:
    uid = portal_domain(portal_name)
    _drop_domain(driver, uid)
    yield uid
    _drop_domain(driver, uid)


def _accounts(export: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(p.read_bytes())
        for p in sorted(export.glob("*.json"))
        if not p.name.startswith("ground_truth")
    ]


# -- the generator ------------------------------------------------------------------------------


def test_generator_is_deterministic_per_seed(
    sample_domains: Path, tmp_path: Path, export: Path, portal_name: str
) -> None:
    again = tmp_path / "again"
    generate_portal(sample_domains, again, seed=11, fraction=0.7, portal=portal_name)
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in export.iterdir())
    for path in export.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name
    other = tmp_path / "other"
    generate_portal(sample_domains, other, seed=12, fraction=0.7, portal=portal_name)
    assert sorted(p.name for p in other.iterdir()) != sorted(p.name for p in export.iterdir())


def test_accounts_differ_from_clinic_records_like_real_ones(
    export: Path, persons: dict[str, pv.PersonView], portal_name: str
) -> None:
    truth = json.loads((export / GROUND_TRUTH_PORTAL).read_text())
    accounts = _accounts(export)
    assert len(truth) == len(accounts)
    moved = 0
    for doc in accounts:
        account = doc["account"]
        uid = f"{portal_domain(portal_name)}/Patient/{account['id']}"
        person = persons[truth[uid]]
        assert person.alive
        assert "nationalId" not in account
        assert account["birthDate"] == person.patient["birthDate"]
        assert account["family"] == pv.official_name(person.patient)[1]
        clinic_line = (person.patient.get("address") or [{}])[0].get("line", [None])[0]
        moved += account["address"]["line"] != clinic_line
    assert moved == len(accounts)


def test_entries_are_consistent_with_the_clinic_records(
    export: Path, persons: dict[str, pv.PersonView], portal_name: str
) -> None:
    truth = json.loads((export / GROUND_TRUTH_PORTAL).read_text())
    stopped = otc = 0
    for doc in _accounts(export):
        person = persons[truth[f"{portal_domain(portal_name)}/Patient/{doc['account']['id']}"]]
        prescribed = {m.code for m in person.meds}
        for entry in doc["entries"]:
            if entry["kind"] == "measurement" and entry["metric"] == "body-weight":
                recorded = person.latest(pv.WEIGHT)
                assert recorded is not None
                assert abs(entry["value"] - recorded) < 5, (entry, recorded)
            if entry["kind"] == "measurement" and entry["metric"] == "systolic-bp":
                recorded = person.latest(pv.SYSTOLIC)
                assert recorded is not None
                assert abs(entry["value"] - recorded) < 35, (entry, recorded)
            if entry["kind"] == "medication":
                if entry.get("note") == "over the counter":
                    otc += 1
                else:
                    assert "rxnorm" not in entry or entry["rxnorm"] in prescribed
                    stopped += not entry["taking"]
    assert otc > 0
    assert stopped > 0


# -- parsing ------------------------------------------------------------------------------------


def test_parse_marks_everything_patient_reported_with_provenance(export: Path) -> None:
    units = list(parse_paths([export]))
    assert units
    assert all(not u.quarantined for u in units)
    entries = sum(len(doc["entries"]) for doc in _accounts(export))
    assert sum(n for u in units for k, n in u.parsed.items() if k != "PortalAccount") == entries
    for unit in units:
        records = [n for n in unit.batch.node_rows() if n.label is Label.PATIENT]
        assert len(records) == 1
        record = records[0]
        assert record.uid == f"{unit.domain}/Patient/{record.props['recordId']}"
        assert "nationalId" not in record.props
        assert not any(n.label is Label.PERSON for n in unit.batch.node_rows())
        facts = [
            n
            for n in unit.batch.node_rows()
            if n.label not in (Label.PATIENT, Label.DOMAIN, Label.CONCEPT)
        ]
        assert facts
        about = {r.start: r.end for r in unit.batch.rel_rows() if r.type is RelType.ABOUT}
        for fact in facts:
            assert fact.props["patientReported"] is True
            assert fact.props["sourceDomain"] == unit.domain
            assert fact.props["sourceRecordId"]
            assert fact.props["date"] is not None
            assert about[fact.uid] == record.uid
        self_measured = [f for f in facts if f.props.get("category") == "self-measurement"]
        loinc = {m.loinc for m in METRICS.values()}
        coded = {r.start: r.end for r in unit.batch.rel_rows() if r.type is RelType.CODED_AS}
        for obs in self_measured:
            assert coded[obs.uid].split("|")[1] in loinc


# -- loading ------------------------------------------------------------------------------------


def test_load_then_reload_creates_nothing_new(
    driver: neo4j.Driver, export: Path, domain: str, tmp_path: Path
) -> None:
    first = load_portal(driver, [export], quarantine_dir=tmp_path)
    assert first.ok, (first.reasons, first.write.dangling)
    accounts = len(_accounts(export))
    assert (
        _one(
            driver,
            "MATCH (r:Patient {sourceDomain: $d})-[:IN_DOMAIN]->(:Domain {uid: $d, kind: 'PORTAL'}) "
            "RETURN count(r)",
            d=domain,
        )
        == accounts
    )
    assert set(first.changes) == set(json.loads((export / GROUND_TRUTH_PORTAL).read_text()))
    by_label = {
        row["label"]: row["n"]
        for row in driver.execute_query(
            "MATCH (f)-[:ABOUT]->(:Patient {sourceDomain: $d}) "
            "WHERE f.patientReported = true "
            "RETURN labels(f)[0] AS label, count(f) AS n",
            d=domain,
        ).records
    }
    assert by_label["Observation"] > 0
    assert by_label["MedicationStatement"] > 0
    assert by_label["Preference"] > 0
    assert (
        _one(
            driver,
            "MATCH (f)-[:ABOUT]->(:Patient {sourceDomain: $d}) "
            "WHERE f.patientReported IS NULL RETURN count(f)",
            d=domain,
        )
        == 0
    )
    assert (
        _one(
            driver,
            "MATCH (:MedicationStatement {sourceDomain: $d})-[:CODED_AS]->(c:Concept) "
            "RETURN count(DISTINCT c.system)",
            d=domain,
        )
        == 1
    )
    nodes = _one(driver, "MATCH (n {sourceDomain: $d}) RETURN count(n)", d=domain)
    rels = _one(driver, "MATCH ({sourceDomain: $d})-[r]-() RETURN count(r)", d=domain)

    second = load_portal(driver, [export], quarantine_dir=tmp_path)
    assert second.ok
    assert sum(second.write.nodes_created.values()) == 0
    assert sum(second.write.rels_created.values()) == 0
    assert _one(driver, "MATCH (n {sourceDomain: $d}) RETURN count(n)", d=domain) == nodes
    assert _one(driver, "MATCH ({sourceDomain: $d})-[r]-() RETURN count(r)", d=domain) == rels


def test_bad_entries_are_quarantined_with_file_entry_and_field(
    driver: neo4j.Driver, domain: str, portal_name: str, tmp_path: Path
) -> None:
    doc = {
        "format": "medshadow-portal/1",
        "portal": portal_name,
        "account": {"id": "bad-1", "given": "Ann", "family": "Lee", "birthDate": "1970-02-03"},
        "entries": [
            {
                "id": "ok1",
                "kind": "measurement",
                "metric": "body-weight",
                "value": 70.5,
                "time": "2025-05-01T08:00:00Z",
            },
            {
                "id": "b1",
                "kind": "measurement",
                "metric": "body-weight",
                "value": "heavy",
                "time": "2025-05-01T08:00:00Z",
            },
            {
                "id": "b2",
                "kind": "symptom",
                "severity": 11,
                "text": "ouch",
                "time": "2025-05-01T08:00:00Z",
            },
            {"id": "b3", "kind": "diet", "time": "2025-05-01T08:00:00Z"},
            {"id": "b4", "kind": "medication", "name": "aspirin", "time": "2025-05-01T08:00:00Z"},
            {
                "id": "ok2",
                "kind": "preference",
                "key": "contact_channel",
                "value": "sms",
                "time": "2025-05-01T08:00:00Z",
            },
        ],
    }
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "bad.json"
    path.write_bytes(orjson.dumps(doc))
    (folder / "broken.ndjson").write_text(
        json.dumps({**doc, "account": {"id": "bad-2"}, "entries": []})
        + "\n{not json\n"
        + json.dumps({**doc, "account": {"given": "No Id"}})
        + "\n"
    )
    report = load_portal(driver, [folder], quarantine_dir=tmp_path / "q")
    assert not report.ok
    assert report.quarantine_file is not None
    rows = [json.loads(line) for line in report.quarantine_file.read_text().splitlines()]
    where = {row["location"]: row["reason"] for row in rows}
    assert where[f"{path}#entries[1]"].startswith("entries[1].value: ")
    assert where[f"{path}#entries[2]"].startswith("entries[2].severity: ")
    assert where[f"{path}#entries[3]"].startswith("entries[3].kind: ")
    assert where[f"{path}#entries[4]"].startswith("entries[4].taking: ")
    assert where[f"{folder / 'broken.ndjson'}:2"].startswith("malformed JSON")
    assert where[f"{folder / 'broken.ndjson'}:3#account.id"].startswith("account.id: ")
    assert len(rows) == 6
    # The good entries of the same account, and the good account of the NDJSON file, loaded.
    loaded = _one(
        driver,
        "MATCH (f)-[:ABOUT]->(:Patient {uid: $r}) RETURN collect(f.recordId)",
        r=f"{domain}/Patient/bad-1",
    )
    assert sorted(loaded) == ["bad-1/ok1", "bad-1/preference/contact_channel"]
    assert (
        _one(driver, "MATCH (r:Patient {uid: $r}) RETURN count(r)", r=f"{domain}/Patient/bad-2")
        == 1
    )
