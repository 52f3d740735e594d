"""Portal mutations and patient-reported data over GraphQL, against the real Neo4j."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import neo4j
import orjson
import pytest
from starlette.testclient import TestClient

from access.policy import AccessDeniedError, Principal, Role
from access.portal import PortalWriter
from app.channels import load_portal, load_social
from app.server import create_app
from app.settings import Settings
from loaders.portal import portal_domain
from loaders.social import community_domain
from tests.conftest import graphql_request, purge_domains


class Accounts:
    def __init__(self, portal: str, community: str) -> None:
        self.domain = portal_domain(portal)
        self.community_name = community
        self.community = community_domain(community)
        self.a = f"{self.domain}/Patient/acc-a"
        self.b = f"{self.domain}/Patient/acc-b"
        self.author = f"{self.community}/Patient/ann_l"
        self.person = f"test-person-{uuid.uuid4().hex[:8]}"


def _account(portal: str, account_id: str) -> dict[str, Any]:
    return {
        "format": "medshadow-portal/1",
        "portal": portal,
        "account": {"id": account_id, "given": "Ann", "family": "Lee", "birthDate": "1970-02-03"},
        "entries": [
            {
                "id": "m1",
                "kind": "medication",
                "name": "metformin 500 mg",
                "rxnorm": "860975",
                "taking": True,
                "time": "2025-05-01T08:00:00Z",
            }
        ],
    }


@pytest.fixture(scope="module")
def accounts(driver: neo4j.Driver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Accounts]:
    tag = uuid.uuid4().hex[:8]
    acc = Accounts(f"test-portal-{tag}", f"test-community-{tag}")
    folder = tmp_path_factory.mktemp("portal-in")
    for account_id in ("acc-a", "acc-b"):
        (folder / f"{account_id}.json").write_bytes(
            orjson.dumps(_account(f"test-portal-{tag}", account_id))
        )
    posts = tmp_path_factory.mktemp("social-in") / "posts.ndjson"
    posts.write_text(
        json.dumps(
            {
                "id": "p1",
                "community": f"test-community-{tag}",
                "author": {"handle": "ann_l", "displayName": "Ann Lee"},
                "time": "2025-03-01T10:00:00Z",
                "text": "Metformin gives me stomach cramps. Does it get better?",
                "thread": "t1",
            }
        )
        + "\n"
    )
    quarantine = tmp_path_factory.mktemp("q")
    assert load_portal(driver, [folder], quarantine_dir=quarantine, link=False).ok
    assert load_social(driver, [posts], quarantine_dir=quarantine, link=False).ok
    # One human with a portal account and a forum handle: the test links them itself.
    driver.execute_query(
        "CREATE (p:Person {uid: $p, name: 'Ann Lee'}) WITH p "
        "MATCH (r:Patient) WHERE r.uid IN [$a, $s] CREATE (r)-[:RECORD_OF]->(p)",
        p=acc.person,
        a=acc.a,
        s=acc.author,
    )
    yield acc
    purge_domains(driver, acc.domain, acc.community)


@pytest.fixture(scope="module")
def client(settings: Settings, driver: neo4j.Driver, accounts: Accounts) -> Iterator[TestClient]:
    tokens = {
        "tok-a": f"patient:{accounts.a}",
        "tok-stranger": "patient:portal:elsewhere/Patient/nobody",
        "tok-admin": "admin",
        "tok-doc": "clinician",
    }
    tuned = settings.model_copy(update={"api": settings.api.model_copy(update={"tokens": tokens})})
    with TestClient(create_app(tuned, driver=driver)) as c:
        yield c


def gql(client: TestClient, query: str, token: str | None, **variables: Any) -> dict[str, Any]:
    body = graphql_request(client, query, token, **variables)
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


MEASURE = """
mutation($account: ID!, $value: Float!) {
  recordSelfMeasurement(account: $account, input: {metric: "body-weight", value: $value}) {
    __typename
    ... on Observation { id value unit category patientReported
                         code { system code } source { domainKind recordId } }
    ... on AccessDenied { message }
    ... on PortalAccountNotFound { account }
    ... on InvalidPortalEntry { field message }
  }
}"""


def _facts_of(driver: neo4j.Driver, record: str) -> int:
    return int(
        driver.execute_query(
            "MATCH (f)-[:ABOUT]->(:Patient {uid: $r}) RETURN count(f) AS n", r=record
        ).records[0]["n"]
    )


def test_principal_from_token_carries_the_patient_account() -> None:
    tokens = {"t1": "patient:portal:phr/Patient/a-1", "t2": "clinician"}
    patient = Principal.from_token("t1", tokens, "none")
    assert patient == Principal(
        "portal:phr/Patient/a-1", Role.PATIENT, account="portal:phr/Patient/a-1"
    )
    assert Principal.from_token("t2", tokens, "none") == Principal(
        "token:clinician", Role.CLINICIAN
    )
    assert Principal.from_token("nope", tokens, "none").role is Role.NONE


def test_patient_writes_to_own_account(
    client: TestClient, driver: neo4j.Driver, accounts: Accounts
) -> None:
    before = _facts_of(driver, accounts.a)
    out = gql(client, MEASURE, "tok-a", account=accounts.a, value=81.4)["recordSelfMeasurement"]
    assert out["__typename"] == "Observation"
    assert out["value"] == 81.4
    assert out["unit"] == "kg"
    assert out["category"] == "self-measurement"
    assert out["patientReported"] is True
    assert out["code"] == {"system": "http://loinc.org", "code": "29463-7"}
    assert out["source"]["domainKind"] == "PORTAL"
    assert _facts_of(driver, accounts.a) == before + 1
    stored = driver.execute_query(
        "MATCH (o:Observation {uid: $u})-[:ABOUT]->(r:Patient) "
        "RETURN o.patientReported AS pr, o.sourceDomain AS d, r.uid AS r",
        u=out["id"],
    ).records[0]
    assert (stored["pr"], stored["d"], stored["r"]) == (True, accounts.domain, accounts.a)
    # the write is audited once, as the patient, with the data kind and the account's domain
    audited = driver.execute_query(
        "MATCH (e:AuditEvent {actor: $a}) WHERE e.basis STARTS WITH 'mutation:portal:' "
        "AND e.action = 'write' RETURN e.what AS what, e.role AS role, e.request AS request",
        a=accounts.a,
    ).records
    assert len(audited) == 1
    assert audited[0]["role"] == "patient"
    assert audited[0]["what"].startswith(f"Observation in {accounts.domain}")


def test_patient_is_denied_another_account_and_nothing_is_written(
    client: TestClient, driver: neo4j.Driver, accounts: Accounts
) -> None:
    before = _facts_of(driver, accounts.b)
    for token in ("tok-a", "tok-stranger", "tok-doc"):
        out = gql(client, MEASURE, token, account=accounts.b, value=70.0)["recordSelfMeasurement"]
        assert out == {"__typename": "AccessDenied", "message": "not allowed: write_portal"}
    assert _facts_of(driver, accounts.b) == before


def test_admin_writes_anywhere_and_unknown_accounts_are_reported(
    client: TestClient, driver: neo4j.Driver, accounts: Accounts
) -> None:
    before = _facts_of(driver, accounts.b)
    out = gql(client, MEASURE, "tok-admin", account=accounts.b, value=70.0)
    assert out["recordSelfMeasurement"]["__typename"] == "Observation"
    assert _facts_of(driver, accounts.b) == before + 1
    missing = f"{accounts.domain}/Patient/nobody"
    out = gql(client, MEASURE, "tok-admin", account=missing, value=70.0)
    assert out["recordSelfMeasurement"] == {
        "__typename": "PortalAccountNotFound",
        "account": missing,
    }
    # A clinic (MIS) record is no portal account, even for an admin.
    driver.execute_query(
        "MERGE (d:Domain {uid: 'mis:test-portal-guard'}) SET d.kind = 'MIS', d.name = 'x' "
        "MERGE (r:Patient {uid: 'mis:test-portal-guard/Patient/1'}) "
        "SET r.sourceDomain = 'mis:test-portal-guard' MERGE (r)-[:IN_DOMAIN]->(d)"
    )
    try:
        out = gql(
            client, MEASURE, "tok-admin", account="mis:test-portal-guard/Patient/1", value=1.0
        )
        assert out["recordSelfMeasurement"]["__typename"] == "PortalAccountNotFound"
    finally:
        driver.execute_query(
            "MATCH (n) WHERE n.uid STARTS WITH 'mis:test-portal-guard' DETACH DELETE n"
        )


def test_invalid_entries_name_the_field(client: TestClient, accounts: Accounts) -> None:
    query = """mutation($account: ID!) {
      addSymptomEntry(account: $account, input: {text: "dizzy", severity: 11}) {
        __typename ... on InvalidPortalEntry { field message } } }"""
    out = gql(client, query, "tok-a", account=accounts.a)["addSymptomEntry"]
    assert out["__typename"] == "InvalidPortalEntry"
    assert out["field"] == "severity"
    query = """mutation($account: ID!) {
      recordSelfMeasurement(account: $account, input: {metric: "mood", value: 3}) {
        __typename ... on InvalidPortalEntry { field } } }"""
    out = gql(client, query, "tok-a", account=accounts.a)["recordSelfMeasurement"]
    assert out == {"__typename": "InvalidPortalEntry", "field": "metric"}


def test_symptom_medication_allergy_and_preference_writes(
    client: TestClient, driver: neo4j.Driver, accounts: Accounts
) -> None:
    symptom = gql(
        client,
        """mutation($a: ID!) { addSymptomEntry(account: $a, input: {text: "dizzy after lunch",
            severity: 4, snomed: "404640003"}) {
          ... on Observation { category valueString value patientReported code { code } } } }""",
        "tok-a",
        a=accounts.a,
    )["addSymptomEntry"]
    assert symptom == {
        "category": "symptom",
        "valueString": "dizzy after lunch",
        "value": 4.0,
        "patientReported": True,
        "code": {"code": "404640003"},
    }
    med = gql(
        client,
        """mutation($a: ID!) { reportMedication(account: $a, input: {name: "metformin 500 mg",
            rxnorm: "860975", taking: false, since: "2024-03-01", note: "stomach cramps"}) {
          ... on MedicationStatement { status taking since note display patientReported } } }""",
        "tok-a",
        a=accounts.a,
    )["reportMedication"]
    assert med == {
        "status": "stopped",
        "taking": False,
        "since": "2024-03-01",
        "note": "stomach cramps",
        "display": "metformin 500 mg",
        "patientReported": True,
    }
    allergy = gql(
        client,
        """mutation($a: ID!) { reportAllergy(account: $a, input: {substance: "penicillin",
            reaction: "rash", severity: "moderate"}) {
          ... on Allergy { clinicalStatus patientReported source { domainKind } } } }""",
        "tok-a",
        a=accounts.a,
    )["reportAllergy"]
    assert allergy == {
        "clinicalStatus": "active",
        "patientReported": True,
        "source": {"domainKind": "PORTAL"},
    }
    set_pref = """mutation($a: ID!, $v: String!) { setPreference(account: $a,
        input: {key: "contact_channel", value: $v}) { ... on Preference { id key value } } }"""
    first = gql(client, set_pref, "tok-a", a=accounts.a, v="sms")["setPreference"]
    second = gql(client, set_pref, "tok-a", a=accounts.a, v="email")["setPreference"]
    assert first["id"] == second["id"]
    assert second["value"] == "email"
    prefs = driver.execute_query(
        "MATCH (p:Preference)-[:ABOUT]->(:Patient {uid: $r}) RETURN p.value AS v", r=accounts.a
    ).records
    assert [p["v"] for p in prefs] == ["email"]


def test_writer_reports_changes_for_the_change_feed(
    driver: neo4j.Driver, accounts: Accounts
) -> None:
    seen: list[dict[str, set[str]]] = []
    writer = PortalWriter(
        driver, Principal(accounts.a, Role.PATIENT, account=accounts.a), on_changes=seen.append
    )
    done = writer.record_measurement(accounts.a, metric="heart-rate", value=72)
    assert done.changes == {accounts.a: {"Observation"}}
    assert seen == [done.changes]
    with pytest.raises(AccessDeniedError):
        writer.record_measurement(accounts.b, metric="heart-rate", value=72)
    assert len(seen) == 1


def test_virtual_ehr_shows_patient_reported_data_and_posts(
    client: TestClient, accounts: Accounts
) -> None:
    query = """query($id: ID!) { patient(id: $id) { ... on Patient {
        medicationStatements { display taking patientReported source { domainKind } }
        preferences { key value }
        documents { kind text community thread author patientReported source { domainKind } }
    } } }"""
    patient = gql(client, query, "tok-doc", id=accounts.person)["patient"]
    assert {
        "display": "metformin 500 mg",
        "taking": True,
        "patientReported": True,
        "source": {"domainKind": "PORTAL"},
    } in patient["medicationStatements"]
    posts = [d for d in patient["documents"] if d["kind"] == "post"]
    assert posts == [
        {
            "kind": "post",
            "text": "Metformin gives me stomach cramps. Does it get better?",
            "community": accounts.community_name,
            "thread": "t1",
            "author": "ann_l",
            "patientReported": True,
            "source": {"domainKind": "SOCIAL_CHANNEL"},
        }
    ]
