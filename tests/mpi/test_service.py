"""The master patient index on the real graph: batch and incremental linking, the steward's
decisions and ``$match``, scored against the generator's ground truth."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import neo4j
import orjson
import pytest

from app.pipeline import LoadReport, load_fhir
from graph import mpi as g
from graph.consent import write_consent
from identity.model import DemographicRecord
from loaders.perturb import PERTURBATION_TRUTH_NAME, perturb_domains
from loaders.synthea import GROUND_TRUTH_NAME
from mpi.service import LinkReport, MasterIndex, MatchError
from tests.conftest import purge_domains
from tests.mpi.conftest import PREFIX, purge, write_records


@dataclass
class Perturbed:
    report: LinkReport
    #: perturbed record uid -> true person (the split's patient id)
    truth: dict[str, str]
    #: true person -> uid of the Person the unperturbed sample records belong to
    sample_person: dict[str, str]


def _sample_person_of_truth(driver: neo4j.Driver, sample_domains: Path) -> dict[str, str]:
    truth = orjson.loads((sample_domains / GROUND_TRUTH_NAME).read_bytes())
    out: dict[str, str] = {}
    for person, records in truth.items():
        uid = f"mis:{records[0]['org_key']}/Patient/{records[0]['local_patient_id']}"
        rows, _, _ = driver.execute_query(
            "MATCH (:Patient {uid: $uid})-[:RECORD_OF]->(p:Person) RETURN p.uid AS p", uid=uid
        )
        out[person] = rows[0]["p"]
    return out


@pytest.fixture(scope="module")
def perturbed(
    driver: neo4j.Driver,
    loaded_sample: LoadReport,
    sample_domains: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Perturbed]:
    """The sample's clinic records again, perturbed like real registries and loaded as other
    domains (``mis:mpi-<org>``) after the sample: the incremental path must put each onto the
    person the sample already has for that human."""
    split = tmp_path_factory.mktemp("perturbed") / "domains"
    shutil.copytree(sample_domains, split)
    perturb_domains(split, seed=11)
    quarantine = tmp_path_factory.mktemp("quarantine")
    for folder in sorted(p for p in split.iterdir() if p.is_dir()):
        report = load_fhir(
            driver,
            [folder],
            domain=f"{PREFIX}{folder.name}",
            quarantine_dir=quarantine,
            link=False,
        )
        assert report.ok
    link = MasterIndex(driver).link_pending()
    doc = orjson.loads((split / PERTURBATION_TRUTH_NAME).read_bytes())
    truth = {
        f"{PREFIX}{key.split('/')[0]}/Patient/{key.split('/')[1]}": value["person"]
        for key, value in doc.items()
    }
    yield Perturbed(link, truth, _sample_person_of_truth(driver, sample_domains))
    purge(driver)


def _person_of(driver: neo4j.Driver, uids: list[str]) -> dict[str, str]:
    rows, _, _ = driver.execute_query(
        "UNWIND $uids AS uid MATCH (:Patient {uid: uid})-[:RECORD_OF]->(p:Person) "
        "RETURN uid, p.uid AS person",
        uids=uids,
    )
    return {r["uid"]: r["person"] for r in rows}


def test_sample_records_become_one_person_per_human(
    driver: neo4j.Driver, loaded_sample: LoadReport, sample_domains: Path
) -> None:
    truth = orjson.loads((sample_domains / GROUND_TRUTH_NAME).read_bytes())
    uids = {
        f"mis:{r['org_key']}/Patient/{r['local_patient_id']}": person
        for person, records in truth.items()
        for r in records
    }
    person_of = _person_of(driver, list(uids))
    assert set(person_of) == set(uids)  # every record linked, exactly once (one row each)
    humans: dict[str, set[str]] = {}
    for record, human in uids.items():
        humans.setdefault(human, set()).add(person_of[record])
    assert all(len(persons) == 1 for persons in humans.values())
    assert len({next(iter(p)) for p in humans.values()}) == len(humans)


def test_links_carry_method_weight_and_evidence(
    driver: neo4j.Driver, loaded_sample: LoadReport
) -> None:
    rows, _, _ = driver.execute_query(
        "MATCH (r:Patient)-[l:RECORD_OF]->(p:Person) WHERE r.sourceDomain STARTS WITH 'mis:' "
        "AND NOT r.sourceDomain STARTS WITH $p RETURN l {.*} AS link",
        p=PREFIX,
    )
    methods = {r["link"]["method"] for r in rows}
    assert methods <= {"rule", "probabilistic", "singleton", "steward", "merge"}
    assert "rule" in methods  # the sample's clinic records share national ids
    for row in rows:
        link = row["link"]
        assert link["linkedAt"] is not None
        if link["method"] in {"rule", "probabilistic"}:
            assert link["probability"] >= 0.99
            evidence = json.loads(link["evidence"])
            assert {"national_id", "family", "birth_date"} <= set(evidence)


def test_perturbed_records_join_the_existing_person(
    driver: neo4j.Driver, perturbed: Perturbed
) -> None:
    report, truth = perturbed.report, perturbed.truth
    assert report.pending == len(truth)
    assert report.existing_compared > 0  # scored against the graph, not only among themselves
    person_of = _person_of(driver, list(truth))
    assert set(person_of) == set(truth)
    right = sum(1 for r, h in truth.items() if person_of[r] == perturbed.sample_person[h])
    wrong = [
        r
        for r, h in truth.items()
        if person_of[r] in perturbed.sample_person.values()
        and person_of[r] != perturbed.sample_person[h]
    ]
    assert wrong == []  # never onto another human
    assert right / len(truth) >= 0.9, (right, len(truth))


def test_relinking_and_reloading_change_nothing(driver: neo4j.Driver, perturbed: Perturbed) -> None:
    before, _, _ = driver.execute_query(
        "MATCH (p:Person) RETURN count(p) AS persons, COUNT { ()-[:RECORD_OF]->() } AS links"
    )
    again = MasterIndex(driver).link_pending()
    assert again.pending == 0
    after, _, _ = driver.execute_query(
        "MATCH (p:Person) RETURN count(p) AS persons, COUNT { ()-[:RECORD_OF]->() } AS links"
    )
    assert after[0].data() == before[0].data()


def test_match_patient_finds_the_person_from_partial_demographics(
    driver: neo4j.Driver, perturbed: Perturbed
) -> None:
    rows, _, _ = driver.execute_query(
        "MATCH (r:Patient)-[:RECORD_OF]->(p:Person) WHERE r.sourceDomain STARTS WITH $p "
        "AND r.family IS NOT NULL AND r.nationalId IS NULL "
        "RETURN r {.*} AS r, p.uid AS person ORDER BY r.uid LIMIT 1",
        p=PREFIX,
    )
    record, person = rows[0]["r"], rows[0]["person"]
    query = DemographicRecord(
        record_id="q",
        domain="q",
        family=record["family"],
        given=record["given"][0],
        birth_date=record["birthDate"].to_native(),
        gender=None,
        national_id=None,
        postal_code=None,
        city=None,
        address_line=None,
        phone=None,
    )
    found = MasterIndex(driver).match(query, limit=5)
    assert found, "no candidates"
    assert found[0].person == person
    assert found[0].grade in {"certain", "probable"}
    assert len({c.person for c in found}) == len(found)  # one answer per person
    assert (
        MasterIndex(driver).match(
            DemographicRecord(
                "q", "q", "Zzyzx", "Qwerty", date(1900, 1, 1), None, None, None, None, None, None
            )
        )
        == []
    )


# --------------------------------------------------------------------------- the steward


def test_possible_match_waits_in_the_queue_as_two_persons(
    driver: neo4j.Driver, review_pair: tuple[MasterIndex, str, str, str]
) -> None:
    _index, candidate, left, right = review_pair
    person_of = _person_of(driver, [left, right])
    assert person_of[left] != person_of[right]
    items, total = g.review_queue(driver, status="open", limit=100)
    item = next(i for i in items if i["uid"] == candidate)
    assert total >= 1
    assert {r["uid"] for r in item["records"]} == {left, right}
    assert 0.0 <= item["probability"] < 1.0
    assert "birth_date" in json.loads(item["evidence"])


def test_confirm_joins_the_records_and_logs_who_and_when(
    driver: neo4j.Driver, review_pair: tuple[MasterIndex, str, str, str]
) -> None:
    index, candidate, left, right = review_pair
    before = _person_of(driver, [left, right])
    # both persons' consents must survive the merge (a restriction is never lost to it)
    for person in before.values():
        write_consent(
            driver,
            {
                "person": person,
                "kind": "deny",
                "granteeType": "everyone",
                "grantee": "*",
                "categories": ["mental-health"],
                "purposes": ["treatment"],
            },
            by="test-mpi",
        )
    survivor = index.confirm(candidate, by="steward:ana", comment="same woman, moved")
    person_of = _person_of(driver, [left, right])
    assert person_of[left] == person_of[right] == survivor
    moved, _, _ = driver.execute_query(
        "MATCH (c:Consent {createdBy: 'test-mpi'}) "
        "OPTIONAL MATCH (p:Person)-[:HAS_CONSENT]->(c) "
        "RETURN collect(DISTINCT c.person) AS persons, collect(p.uid) AS holders",
        s=survivor,
    )
    assert moved[0]["persons"] == [survivor]
    assert moved[0]["holders"] == [survivor, survivor]
    driver.execute_query("MATCH (c:Consent {createdBy: 'test-mpi'}) DETACH DELETE c")
    rows, _, _ = driver.execute_query(
        "MATCH (d:LinkDecision)-[:DECIDES]->(c:MatchCandidate {uid: $c}) "
        "RETURN d {.*} AS d, c.status AS status",
        c=candidate,
    )
    assert rows[0]["status"] == "confirmed"
    decision = rows[0]["d"]
    assert (decision["action"], decision["by"]) == ("confirm", "steward:ana")
    assert decision["at"] is not None
    assert decision["comment"] == "same woman, moved"
    with pytest.raises(MatchError, match="already confirmed"):
        index.confirm(candidate, by="steward:ana")
    # the change feed hears that the person's record set changed
    events, _, _ = driver.execute_query(
        "MATCH (e:ChangeEvent {source: 'mpi:confirm'})-[:CHANGED]->(:Person {uid: $p}) "
        "RETURN e.kinds AS kinds",
        p=survivor,
    )
    assert [r["kinds"] for r in events] == [["Link"]]


def test_rejected_pair_never_links_automatically(
    driver: neo4j.Driver, review_pair: tuple[MasterIndex, str, str, str]
) -> None:
    index, candidate, left, right = review_pair
    index.reject(candidate, by="steward:bo")
    # the right record arrives again (re-registered): even an index that links everything
    # must not join it to the left one
    driver.execute_query("MATCH (:Patient {uid: $r})-[l:RECORD_OF]->() DELETE l", r=right)
    report = MasterIndex(driver, auto_threshold=0.0, review_threshold=0.0).link_pending()
    assert report.blocked_by_rejection >= 1
    person_of = _person_of(driver, [left, right])
    assert person_of[left] != person_of[right]


def test_unlink_separates_a_record_and_keeps_it_apart(
    driver: neo4j.Driver, review_pair: tuple[MasterIndex, str, str, str]
) -> None:
    index, candidate, left, right = review_pair
    joined = index.confirm(candidate, by="steward:ana")
    base = {"person": joined, "granteeType": "everyone", "grantee": "*", "purposes": ["treatment"]}
    deny = write_consent(
        driver, {**base, "kind": "deny", "categories": ["mental-health"]}, by="test-unlink"
    )
    grant = write_consent(
        driver, {**base, "kind": "permit", "categories": ["all"]}, by="test-unlink"
    )
    assert deny is not None
    assert grant is not None
    new = index.unlink(right, by="steward:cy", comment="different women")
    person_of = _person_of(driver, [left, right])
    assert person_of[left] == joined
    assert person_of[right] == new != joined
    # the new person keeps the restriction (a copy), never the grant it did not give
    held, _, _ = driver.execute_query(
        "MATCH (p:Person)-[:HAS_CONSENT]->(c:Consent) WHERE p.uid IN [$a, $b] "
        "RETURN p.uid AS p, c.person AS person, c.kind AS kind, c.copiedFrom AS src, "
        "c.categories AS cats ORDER BY p, kind",
        a=joined,
        b=new,
    )
    by_person = {(r["p"], r["kind"]): r for r in held}
    assert {k for k in by_person if k[0] == joined} == {(joined, "deny"), (joined, "permit")}
    assert {k for k in by_person if k[0] == new} == {(new, "deny")}
    copy = by_person[(new, "deny")]
    assert (copy["person"], copy["src"], copy["cats"]) == (new, deny["uid"], ["mental-health"])
    assert g.copy_restrictions(driver, joined, new, by="again", now=datetime.now(UTC)) == 1
    again, _, _ = driver.execute_query(
        "MATCH (:Person {uid: $b})-[:HAS_CONSENT]->(c:Consent) RETURN count(c) AS n", b=new
    )
    assert again[0]["n"] == 1  # re-running adds nothing (one copy per restriction)
    # the identity change is audited as a write for both persons, by the linker
    audited, _, _ = driver.execute_query(
        "MATCH (e:AuditEvent {basis: 'mpi:unlink'}) WHERE e.person IN [$a, $b] "
        "RETURN e.person AS p, e.actor AS actor, e.action AS action, e.what AS what",
        a=joined,
        b=new,
    )
    assert {r["p"] for r in audited} == {joined, new}
    assert {(r["actor"], r["action"]) for r in audited} == {("system:mpi", "write")}
    assert all(r["what"].startswith("Link in ") for r in audited)
    driver.execute_query("MATCH (c:Consent {createdBy: 'test-unlink'}) DETACH DELETE c")
    driver.execute_query("MATCH (c:Consent {copiedFrom: $u}) DETACH DELETE c", u=deny["uid"])
    rows, _, _ = driver.execute_query(
        "MATCH (d:LinkDecision {action: 'unlink'})-[:CONCERNS]->(:Patient {uid: $r}) "
        "RETURN d.by AS by, d.fromPerson AS f, d.toPerson AS t",
        r=right,
    )
    assert [(r["by"], r["f"], r["t"]) for r in rows] == [("steward:cy", joined, new)]
    with pytest.raises(MatchError, match="not linked with any other"):
        index.unlink(right, by="steward:cy")


# --------------------------------------------------------------------------- hard cases


def test_twins_stay_two_persons(driver: neo4j.Driver) -> None:
    """Same family, birth date and address, different given name and national id."""
    tag = uuid.uuid4().hex[:8]
    home = {
        "family": f"Okonkwo{tag}",
        "birthDate": date(1990, 6, 2),
        "addressLine": "12 Mill Lane",
        "city": "Boston",
        "postalCode": "02118",
        "gender": "female",
    }
    try:
        ada, ama, ada_again = write_records(
            driver,
            tag,
            {**home, "given": ["Ada"], "nationalId": "999-11-2233"},
            {**home, "given": ["Ama"], "nationalId": "999-11-2234"},
            {**home, "given": ["Ada"], "nationalId": "999-11-2233", "city": "Cambridge"},
        )
        MasterIndex(driver).link_pending()
        person_of = _person_of(driver, [ada, ama, ada_again])
        assert person_of[ada] == person_of[ada_again]
        assert person_of[ama] != person_of[ada]
    finally:
        purge(driver)


def test_married_name_with_maiden_name_links_without_national_id(driver: neo4j.Driver) -> None:
    tag = uuid.uuid4().hex[:8]
    maiden, married = f"Kowalczyk{tag}", f"Brennan{tag}"
    try:
        same = {
            "given": ["Marguerite"],
            "birthDate": date(1984, 11, 23),
            "gender": "female",
            "phone": "555-201-7788",
            "postalCode": "02139",
            "city": "Cambridge",
        }
        before, after = write_records(
            driver,
            tag,
            {**same, "family": maiden},
            {**same, "family": married, "otherFamily": [maiden]},
        )
        report = MasterIndex(driver).link_pending()
        person_of = _person_of(driver, [before, after])
        assert person_of[before] == person_of[after], report
    finally:
        purge(driver)


def test_swapped_day_and_month_still_link(driver: neo4j.Driver) -> None:
    tag = uuid.uuid4().hex[:8]
    base = {
        "family": f"Lindqvist{tag}",
        "given": ["Sven"],
        "gender": "male",
        "nationalId": None,
        "addressLine": "4 Harbor Rd",
        "postalCode": "02210",
        "city": "Boston",
        "phone": "555-330-1200",
    }
    try:
        a, b = write_records(
            driver,
            tag,
            {**base, "birthDate": date(1975, 3, 8)},
            {**base, "birthDate": date(1975, 8, 3)},
        )
        MasterIndex(driver).link_pending()
        person_of = _person_of(driver, [a, b])
        assert person_of[a] == person_of[b]
    finally:
        purge(driver)


def test_portal_accounts_without_national_id_find_their_clinic_person(
    driver: neo4j.Driver,
    loaded_sample: LoadReport,
    sample_domains: Path,
    tmp_path: Path,
) -> None:
    """A portal knows people by what they typed at sign-up (short names, new addresses, no
    national id); the index must still put each account on the clinic person."""
    from app.channels import load_portal
    from loaders.portal_gen import generate_portal

    name = f"mpi-{uuid.uuid4().hex[:8]}"
    generate_portal(sample_domains, tmp_path / "portal", seed=5, fraction=1.0, portal=name)
    truth = orjson.loads((tmp_path / "portal" / "ground_truth_portal.json").read_bytes())
    try:
        report = load_portal(
            driver, [tmp_path / "portal"], quarantine_dir=tmp_path / "q", portal_name=name
        )
        assert report.link is not None
        assert report.link.pending == len(truth) > 0
        person_of = _person_of(driver, list(truth))
        clinic = _sample_person_of_truth(driver, sample_domains)
        right = [r for r, human in truth.items() if person_of[r] == clinic[human]]
        wrong = [
            r
            for r, human in truth.items()
            if person_of[r] in clinic.values() and person_of[r] != clinic[human]
        ]
        assert wrong == []
        assert len(right) / len(truth) >= 0.8, (len(right), len(truth))
    finally:
        purge_domains(driver, f"portal:{name}")
