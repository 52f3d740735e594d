"""The shadow computed over the real graph (shadow/service.py, graph/shadow.py): the seeded
Synthea sample plus an IoT cloud's readings (``shadow_world``). Expected values come from the
graph (Cypher) and the generator's files, never from constants written by hand."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import neo4j
import pytest

from app.pipeline import load_fhir
from graph import shadow as q
from shadow.metrics import METRICS
from shadow.service import ShadowService
from tests.conftest import ShadowWorld


def _rows(driver: neo4j.Driver, query: str, **params: Any) -> list[dict[str, Any]]:
    records, _, _ = driver.execute_query(query, params)
    return [dict(r) for r in records]


def test_every_person_gets_each_score_once_and_recompute_is_idempotent(
    driver: neo4j.Driver, shadow_world: ShadowWorld
) -> None:
    per_person = _rows(
        driver,
        "MATCH (p:Person) OPTIONAL MATCH (a:RiskAssessment)-[:FOR_PERSON]->(p) "
        "RETURN p.uid AS p, collect(a.name) AS names",
    )
    assert per_person
    assert all(sorted(r["names"]) == ["ASCVD10", "FINDRISC", "NEWS2"] for r in per_person)
    service = ShadowService(driver)
    service.recompute(list(shadow_world.persons), as_of=shadow_world.as_of)  # up to date
    before = _rows(
        driver,
        "MATCH (n) WHERE n:Alert OR n:DataRequest OR n:RiskAssessment "
        "RETURN labels(n)[0] AS l, count(n) AS n ORDER BY l",
    )
    again = service.recompute(list(shadow_world.persons), as_of=shadow_world.as_of)
    assert (again.alerts_opened, again.requests_opened, again.requests_closed) == (0, 0, 0)
    assert again.alerts_escalated == again.alerts_resolved == 0
    assert again.events == 0  # nothing new: nothing announced
    after = _rows(
        driver,
        "MATCH (n) WHERE n:Alert OR n:DataRequest OR n:RiskAssessment "
        "RETURN labels(n)[0] AS l, count(n) AS n ORDER BY l",
    )
    assert after == before


def test_vitals_pool_every_domain_with_their_source(
    driver: neo4j.Driver, shadow_world: ShadowWorld
) -> None:
    service = ShadowService(driver)
    person = shadow_world.persons[0]
    data = service.read([person], shadow_world.as_of)[person]
    from shadow.engine import vitals

    shown = {v.metric: v for v in vitals(data)}
    # each device series' newest reading (at or before the shadow's now) is what the graph holds
    series = _rows(
        driver,
        "MATCH (:Person {uid: $p})<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(s:ReadingSeries) "
        "WHERE s.lastT <= $asOf "
        "RETURN s.code AS code, s.lastT AS t, s.lastValue AS v, s.sourceDomain AS d",
        p=person,
        asOf=shadow_world.as_of,
    )
    assert series
    for s in series:
        metric = next((m for m in METRICS.values() if s["code"] in m.codes), None)
        if metric is None:
            continue  # steps, urine pH: not shadow metrics
        newest = shown[metric.key]
        assert newest.t >= s["t"]  # nothing newer anywhere else is hidden
        if newest.t == s["t"] and not newest.derived:
            assert newest.value == pytest.approx(s["v"])
            assert newest.source == s["d"]
    # clinic values keep their domain: height comes from an MIS (no device measures it)
    if "height" in shown:
        assert shown["height"].source.startswith("mis:")


def test_scores_record_inputs_missing_and_version(
    driver: neo4j.Driver, shadow_world: ShadowWorld
) -> None:
    person = shadow_world.persons[0]
    stored = {s["name"]: s for s in q.person_scores(driver, person)}
    assert set(stored) == {"NEWS2", "ASCVD10", "FINDRISC"}
    for s in stored.values():
        assert s["version"]
        assert s["reference"]
        assert s["computedAt"] is not None
        assert s["complete"] == (s.get("value") is not None)
        # what went in and what was missing partition the inputs: nothing is both
        assert not set(s["inputsUsed"]) & set(s["inputsMissing"])
    assert stored["NEWS2"]["complete"] is False  # consciousness is never known at home
    assert "consciousness" in stored["NEWS2"]["inputsMissing"]


def test_alerts_are_deduplicated_per_rule_and_key(
    driver: neo4j.Driver, shadow_world: ShadowWorld
) -> None:
    dupes = _rows(
        driver,
        "MATCH (a:Alert)-[:FOR_PERSON]->(p:Person) WHERE a.state IN ['open', 'acknowledged'] "
        "WITH p, a.rule AS rule, a.key AS key, count(*) AS n WHERE n > 1 RETURN p.uid AS p",
    )
    assert dupes == []
    silent = _rows(
        driver,
        "MATCH (a:Alert {state: 'open'})-[:FOR_PERSON]->(p:Person) "
        "WHERE a.rule STARTS WITH 'device-silent' AND p.uid IN $persons "
        "RETURN a.key AS device, a.evidence AS evidence",
        persons=list(shadow_world.persons),
    )
    # every silent-device alert names a device of that person that stopped before the end
    stopped = {
        s["device"]
        for s in shadow_world.truth["silences"]
        if s["end"] is None
        or datetime.fromisoformat(s["end"]).timestamp() >= shadow_world.as_of - 3600
    }
    for a in silent:
        local = a["device"].rsplit("/", 1)[-1]
        assert local in stopped, (a, sorted(stopped))
        assert json.loads(a["evidence"])["silent_hours"] >= 2


def _waist_bundle(sample: Path, person_record: str, when: datetime) -> tuple[str, str]:
    """A one-observation bundle (waist circumference, LOINC 8280-0) for an existing clinic
    patient, in a folder named like the clinic, as the clinic's MIS would send it."""
    domain, _, local = person_record.partition("/Patient/")
    org = domain.removeprefix("mis:")
    patient = next(
        e
        for path in (sample / org).glob("*.json")
        for e in json.loads(path.read_text())["entry"]
        if e["resource"].get("resourceType") == "Patient" and e["resource"].get("id") == local
    )
    obs_id = str(uuid.uuid4())
    observation = {
        "fullUrl": f"urn:uuid:{obs_id}",
        "resource": {
            "resourceType": "Observation",
            "id": obs_id,
            "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8280-0"}]},
            "subject": {"reference": f"urn:uuid:{local}"},
            "effectiveDateTime": when.isoformat(),
            "valueQuantity": {"value": 97.0, "unit": "cm", "system": "http://unitsofmeasure.org"},
        },
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [patient, observation]}
    return json.dumps(bundle), obs_id


