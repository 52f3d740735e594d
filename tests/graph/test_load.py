"""Loading the split Synthea ecosystem into the real Neo4j: counts, links, idempotence, quarantine."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import neo4j

from app.pipeline import LoadReport, load_fhir
from ontology.model import Label, RelType


def _one(driver: neo4j.Driver, query: str, **params: Any) -> Any:
    records, _, _ = driver.execute_query(query, params)
    return records[0][0]


def test_sample_loads_every_modelled_type(loaded_sample: LoadReport) -> None:
    for rtype in (
        "Patient",
        "Organization",
        "Practitioner",
        "Encounter",
        "Condition",
        "Observation",
        "MedicationRequest",
        "Procedure",
        "Immunization",
        "DiagnosticReport",
        "DocumentReference",
        "CarePlan",
    ):
        assert loaded_sample.parsed[rtype] > 0, rtype
    assert loaded_sample.skipped["Claim (claims skipped by default)"] > 0
    assert loaded_sample.skipped["ExplanationOfBenefit (claims skipped by default)"] > 0
    assert loaded_sample.quarantined == 0
    assert not loaded_sample.write.dangling


def test_graph_matches_what_was_parsed(
    driver: neo4j.Driver, loaded_sample: LoadReport, sample_domain_ids: list[str]
) -> None:
    conditions = _one(
        driver,
        "MATCH (c:Condition) WHERE c.sourceDomain IN $d RETURN count(c)",
        d=sample_domain_ids,
    )
    assert conditions == loaded_sample.parsed["Condition"]
    encounters = _one(
        driver,
        "MATCH (e:Encounter) WHERE e.sourceDomain IN $d RETURN count(e)",
        d=sample_domain_ids,
    )
    assert encounters == loaded_sample.parsed["Encounter"]
    # Blood-pressure panels keep their systolic/diastolic components as coded child observations.
    components = _one(
        driver,
        "MATCH (:Observation)-[:HAS_COMPONENT]->(c:Observation)-[:CODED_AS]->"
        "(:Concept {system: 'http://loinc.org', code: '8480-6'}) RETURN count(c)",
    )
    assert components > 0


def test_people_span_several_clinic_domains(
    driver: neo4j.Driver, loaded_sample: LoadReport, sample_domain_ids: list[str]
) -> None:
    domains = _one(
        driver,
        "MATCH (d:Domain {kind: 'MIS'}) WHERE d.uid IN $d RETURN count(d)",
        d=sample_domain_ids,
    )
    assert domains >= 3
    multi = _one(
        driver,
        "MATCH (p:Person)<-[:RECORD_OF]-(r:Patient) WITH p, count(DISTINCT r) AS n "
        "WHERE n >= 2 RETURN count(p)",
    )
    assert multi >= 1
    # Each record has its own local id and MRN, but the same national id as its person.
    bad = _one(
        driver,
        "MATCH (p:Person)<-[:RECORD_OF]-(r:Patient) WHERE r.sourceDomain IN $d "
        "AND (r.nationalId <> p.nationalId OR r.mrn IS NULL) RETURN count(r)",
        d=sample_domain_ids,
    )
    assert bad == 0


def test_every_fact_has_provenance_and_a_patient(
    driver: neo4j.Driver, loaded_sample: LoadReport
) -> None:
    missing = _one(
        driver,
        "MATCH (f) WHERE (f:Condition OR f:Observation OR f:Encounter OR f:MedicationRequest) "
        "AND (f.sourceDomain IS NULL OR f.recordId IS NULL OR NOT (f)-[:ABOUT]->(:Patient)) "
        "RETURN count(f)",
    )
    assert missing == 0
    wrong_domain = _one(
        driver,
        "MATCH (f)-[:ABOUT]->(:Patient)-[:IN_DOMAIN]->(d:Domain) "
        "WHERE f.sourceDomain <> d.uid RETURN count(f)",
    )
    assert wrong_domain == 0


def test_labels_and_types_in_graph_are_all_ontology_terms(
    driver: neo4j.Driver, loaded_sample: LoadReport
) -> None:
    labels = {r["label"] for r in driver.execute_query("CALL db.labels() YIELD label")[0]}
    types = {r["relationshipType"] for r in driver.execute_query("CALL db.relationshipTypes()")[0]}
    assert labels <= {label.value for label in Label}
    assert types <= {rel.value for rel in RelType}


def test_reload_is_idempotent(
    driver: neo4j.Driver, loaded_sample: LoadReport, sample_domains: Path, tmp_path: Path
) -> None:
    before = _one(driver, "MATCH (n) RETURN count(n)")
    rels_before = _one(driver, "MATCH ()-[r]->() RETURN count(r)")
    again = load_fhir(driver, [sample_domains], quarantine_dir=tmp_path)
    assert sum(again.write.nodes_created.values()) == 0
    assert sum(again.write.rels_created.values()) == 0
    assert _one(driver, "MATCH (n) RETURN count(n)") == before
    assert _one(driver, "MATCH ()-[r]->() RETURN count(r)") == rels_before


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r.get('id')}", "resource": r} for r in resources],
    }


def test_bad_resources_are_quarantined_and_good_ones_load(
    driver: neo4j.Driver, tmp_path: Path, scratch_dir: Path
) -> None:
    inputs = scratch_dir
    patient = {
        "resourceType": "Patient",
        "id": "qp1",
        "gender": "female",
        "birthDate": "1980-02-03",
        "name": [{"family": "Quarantaine", "given": ["Ada"]}],
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-00-0001"}],
    }
    good = {
        "resourceType": "Condition",
        "id": "qc-good",
        "subject": {"reference": "urn:uuid:qp1"},
        "code": {
            "coding": [
                {"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}
            ]
        },
        "onsetDateTime": "2020-01-01T00:00:00Z",
    }
    no_code = {
        "resourceType": "Condition",
        "id": "qc-nocode",
        "subject": {"reference": "urn:uuid:qp1"},
    }
    broken_ref = {**good, "id": "qc-broken", "subject": {"reference": "urn:uuid:nobody"}}
    unknown = {"resourceType": "Spaceship", "id": "x1"}
    note = {
        "resourceType": "DocumentReference",
        "id": "qd1",
        "status": "current",
        "subject": {"reference": "urn:uuid:qp1"},
        "date": "2020-01-02T00:00:00Z",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(b"Patient feels well.").decode(),
                }
            }
        ],
    }
    (inputs / "bundle.json").write_text(
        json.dumps(_bundle(patient, good, no_code, broken_ref, unknown, note))
    )
    (inputs / "broken.json").write_text('{"resourceType": "Bundle", "entry": [')
    qdir = tmp_path / "quarantine"

    report = load_fhir(driver, [inputs], quarantine_dir=qdir)

    assert report.parsed["Condition"] == 1
    assert report.parsed["Patient"] == 1
    assert report.quarantined == 4
    assert not report.ok
    assert report.quarantine_file is not None
    rows = [json.loads(line) for line in report.quarantine_file.read_text().splitlines()]
    reasons = {(r["id"], r["reason"].split(" ")[0]) for r in rows}
    assert ("qc-nocode", "missing") in reasons
    assert ("qc-broken", "broken") in reasons
    assert ("x1", "unknown") in reasons
    assert any(
        r["reason"].startswith("malformed JSON") and r["location"].endswith("broken.json")
        for r in rows
    )
    assert all("#entry[" in r["location"] for r in rows if r["id"])
    # The good resources of the same bundle are in the graph, with the note text decoded.
    text = _one(driver, "MATCH (d:Document {recordId: 'qd1'}) RETURN d.text")
    assert text == "Patient feels well."
    assert (
        _one(
            driver,
            "MATCH (c:Condition {recordId: 'qc-good'})-[:ABOUT]->(:Patient)-[:RECORD_OF]->(p:Person) RETURN p.nationalId",
        )
        == "999-00-0001"
    )
    assert (
        _one(
            driver,
            "MATCH (c:Condition) WHERE c.recordId IN ['qc-nocode', 'qc-broken'] RETURN count(c)",
        )
        == 0
    )


def test_bulk_ndjson_loads_with_cross_file_references(
    driver: neo4j.Driver, tmp_path: Path, scratch_dir: Path
) -> None:
    folder = scratch_dir
    (folder / "Patient.ndjson").write_text(
        json.dumps(
            {
                "resourceType": "Patient",
                "id": "nd-p1",
                "birthDate": "1990-05-05",
                "gender": "male",
                "name": [{"family": "Bulkson", "given": ["Ned"]}],
            }
        )
        + "\n"
    )
    obs = {
        "resourceType": "Observation",
        "id": "nd-o1",
        "status": "final",
        "subject": {"reference": "Patient/nd-p1"},
        "effectiveDateTime": "2024-03-01T10:00:00+00:00",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]
        },
        "valueQuantity": {"value": 72, "unit": "/min", "code": "/min"},
    }
    (folder / "Observation.ndjson").write_text(json.dumps(obs) + "\n" + "{not json\n")
    report = load_fhir(driver, [folder], quarantine_dir=tmp_path / "q")
    assert report.parsed["Observation"] == 1
    assert report.parsed["Patient"] == 1
    assert report.quarantined == 1
    assert report.quarantine_file is not None
    assert "Observation.ndjson:2" in report.quarantine_file.read_text()
    value = _one(
        driver,
        "MATCH (o:Observation {recordId: 'nd-o1'})-[:ABOUT]->(p:Patient {recordId: 'nd-p1'}) RETURN o.value",
    )
    assert value == 72.0
    assert _one(driver, "MATCH (d:Domain {uid: $d}) RETURN d.kind", d=f"mis:{folder.name}") == "MIS"
