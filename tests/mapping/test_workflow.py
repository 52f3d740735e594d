"""The curation workflow on the real graph: suggestions stored idempotently, reviews with history,
bulk actions and filters, two-reviewer agreement, publishing as a versioned concept map that
locally coded facts then carry, export/import, and re-review when a target system changes."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import neo4j
import pytest

from access.mapping import MappingAccess
from access.policy import AccessDeniedError, Principal, Role
from access.terminology import TerminologyAccess
from app.pipeline import load_fhir
from graph.mapping import MappingFilter
from graph.reader import GraphReader
from graph.terminology import patients_with_code
from nlp.mapping import MappingEngine
from nlp.semantic import SemanticSearch
from terminology.conceptmap import ConceptMapError, from_fhir, from_sssom
from terminology.curation import CurationError
from terminology.model import LOINC, CodeSystemInfo, ConceptRecord, ParsedSystem
from tests.conftest import MappingWorld, purge_domains

ALICE = Principal("alice", Role.TERMINOLOGIST)


@pytest.fixture(scope="module")
def engine(driver: neo4j.Driver, mapping_world: MappingWorld) -> MappingEngine:
    return MappingEngine(driver, semantic=SemanticSearch(driver))


@pytest.fixture
def workspace() -> str:
    return f"ws-{uuid.uuid4().hex[:8]}"


def _access(driver: neo4j.Driver, engine: MappingEngine, who: str = "alice") -> MappingAccess:
    return MappingAccess(driver, Principal(who, Role.TERMINOLOGIST), suggester=engine)


def _queue(access: MappingAccess, world: MappingWorld, workspace: str) -> list[dict[str, Any]]:
    flt = MappingFilter(workspace=workspace, source_system=world.lab_system, target_system=LOINC)
    rows, total = access.mappings(flt, first=500)
    assert len(rows) == total
    return rows


def test_suggestions_are_stored_once_with_history(
    driver: neo4j.Driver, engine: MappingEngine, mapping_world: MappingWorld, workspace: str
) -> None:
    access = _access(driver, engine)
    first = access.suggest(mapping_world.lab_system, "loinc", workspace=workspace)
    assert first.codes == first.changed > 0
    again = access.suggest(mapping_world.lab_system, "loinc", workspace=workspace)
    assert again.changed == 0  # same candidates: nothing written
    rows = _queue(access, mapping_world, workspace)
    assert len(rows) == first.codes
    # most frequent local codes first, each unreviewed with its best candidate as target
    freqs = [r["sourceFrequency"] or 0 for r in rows]
    assert freqs == sorted(freqs, reverse=True)
    for r in rows:
        assert r["status"] == "unreviewed"
        candidates = json.loads(str(r["candidates"]))
        assert r["targetCode"] == candidates[0]["code"]
        assert [h["action"] for h in access.history(str(r["uid"]))] == ["suggest"]


def test_review_bulk_filters_and_history(
    driver: neo4j.Driver, engine: MappingEngine, mapping_world: MappingWorld, workspace: str
) -> None:
    access = _access(driver, engine)
    access.suggest(mapping_world.lab_system, "loinc", workspace=workspace)
    rows = _queue(access, mapping_world, workspace)
    one, two, three, four = (str(r["uid"]) for r in rows[:4])
    second = json.loads(str(rows[0]["candidates"]))[1]

    reviewed = access.update(one, status="approved", target_code=second["code"], comment="serum")
    assert reviewed["status"] == "approved"
    assert reviewed["targetCode"] == second["code"]
    assert reviewed["equivalence"] == "equivalent"  # the default for an approval
    assert reviewed["reviewer"] == "alice"
    history = access.history(one)
    assert [h["action"] for h in history] == ["suggest", "review"]
    after = json.loads(history[-1]["after"])
    assert after["status"] == "approved"
    assert after["targetCode"] == second["code"]
    assert json.loads(history[-1]["before"])["status"] == "unreviewed"

    assert access.update(two, status="rejected")["status"] == "rejected"
    bulk = access.bulk([three, four], status="approved", equivalence="wider", comment="bulk")
    assert {b["status"] for b in bulk} == {"approved"}
    assert {b["equivalence"] for b in bulk} == {"wider"}
    assert [h["action"] for h in access.history(three)] == ["suggest", "bulk"]

    flt = MappingFilter(workspace=workspace, statuses=("approved",))
    approved, total = access.mappings(flt)
    assert total == 3
    assert {str(m["uid"]) for m in approved} == {one, three, four}
    text = str(rows[0]["sourceDisplay"])[:5]
    found, _ = access.mappings(MappingFilter(workspace=workspace, text=text))
    assert one in {str(m["uid"]) for m in found}
    page1, total_all = access.mappings(MappingFilter(workspace=workspace), first=2)
    page2, _ = access.mappings(MappingFilter(workspace=workspace), first=2, offset=2)
    assert len(page1) == 2
    assert total_all == len(rows)
    assert {str(m["uid"]) for m in page1}.isdisjoint(str(m["uid"]) for m in page2)


def test_bad_reviews_are_refused_with_reasons(
    driver: neo4j.Driver, engine: MappingEngine, mapping_world: MappingWorld, workspace: str
) -> None:
    access = _access(driver, engine)
    access.suggest(mapping_world.lab_system, "loinc", workspace=workspace, codes=None)
    uid = str(_queue(access, mapping_world, workspace)[0]["uid"])
    with pytest.raises(CurationError, match="unknown status 'done'"):
        access.update(uid, status="done")
    with pytest.raises(CurationError, match="unknown equivalence"):
        access.update(uid, equivalence="same")
    with pytest.raises(CurationError, match="no code 'NOPE-1'"):
        access.update(uid, target_code="NOPE-1")
    with pytest.raises(CurationError, match="no mapping"):
        access.update("nope|nope|nope", status="approved")
    with pytest.raises(CurationError, match="unknown codes"):
        access.suggest(mapping_world.lab_system, "loinc", workspace=workspace, codes=["ZZ999"])
    assert [h["action"] for h in access.history(uid)] == ["suggest"]  # nothing half-done
    clinician = MappingAccess(driver, Principal("bob", Role.CLINICIAN), suggester=engine)
    with pytest.raises(AccessDeniedError, match="curate_mappings"):
        clinician.mappings(MappingFilter(workspace=workspace))


def test_two_reviewers_agreement_report(
    driver: neo4j.Driver, engine: MappingEngine, mapping_world: MappingWorld
) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b = f"alice-{tag}", f"bob-{tag}"
    alice, bob = _access(driver, engine, "alice"), _access(driver, engine, "bob")
    alice.suggest(mapping_world.lab_system, "loinc", workspace=a)
    bob.suggest(mapping_world.lab_system, "loinc", workspace=b)
    rows_a = _queue(alice, mapping_world, a)[:6]
    rows_b = {r["sourceCode"]: r for r in _queue(bob, mapping_world, b)}
    alice.bulk([str(r["uid"]) for r in rows_a], status="approved")
    same = [str(rows_b[r["sourceCode"]]["uid"]) for r in rows_a[:4]]
    bob.bulk(same, status="approved")
    other = rows_b[rows_a[4]["sourceCode"]]
    bob.update(
        str(other["uid"]),
        status="approved",
        target_code=json.loads(str(other["candidates"]))[1]["code"],
    )
    bob.update(str(rows_b[rows_a[5]["sourceCode"]]["uid"]), status="rejected")

    report = alice.agreement(mapping_world.lab_system, "loinc", a, b)
    assert report.compared == 6
    assert report.agreed == 4
    assert report.percent == pytest.approx(4 / 6)
    assert {d.source_code for d in report.disagreements} == {
        rows_a[4]["sourceCode"],
        rows_a[5]["sourceCode"],
    }
    assert report.kappa is not None
    assert 0.0 < report.kappa < 1.0
    with pytest.raises(CurationError, match="two different workspaces"):
        alice.agreement(mapping_world.lab_system, "loinc", a, a)


def _standard_codes_of_local_facts(
    driver: neo4j.Driver, local_uid: str, map_name: str
) -> list[dict[str, object]]:
    records, _, _ = driver.execute_query(
        "MATCH (:Concept {uid: $local})<-[:CODED_AS]-(f)-[r:CODED_AS {map: $map}]->(t:Concept) "
        "RETURN f.uid AS fact, t.uid AS target, r.mapVersion AS version, r.method AS method, "
        "r.confidence AS confidence",
        local=local_uid,
        map=map_name,
    )
    return [dict(r) for r in records]


def test_publish_versions_and_facts_carry_standard_codes(
    driver: neo4j.Driver,
    engine: MappingEngine,
    mapping_world: MappingWorld,
    workspace: str,
    tmp_path: Path,
) -> None:
    access = _access(driver, engine)
    access.suggest(mapping_world.lab_system, "loinc", workspace=workspace)
    rows = _queue(access, mapping_world, workspace)
    top = rows[0]  # the most frequent local lab code: it has facts
    access.bulk([str(r["uid"]) for r in rows[:5]], status="approved")
    name = f"test-{workspace}"
    v1 = access.publish(mapping_world.lab_system, "loinc", workspace=workspace, name=name)
    assert (v1.version, v1.elements, v1.links) == ("1", 5, 5)
    assert v1.facts_coded > 0
    # the persons whose facts gained standard codes hear about it on the change feed
    events, _, _ = driver.execute_query(
        "MATCH (e:ChangeEvent {source: $s}) RETURN count(e) AS n, "
        "collect(DISTINCT e.kinds) AS kinds",
        s=f"conceptmap:{name}|1",
    )
    assert events[0]["n"] > 0
    assert ["Observation"] in events[0]["kinds"]
    # and each of them has the recoding in their audit trail, by the terminologist
    audited, _, _ = driver.execute_query(
        "MATCH (e:AuditEvent {basis: $s}) RETURN count(e) AS n, collect(DISTINCT e.actor) AS a, "
        "collect(DISTINCT e.role) AS r",
        s=f"conceptmap:{name}|1",
    )
    assert (audited[0]["n"], audited[0]["r"]) == (events[0]["n"], ["terminologist"])
    assert audited[0]["a"] == [access.reviewer]
    coded = _standard_codes_of_local_facts(driver, str(top["sourceUid"]), name)
    assert coded
    assert {c["target"] for c in coded} == {top["targetUid"]}
    assert {c["version"] for c in coded} == {"1"}
    # every query that follows CODED_AS now finds the local facts by the standard code
    reader = GraphReader(driver)
    system, code = str(top["targetUid"]).split("|")
    persons = patients_with_code(reader, system, code, False, 500)
    records, _, _ = driver.execute_query(
        "MATCH (:Concept {uid: $local})<-[:CODED_AS]-(f)-[:ABOUT]->(:Patient)-[:RECORD_OF]->(p) "
        "RETURN collect(DISTINCT p.uid) AS persons",
        local=top["sourceUid"],
    )
    assert set(records[0]["persons"]) <= {p["uid"] for p in persons}

    # version 2 retargets one code: its links and facts follow, the other four stay
    second = json.loads(str(top["candidates"]))[1]
    access.update(str(top["uid"]), target_code=second["code"])
    v2 = access.publish(mapping_world.lab_system, "loinc", workspace=workspace, name=name)
    assert v2.version == "2"
    coded = _standard_codes_of_local_facts(driver, str(top["sourceUid"]), name)
    assert {c["target"] for c in coded} == {f"{LOINC}|{second['code']}"}
    assert {c["version"] for c in coded} == {"2"}
    links, _, _ = driver.execute_query(
        "MATCH ()-[m:MAPS_TO {map: $map}]->() RETURN count(m) AS n, collect(DISTINCT "
        "m.mapVersion) AS versions",
        map=name,
    )
    assert links[0]["n"] == 5
    assert links[0]["versions"] == ["2"]
    maps = access.concept_maps(mapping_world.lab_system)
    assert [(m["version"], m["current"]) for m in maps if m["name"] == name] == [
        ("2", True),
        ("1", False),
    ]

    # facts loaded after publishing get the standard code during their load
    clinic = next(p for p in (mapping_world.code_lists.parent / "domains").iterdir())
    late = tmp_path / f"late-{workspace}"
    shutil.copytree(clinic, late)
    report = load_fhir(
        driver, [late], quarantine_dir=tmp_path / "q", domain=f"mis:late-{workspace}"
    )
    try:
        assert report.mapped > 0
        records, _, _ = driver.execute_query(
            "MATCH (f {sourceDomain: $d})-[:CODED_AS]->(:Concept {uid: $local}) "
            "WHERE NOT (f)-[:CODED_AS {map: $map}]->() RETURN count(f) AS unmapped",
            d=f"mis:late-{workspace}",
            local=top["sourceUid"],
            map=name,
        )
        assert records[0]["unmapped"] == 0
    finally:
        purge_domains(driver, f"mis:late-{workspace}")


def test_export_and_import_round_trip(
    driver: neo4j.Driver, engine: MappingEngine, mapping_world: MappingWorld, workspace: str
) -> None:
    access = _access(driver, engine)
    access.suggest(mapping_world.lab_system, "loinc", workspace=workspace)
    rows = _queue(access, mapping_world, workspace)
    access.bulk([str(r["uid"]) for r in rows[:3]], status="approved")
    access.update(str(rows[3]["uid"]), status="approved", equivalence="unmatched", comment="none")
    name = f"rt-{workspace}"
    access.publish(mapping_world.lab_system, "loinc", workspace=workspace, name=name)

    fhir = json.loads(access.export(name, fmt="fhir"))
    assert fhir["resourceType"] == "ConceptMap"
    doc = from_fhir(fhir)
    assert len(doc.elements) == 4
    assert sum(1 for e in doc.elements if e.equivalence == "unmatched") == 1
    sssom = from_sssom(access.export(name, fmt="sssom"))
    assert sssom.elements == doc.elements

    imported_ws = f"{workspace}-imported"
    copy = type(doc)(
        name=f"{name}-copy",
        version="7",
        source_system=doc.source_system,
        target_system=doc.target_system,
        elements=doc.elements,
    )
    published = access.import_map(copy, workspace=imported_ws)
    assert (published.name, published.version, published.links) == (f"{name}-copy", "7", 3)
    imported = _queue(access, mapping_world, imported_ws)
    assert {str(m["status"]) for m in imported} == {"approved"}
    assert {(m["sourceCode"], m.get("targetCode")) for m in imported} == {
        (e.source_code, e.target_code) for e in doc.elements
    }
    assert all(access.history(str(m["uid"]))[-1]["action"] == "import" for m in imported)

    bad = type(doc)(
        name=f"{name}-bad",
        version="1",
        source_system=doc.source_system,
        target_system=doc.target_system,
        elements=(
            type(doc.elements[0])(
                source_code="LB-NOT-THERE",
                source_display=None,
                target_code="0000-0",
                target_display=None,
                equivalence="equivalent",
            ),
        ),
    )
    with pytest.raises(ConceptMapError, match="unknown code") as caught:
        access.import_map(bad, workspace=f"{workspace}-bad")
    assert len(caught.value.problems) == 2  # the source and the target code, both named
    assert all(m["name"] != f"{name}-bad" for m in access.concept_maps())


def test_new_target_version_flags_mappings_for_rereview(
    driver: neo4j.Driver, engine: MappingEngine, workspace: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    target, local = f"urn:test:target-{tag}", f"urn:test:local-{tag}"

    def system(url: str, v: str, codes: dict[str, str]) -> ParsedSystem:
        info = CodeSystemInfo(url, v, "T", "test", "tests", "test", "complete", False, "")
        parsed = ParsedSystem(info)
        parsed.concepts.extend(ConceptRecord(c, d) for c, d in codes.items())
        return parsed

    def version(v: str, codes: dict[str, str]) -> ParsedSystem:
        return system(target, v, codes)

    local_system = system(local, "1", {"L1": "alpha", "L2": "beta", "L3": "gamma"})
    terminology = TerminologyAccess.for_driver(driver, ALICE)
    terminology.load([version("1", {"A": "alpha", "B": "beta", "C": "gamma"}), local_system])
    access = _access(driver, engine)
    access.suggest(local, target, workspace=workspace)
    rows = {
        m["sourceCode"]: m
        for m in access.mappings(MappingFilter(workspace=workspace, source_system=local))[0]
    }
    assert {code: m["targetCode"] for code, m in rows.items()} == {"L1": "A", "L2": "B", "L3": "C"}
    access.bulk([str(m["uid"]) for m in rows.values()], status="approved")

    report = terminology.load(
        [version("2", {"B": "beta (renamed)", "C": "gamma", "D": "alpha"})], suggester=engine
    )
    assert report.flagged == 2
    after = {
        m["sourceCode"]: m
        for m in access.mappings(MappingFilter(workspace=workspace, source_system=local))[0]
    }
    assert after["L1"]["status"] == "flagged"
    assert "A is retired" in str(after["L1"]["flagReason"])
    assert after["L2"]["status"] == "flagged"
    assert "changed" in str(after["L2"]["flagReason"])
    assert after["L3"]["status"] == "approved"
    assert [h["action"] for h in access.history(str(after["L1"]["uid"]))][-2:] == [
        "flag",
        "suggest",
    ]
    # fresh suggestions leave the retired code out; the reviewer's target stays until decided
    fresh = [c["code"] for c in json.loads(str(after["L1"]["candidates"]))]
    assert fresh[0] == "D"
    assert "A" not in fresh
    assert after["L1"]["targetCode"] == "A"