def test_a_data_request_closes_when_the_data_arrives(
    driver: neo4j.Driver, shadow_world: ShadowWorld, sample_domains: Path, tmp_path: Path
) -> None:
    # FINDRISC needs a waist circumference that no sample clinic measured: asked of the MIS
    rows = _rows(
        driver,
        "MATCH (q:DataRequest {need: 'waist', status: 'open'})-[:FOR_PERSON]->(p:Person) "
        "MATCH (p)<-[:RECORD_OF]-(r:Patient)-[:IN_DOMAIN]->(d:Domain {kind: 'MIS'}) "
        "WHERE d.uid IN q.domains RETURN p.uid AS p, r.uid AS record ORDER BY p LIMIT 1",
    )
    assert rows, "no open waist request to an MIS"
    person, record = rows[0]["p"], rows[0]["record"]
    [request] = [r for r in q.person_requests(driver, person) if r["need"] == "waist"]
    assert any("FINDRISC" in reason for reason in request["reasons"])
    # the domains asked heard of it on the change feed (subscriptions, webhooks)
    told = _rows(
        driver,
        "MATCH (e:ChangeEvent) WHERE e.personUid = $p AND 'DataRequest' IN e.kinds "
        "RETURN DISTINCT e.domain AS d",
        p=person,
    )
    assert set(request["domains"]) <= {r["d"] for r in told}
    assert request["tried"]
    assert request["openedAt"] is not None

    when = datetime.fromtimestamp(shadow_world.as_of - 86_400, UTC)
    text, obs_id = _waist_bundle(sample_domains, record, when)
    org_dir = tmp_path / record.partition("/Patient/")[0].removeprefix("mis:")
    org_dir.mkdir()
    (org_dir / "waist.json").write_text(text)
    report = load_fhir(driver, [tmp_path], quarantine_dir=tmp_path / "q")
    assert report.ok, report.reasons
    try:
        service = ShadowService(driver)
        result = service.recompute([person], as_of=shadow_world.as_of)
        assert result.requests_closed >= 1
        [closed] = [r for r in q.person_requests(driver, person) if r["need"] == "waist"]
        assert closed["status"] == "closed"
        assert closed["closedAt"] is not None
        assert closed["satisfiedBy"].startswith(record.partition("/Patient/")[0])
        findrisc = next(s for s in q.person_scores(driver, person) if s["name"] == "FINDRISC")
        assert findrisc["inputsUsed"]["waist"] == {"value": 97.0, "unit": "cm"}
    finally:
        driver.execute_query(
            "MATCH (o:Observation) WHERE o.recordId = $id DETACH DELETE o", id=obs_id
        )
        ShadowService(driver).recompute([person], as_of=shadow_world.as_of)
    reopened = next(r for r in q.person_requests(driver, person) if r["need"] == "waist")
    assert reopened["status"] == "open"
