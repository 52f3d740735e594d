"""A person's medication review: clinic prescriptions and the patient's own portal entries
reconciled, conflicts shown, checks with context, what-if prescriptions."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import neo4j
import pytest

from drugs.model import Severity
from drugs.service import DrugSafety, Review, UnknownPersonError
from shadow.service import ShadowService
from tests.conftest import MedWorld


@pytest.fixture(scope="module")
def service(driver: neo4j.Driver) -> DrugSafety:
    return DrugSafety(driver, shadow=ShadowService(driver))


@pytest.fixture(scope="module")
def review(service: DrugSafety, med_world: MedWorld) -> Review:
    return service.review(med_world.person, int(time.time()))


def test_same_ingredient_from_two_domains_is_one_item(review: Review, med_world: MedWorld) -> None:
    item = next(i for i in review.items if i.key == med_world.same)
    domains = {s.domain for s in item.sources}
    assert med_world.portal in domains
    assert any(d.startswith("mis:") for d in domains)
    portal = next(s for s in item.sources if s.domain == med_world.portal)
    assert portal.patient_reported
    assert portal.strength == "12345 mg"
    # different strengths are shown, not hidden
    assert any("strengths differ" in c and "12345 mg" in c for c in item.conflicts)


def test_stopped_in_one_source_is_a_conflict(review: Review, med_world: MedWorld) -> None:
    item = next(i for i in review.items if i.key == med_world.stopped)
    assert item.active  # the clinic still has it active
    conflict = next(c for c in item.conflicts if c.startswith(med_world.portal))
    assert "stopped" in conflict
    assert "made me dizzy" in conflict


def test_patient_reported_drug_interacts_with_a_prescription(
    review: Review, med_world: MedWorld
) -> None:
    added = next(i for i in review.items if i.key == med_world.added)
    # only the patient says they take it (a clinic may have prescribed it once and stopped)
    assert [s.domain for s in added.sources if s.active] == [med_world.portal]
    finding = next(
        f
        for f in review.findings
        if f.kind == "interaction" and set(f.items) == {med_world.added, med_world.partner}
    )
    assert finding.evidence.startswith("ANSM thesaurus")
    assert finding.source_level
    partner = next(i for i in review.items if i.key == med_world.partner)
    assert any(s.prescribed for s in partner.sources)


def test_unrecognised_entries_are_kept_and_reported(review: Review, med_world: MedWorld) -> None:
    item = next(i for i in review.items if not i.resolved)
    assert item.display == med_world.unknown
    assert med_world.unknown in review.unresolved


def test_every_active_record_is_in_the_list(
    driver: neo4j.Driver, review: Review, med_world: MedWorld
) -> None:
    # nothing dropped: every record the graph has for the person, active in some domain,
    # appears as a source of some item
    records = {
        r["uid"]
        for r in driver.execute_query(
            "MATCH (:Person {uid: $p})<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(m) "
            "WHERE (m:MedicationRequest OR m:MedicationStatement) AND m.status = 'active' "
            "RETURN m.uid AS uid",
            p=med_world.person,
        )[0]
    }
    sourced = {s.record for i in review.items for s in i.sources}
    latest_per_domain = {(i.key, s.domain) for i in review.items for s in i.sources}
    assert len(latest_per_domain) == len(sourced)
    missing = records - sourced
    # an older record of the same item and domain is superseded by the newer one, never lost
    for uid in missing:
        assert any(uid.startswith(s.domain) for i in review.items for s in i.sources)


def test_context_from_the_graph(driver: neo4j.Driver, review: Review, med_world: MedWorld) -> None:
    born = driver.execute_query(
        "MATCH (p:Person {uid: $p}) RETURN p.birthDate AS b", p=med_world.person
    )[0][0]["b"]
    assert review.context is not None
    assert review.context.age is not None
    expected = (datetime.now(UTC).date() - date.fromisoformat(str(born)[:10])).days / 365.25
    assert abs(review.context.age - expected) < 0.01


def test_what_if_returns_only_what_the_new_drug_brings(
    service: DrugSafety, review: Review, med_world: MedWorld
) -> None:
    now = int(time.time())
    whatif = service.check_prescription(med_world.person, "warfarin", now)
    proposed = next(i for i in whatif.items if i.proposed)
    assert proposed.ingredients == ("warfarin",)
    assert whatif.findings
    assert all(proposed.key in f.items for f in whatif.findings)
    # warfarin + the patient's ibuprofen (portal): an NSAID with an oral anticoagulant
    assert any(med_world.added in f.items for f in whatif.findings)
    # proposing what the patient already takes says so first
    again = service.check_prescription(med_world.person, "ibuprofen 200 mg", now)
    assert again.findings[0].kind == "duplicate"
    assert again.findings[0].severity == Severity.MAJOR
    assert med_world.portal in again.findings[0].title


def test_bad_requests_say_what_is_wrong(service: DrugSafety, med_world: MedWorld) -> None:
    with pytest.raises(ValueError, match="no drug matches 'zzq-unknown'"):
        service.check_prescription(med_world.person, "zzq-unknown", int(time.time()))
    with pytest.raises(UnknownPersonError, match="no person"):
        service.review("person:does-not-exist", int(time.time()))


def test_pregnancy_and_egfr_come_from_the_graph(driver: neo4j.Driver, service: DrugSafety) -> None:
    row = driver.execute_query(
        "MATCH (p:Person)<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(c:Condition)-[:CODED_AS]->"
        "(:Concept {uid: 'http://snomed.info/sct|72892002'}) "
        "WHERE c.date IS NOT NULL AND c.end IS NOT NULL "
        "RETURN p.uid AS person, c.date.epochSeconds AS start, c.end.epochSeconds AS end "
        "ORDER BY person LIMIT 1"
    )[0][0]
    during = service.context(row["person"], row["start"] + 86_400)
    assert during.pregnant
    assert during.pregnancy_evidence == "http://snomed.info/sct|72892002"
    assert not service.context(row["person"], row["end"] + 86_400).pregnant
    # eGFR: the shadow's latest (measured or CKD-EPI 2021 from creatinine) for someone with one
    person = driver.execute_query(
        "MATCH (p:Person)<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(o:Observation)-[:CODED_AS]->(k) "
        "WHERE k.code IN ['33914-3', '62238-1', '98979-8', '2160-0', '38483-4'] "
        "RETURN p.uid AS p ORDER BY p LIMIT 1"
    )[0][0]["p"]
    ctx = service.context(person, int(time.time()))
    assert ctx.egfr is not None
    assert ctx.egfr > 0
    assert ctx.egfr_source
