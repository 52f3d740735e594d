"""Code systems in the real Neo4j: the packaged sources loaded, then the FHIR-style operations."""

from __future__ import annotations

import json
from pathlib import Path

import neo4j
import pytest

from access.policy import AccessDeniedError, Principal, Role
from access.terminology import TerminologyAccess
from app.pipeline import load_fhir
from graph import terminology as q
from terminology.model import (
    ICD10,
    ICD10CM,
    SNOMED,
    UCUM,
    CodeSystemInfo,
    ConceptRecord,
    ParsedSystem,
)
from terminology.sources import parse

TERMINOLOGIST = Principal("t", Role.TERMINOLOGIST)


@pytest.fixture(scope="module")
def loaded(driver: neo4j.Driver) -> q.TerminologyLoad:
    access = TerminologyAccess.for_driver(driver, TERMINOLOGIST)
    return access.load(list(parse([])))


@pytest.fixture
def terms(driver: neo4j.Driver, loaded: q.TerminologyLoad) -> TerminologyAccess:
    return TerminologyAccess.for_driver(driver, Principal("doc", Role.CLINICIAN))


def _by_system(load: q.TerminologyLoad) -> dict[str, q.SystemLoad]:
    return {f"{s.system}|{s.version}": s for s in load.systems}


def test_every_source_loads_with_hierarchy_and_no_dangling_parents(
    loaded: q.TerminologyLoad, driver: neo4j.Driver
) -> None:
    systems = _by_system(loaded)
    cm = systems[f"{ICD10CM}|2026"]
    assert cm.concepts > 98_000
    assert cm.write.rels_written["IS_A"] == cm.concepts - 22  # all but the 22 chapters
    who = systems[f"{ICD10}|2019"]
    assert who.notes["russian names matched"] > 12_000
    assert who.notes["russian rows not in WHO ICD-10 2019"] > 0  # reported, not dropped
    assert all(not s.write.dangling for s in loaded.systems), [
        (s.system, s.write.dangling) for s in loaded.systems
    ]
    assert {s.system for s in loaded.systems} >= {ICD10, ICD10CM, UCUM, SNOMED}
    assert loaded.mapped > 20_000  # WHO <-> CM identity map, both directions
    records, _, _ = driver.execute_query(
        "MATCH (c:Concept {uid: $uid})-[:IN_VERSION]->(s:CodeSystem) RETURN s.version AS v",
        uid=f"{ICD10CM}|E11.9",
    )
    assert [r["v"] for r in records] == ["2026"]


def test_reload_is_idempotent(driver: neo4j.Driver, loaded: q.TerminologyLoad) -> None:
    def count() -> tuple[int, int, int]:
        records, _, _ = driver.execute_query(
            "MATCH (c:Concept) WITH count(c) AS c "
            "MATCH ()-[r:IS_A]->() WITH c, count(r) AS r "
            "MATCH ()-[v:IN_VERSION]->() RETURN c, r, count(v) AS v"
        )
        return records[0]["c"], records[0]["r"], records[0]["v"]

    before = count()
    again = TerminologyAccess.for_driver(driver, TERMINOLOGIST).load(
        list(parse(["icd10", "icd10cm"]))
    )
    assert count() == before
    for s in again.systems:
        assert sum(s.write.nodes_created.values()) == 0
        assert sum(s.write.nodes_changed.values()) == 0
        assert sum(s.write.rels_created.values()) == 0
        assert s.retired == 0


def test_subsumption_in_icd10cm(terms: TerminologyAccess) -> None:
    assert terms.subsumes("icd10cm", "E11", "E11.9") == "subsumes"
    assert terms.subsumes("icd10cm", "E11.9", "E11") == "subsumed-by"
    assert terms.subsumes("icd10cm", "E08-E13", "E11.65") == "subsumes"  # through E11, E11.6
    assert terms.subsumes("icd10cm", "E11", "I10") == "not-subsumed"
    assert terms.subsumes("icd10cm", "E11", "E11") == "equivalent"
    assert terms.subsumes("icd10cm", "E11", "NOPE") is None
    # folded block/category B10: the category hangs under its chapter
    b10 = terms.lookup("icd10cm", "B10")
    assert b10 is not None
    assert [p for p, _ in b10.parents] == ["1"]


