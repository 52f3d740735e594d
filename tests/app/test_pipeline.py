"""A load, end to end: write, link into the person, stamp the registry, tell the change feed —
and a re-load of the same data does none of it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import neo4j
import orjson
from starlette.testclient import TestClient

from app.pipeline import LoadReport, load_fhir
from app.server import create_app
from app.settings import Settings

DOMAINS = """query($id: ID!) { patient(id: $id) { ... on Patient {
  domains { id kind record recordId facts updatedAt
    kinds { kind count latest updatedAt }
    link { method probability linkedBy evidence { comparison level } } } } } }"""


def _a_clinic_bundle(sample_domains: Path) -> Path:
    """The smallest clinic record that has a measured observation."""
    for path in sorted(sample_domains.glob("*/*.json"), key=lambda p: p.stat().st_size):
        if path.name.startswith("ground_truth"):
            continue
        if b'"valueQuantity"' in path.read_bytes():
            return path
    raise AssertionError("no clinic record with a measured observation")


def _person_of_record(driver: neo4j.Driver, uid: str) -> str:
    rows, _, _ = driver.execute_query(
        "MATCH (:Patient {uid: $uid})-[:RECORD_OF]->(p:Person) RETURN p.uid AS p", uid=uid
    )
    return str(rows[0]["p"])


def _load_audit(driver: neo4j.Driver, person: str, domain: str) -> list[dict[str, Any]]:
    """The person's audit events of loads into ``domain``, oldest first."""
    rows, _, _ = driver.execute_query(
        "MATCH (e:AuditEvent {person: $p}) WHERE e.basis STARTS WITH 'load:' "
        "AND e.what ENDS WITH $d RETURN e {.*} AS e ORDER BY e.seq",
        p=person,
        d=f" in {domain}",
    )
    return [dict(r["e"]) for r in rows]


def _load(driver: neo4j.Driver, folder: Path, tmp_path: Path) -> LoadReport:
    return load_fhir(
        driver, [folder], domain=f"mis:{folder.name}", quarantine_dir=tmp_path / "quarantine"
    )


def test_load_links_stamps_and_publishes_once(
    driver: neo4j.Driver,
    settings: Settings,
    loaded_sample: LoadReport,
    sample_domains: Path,
    scratch_dir: Path,
    tmp_path: Path,
) -> None:
    original = _a_clinic_bundle(sample_domains)
    bundle = orjson.loads(original.read_bytes())
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    copy = scratch_dir / original.name
    shutil.copy(original, copy)
    domain = f"mis:{scratch_dir.name}"
    record = f"{domain}/Patient/{patient['id']}"

    first = _load(driver, scratch_dir, tmp_path)
    assert first.ok
    # the same human as the sample's record of that clinic: joined, not a new person
    assert first.link is not None
    assert first.link.linked_to_existing == 1
    assert first.link.new_persons == 0
    sample_record = f"mis:{original.parent.name}/Patient/{patient['id']}"
    person = _person_of_record(driver, record)
    assert person == _person_of_record(driver, sample_record)
    assert set(first.changed) == {record}
    assert {"Patient", "Encounter", "Observation"} <= first.changed[record]
    assert first.events == 1
    events, _, _ = driver.execute_query(
        "MATCH (e:ChangeEvent {domain: $d})-[:CHANGED]->(p:Person) RETURN e {.*} AS e, p.uid AS p",
        d=domain,
    )
    assert [(r["p"], r["e"]["records"]) for r in events] == [(person, [record])]
    # and the person's audit trail names the load as the writer of what it changed
    (written,) = _load_audit(driver, person, domain)
    assert (written["actor"], written["role"], written["action"]) == (
        "system:load",
        "system",
        "write",
    )
    assert set(written["what"].removesuffix(f" in {domain}").split(", ")) == first.changed[record]
    assert written["basis"] == f"load:fhir:{scratch_dir}"

    again = _load(driver, scratch_dir, tmp_path)
    assert again.changed == {}
    assert sum(again.write.nodes_changed.values()) == 0
    assert again.events == 0
    assert len(_load_audit(driver, person, domain)) == 1  # nothing written, nothing audited
    assert again.link is not None
    assert again.link.pending == 0

    # one observation value changes at the source: exactly that is reported
    obs = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and "valueQuantity" in e["resource"]
    )
    obs["valueQuantity"]["value"] = float(obs["valueQuantity"]["value"]) + 1.5
    copy.write_bytes(orjson.dumps(bundle))
    third = _load(driver, scratch_dir, tmp_path)
    assert third.changed == {record: {"Observation"}}
    assert +third.write.nodes_changed == {"Observation": 1}
    assert third.events == 1
    assert _load_audit(driver, person, domain)[-1]["what"] == f"Observation in {domain}"

    tuned = settings.model_copy(update={"api": settings.api.model_copy(update={"tokens": {}})})
    with TestClient(create_app(tuned, driver=driver)) as client:
        body: dict[str, Any] = client.post(
            "/graphql", json={"query": DOMAINS, "variables": {"id": person}}
        ).json()
    assert "errors" not in body, body
    domains = {d["id"]: d for d in body["data"]["patient"]["domains"]}
    mine = domains[domain]
    assert mine["record"] == record
    assert mine["kind"] == "MIS"
    assert mine["updatedAt"] is not None
    kinds = {k["kind"]: k for k in mine["kinds"]}
    assert kinds["Observation"]["count"] > 0
    assert kinds["Observation"]["updatedAt"] is not None
    assert sum(k["count"] for k in kinds.values()) == mine["facts"]
    assert mine["link"]["method"] in {"rule", "probabilistic"}
    assert mine["link"]["probability"] >= 0.99
    assert mine["link"]["linkedBy"] == "mpi"
    assert {"comparison": "national_id", "level": "exact"} in mine["link"]["evidence"]