def test_lookup_gives_display_designations_parents_children_and_versions(
    terms: TerminologyAccess,
) -> None:
    found = terms.lookup(ICD10, "E11")
    assert found is not None
    assert found.concept.display == "Type 2 diabetes mellitus"
    assert [p for p, _ in found.parents] == ["E10-E14"]
    assert found.children == 10  # E11.0 ... E11.9
    ru = [d for d in found.concept.designations if d.language == "ru"]
    assert ru
    assert "сахарный диабет" in ru[0].value.lower()
    assert found.versions == [("2019", "Type 2 diabetes mellitus", "active", False)]
    assert found.concept.properties["kind"] == "category"
    assert terms.lookup(ICD10, "E11", version="2010") is None


def test_russian_search_finds_who_icd10_diabetes(terms: TerminologyAccess) -> None:
    found = terms.search("сахарный диабет", systems=["icd10"], language="ru", first=50)
    codes = {c.code for c in found}
    assert {"E10", "E11"} <= codes or "E10-E14" in codes
    assert all(c.system == ICD10 for c in found)
    assert any(c.code.startswith(("E10", "E11", "E12", "E13", "E14")) for c in found[:5])


def test_english_search_over_synonyms_and_systems(terms: TerminologyAccess) -> None:
    found = terms.search("tylenol", systems=["drugs"], first=5)
    assert found
    assert found[0].code == "acetaminophen"
    loinc = terms.search("hemoglobin blood", systems=["loinc"], first=10)
    assert "718-7" in {c.code for c in loinc}


def test_expand_pages_through_descendants(terms: TerminologyAccess) -> None:
    expected = terms.descendants("icd10cm", "E11")
    assert "E11.65" in expected
    assert "E11" not in expected
    seen: list[str] = []
    after = None
    while True:
        page, total, more = terms.expand("icd10cm", "E11", None, 10, after)
        assert total == len(expected)
        seen += [c.code for c in page]
        if not more:
            break
        after = page[-1].code
    assert seen == sorted(expected)
    assert len(seen) == len(set(seen))
    filtered, n, _ = terms.expand("icd10cm", "E11", "hyperglycemia", 50, None)
    assert [c.code for c in filtered] == ["E11.65"]
    assert n == 1
    with pytest.raises(ValueError, match="first"):
        terms.expand("icd10cm", "E11", None, 0, None)


def test_validate_code(terms: TerminologyAccess) -> None:
    ok = terms.validate("icd10cm", "E11.9", "Type 2 diabetes mellitus without complications")
    assert ok.result
    wrong = terms.validate("icd10cm", "E11.9", "Type 1 diabetes mellitus")
    assert not wrong.result
    assert "wrong display" in wrong.message
    assert wrong.display == "Type 2 diabetes mellitus without complications"
    assert terms.validate("icd10", "E11", "Сахарный диабет 2 типа").result is not None
    assert not terms.validate("icd10cm", "E99.99").result
    assert terms.validate("ucum", "mg/dL").result
    assert terms.validate("ucum", "mmol/L/min").result  # not in the table, valid grammar
    assert not terms.validate("ucum", "mg//dL").result


def test_translate_through_the_identity_map(terms: TerminologyAccess) -> None:
    found = terms.translate("icd10", "E11.9", "icd10cm")
    assert [(c.code, method) for c, _, _, method in found] == [("E11.9", "identical-code")]
    back = terms.translate("icd10cm", "E11", "icd10")
    assert back
    assert back[0][0].code == "E11"
    assert back[0][2] == "equivalent"
    assert terms.translate("icd10cm", "E11.65", "icd10") == []  # WHO stops at 4 characters


def test_reads_and_loads_are_checked(driver: neo4j.Driver, loaded: q.TerminologyLoad) -> None:
    nobody = TerminologyAccess.for_driver(driver, Principal("x", Role.NONE))
    with pytest.raises(AccessDeniedError):
        nobody.lookup("icd10", "E11")
    clinician = TerminologyAccess.for_driver(driver, Principal("doc", Role.CLINICIAN))
    with pytest.raises(AccessDeniedError):
        clinician.load([])


def test_a_later_version_marks_retired_and_changed_codes(driver: neo4j.Driver) -> None:
    url = "urn:medshadow:test:versioned-system"

    def version(v: str, concepts: list[ConceptRecord]) -> ParsedSystem:
        info = CodeSystemInfo(url, v, "T", "test", "test", "none", "complete", True)
        return ParsedSystem(info, concepts)

    v1 = version("1", [ConceptRecord("A", "Alpha"), ConceptRecord("B", "Beta", ("A",))])
    v2 = version("2", [ConceptRecord("A", "Alpha"), ConceptRecord("B", "Beta 2", ("A",))])
    v3 = version("3", [ConceptRecord("A", "Alpha")])
    try:
        q.load_systems(driver, [v1])
        second = q.load_systems(driver, [v2]).systems[0]
        assert (second.retired, second.changed) == (0, 1)
        third = q.load_systems(driver, [v3]).systems[0]
        assert third.retired == 1
        terms = TerminologyAccess.for_driver(driver, TERMINOLOGIST)
        b = terms.lookup(url, "B")
        assert b is not None
        assert b.versions == [
            ("1", "Beta", "active", False),
            ("2", "Beta 2", "active", True),
            ("3", "Beta 2", "retired", False),
        ]
        assert not terms.validate(url, "B").result
        assert terms.validate(url, "A").result
    finally:
        driver.execute_query("MATCH (n) WHERE n.system = $url DETACH DELETE n", url=url)


def test_patients_with_any_code_under_a_concept(
    driver: neo4j.Driver, loaded: q.TerminologyLoad, scratch_dir: Path, tmp_path: Path
) -> None:
    patient = {
        "resourceType": "Patient",
        "id": "tp1",
        "gender": "male",
        "birthDate": "1961-05-06",
        "name": [{"family": "Subsumova", "given": ["Ivan"]}],
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-41-0001"}],
    }
    condition = {
        "resourceType": "Condition",
        "id": "tc1",
        "subject": {"reference": "urn:uuid:tp1"},
        "code": {"coding": [{"system": ICD10CM, "code": "E11.65"}]},
        "onsetDateTime": "2021-01-01T00:00:00Z",
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in (patient, condition)],
    }
    (scratch_dir / "bundle.json").write_text(json.dumps(bundle))
    report = load_fhir(driver, [scratch_dir], quarantine_dir=tmp_path / "q")
    assert report.ok
    terms = TerminologyAccess.for_driver(driver, Principal("doc", Role.CLINICIAN))
    under = terms.patients_with_code("icd10cm", "E08-E13", True, 100)
    assert "Subsumova" in {p["family"] for p in under}
    exact = terms.patients_with_code("icd10cm", "E08-E13", False, 100)
    assert "Subsumova" not in {p["family"] for p in exact}
    # the loaded FHIR concept and the terminology concept are one node
    records, _, _ = driver.execute_query(
        "MATCH (c:Concept {uid: $uid}) RETURN count(c) AS n, c.display AS d",
        uid=f"{ICD10CM}|E11.65",
    )
    assert records[0]["n"] == 1


def test_patients_with_a_synthea_code_on_the_sample(
    driver: neo4j.Driver, loaded: q.TerminologyLoad, loaded_sample: object
) -> None:
    records, _, _ = driver.execute_query(
        "MATCH (:Condition)-[:CODED_AS]->(c:Concept {system: $s}) "
        "RETURN c.code AS code, count(*) AS n ORDER BY n DESC, code LIMIT 1",
        s=SNOMED,
    )
    code = records[0]["code"]
    expected, _, _ = driver.execute_query(
        "MATCH (:Concept {uid: $uid})<-[:CODED_AS]-(:Condition)-[:ABOUT]->(:Patient)"
        "-[:RECORD_OF]->(p:Person) RETURN collect(DISTINCT p.uid) AS uids",
        uid=f"{SNOMED}|{code}",
    )
    terms = TerminologyAccess.for_driver(driver, Principal("doc", Role.CLINICIAN))
    found = terms.patients_with_code("snomed", code, True, 500)
    assert {p["uid"] for p in found} >= set(expected[0]["uids"])
    assert found
    # the sample's SNOMED codes were harvested from Synthea's modules
    assert terms.lookup("snomed", code) is not None
