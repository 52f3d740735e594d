"""The master patient index over GraphQL: $match, the steward's queue and decisions, roles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import neo4j
import pytest
from starlette.testclient import TestClient

from app.pipeline import LoadReport
from app.server import create_app
from app.settings import Settings
from mpi.service import MasterIndex
from tests.conftest import graphql_request

TOKENS = {"stew": "steward", "doc": "clinician", "int": "integrator", "nope": "none"}

MATCH = """query($d: DemographicsInput!) { matchPatient(demographics: $d, limit: 3) {
  personId recordId domainId probability weight grade evidence { comparison level }
  patient { __typename ... on Patient { id family } ... on AccessDenied { message } } } }"""

QUEUE = """query($first: Int!, $after: String) {
  matchReviewQueue(status: OPEN, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id status probability evidence { comparison level }
      records { id domainId personId family given birthDate city } } } } }"""

CONFIRM = """mutation($id: ID!) { confirmMatch(id: $id, comment: "same person") {
  action candidateId personId } }"""
REJECT = """mutation($id: ID!) { rejectMatch(id: $id) { action candidateId personId } }"""
UNLINK = """mutation($r: ID!) { unlinkRecord(recordId: $r, comment: "two people") {
  action personId } }"""


@pytest.fixture(scope="module")
def client(
    settings: Settings, loaded_sample: LoadReport, driver: neo4j.Driver
) -> Iterator[TestClient]:
    tuned = settings.model_copy(update={"api": settings.api.model_copy(update={"tokens": TOKENS})})
    with TestClient(create_app(tuned, driver=driver)) as c:
        yield c


gql = graphql_request


def _a_person(driver: neo4j.Driver) -> dict[str, Any]:
    rows, _, _ = driver.execute_query(
        "MATCH (r:Patient)-[:RECORD_OF]->(p:Person) WHERE r.nationalId IS NOT NULL "
        "AND r.sourceDomain STARTS WITH 'mis:hospital' "
        "RETURN r {.*} AS r, p.uid AS person ORDER BY r.uid LIMIT 1"
    )
    return {**rows[0]["r"], "person": rows[0]["person"]}


def test_match_patient_ranks_the_person_first(client: TestClient, driver: neo4j.Driver) -> None:
    r = _a_person(driver)
    demographics = {
        "family": r["family"],
        "given": r["given"][0],
        "birthDate": r["birthDate"].iso_format(),
        "nationalId": r["nationalId"],
    }
    body = gql(client, MATCH, "doc", d=demographics)
    assert "errors" not in body, body
    best = body["data"]["matchPatient"][0]
    assert best["personId"] == r["person"]
    assert best["grade"] == "CERTAIN"
    assert best["probability"] >= 0.99
    assert {"comparison": "national_id", "level": "exact"} in best["evidence"]
    assert best["patient"] == {"__typename": "Patient", "id": r["person"], "family": r["family"]}


def test_integrator_may_match_but_not_read_the_record(
    client: TestClient, driver: neo4j.Driver
) -> None:
    r = _a_person(driver)
    body = gql(
        client,
        MATCH,
        "int",
        d={"family": r["family"], "given": r["given"][0], "birthDate": r["birthDate"].iso_format()},
    )
    assert "errors" not in body, body
    assert body["data"]["matchPatient"][0]["patient"]["__typename"] == "AccessDenied"


def test_roles_without_the_right_are_refused(client: TestClient) -> None:
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("nope", MATCH, {"d": {"family": "X"}}),
        ("doc", QUEUE, {"first": 5}),
        ("int", CONFIRM, {"id": "match:whatever"}),
        ("doc", UNLINK, {"r": "mis:x/Patient/1"}),
    ]
    for token, query, variables in cases:
        body = gql(client, query, token, **variables)
        assert body["errors"][0]["message"].startswith("not allowed"), (token, body)


def test_steward_pages_the_queue_and_confirms(
    client: TestClient,
    driver: neo4j.Driver,
    review_pair: tuple[MasterIndex, str, str, str],
) -> None:
    _, candidate, left, right = review_pair
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        page = gql(client, QUEUE, "stew", first=2, after=after)
        assert "errors" not in page, page
        queue = page["data"]["matchReviewQueue"]
        seen += [e["node"] for e in queue["edges"]]
        if not queue["pageInfo"]["hasNextPage"]:
            break
        after = queue["pageInfo"]["endCursor"]
    assert len(seen) == queue["totalCount"] == len({n["id"] for n in seen})
    item = next(n for n in seen if n["id"] == candidate)
    assert {rec["id"] for rec in item["records"]} == {left, right}
    assert len({rec["personId"] for rec in item["records"]}) == 2

    before = {rec["personId"] for rec in item["records"]}
    done = gql(client, CONFIRM, "stew", id=candidate)["data"]["confirmMatch"]
    assert done["action"] == "confirm"
    (gone,) = before - {done["personId"]}
    moved = gql(
        client,
        "query($id: ID!) { patient(id: $id) { __typename ... on PatientMerged { mergedInto } } }",
        "doc",
        id=gone,
    )["data"]["patient"]
    assert moved == {"__typename": "PatientMerged", "mergedInto": done["personId"]}
    rows, _, _ = driver.execute_query(
        "MATCH (:Patient {uid: $a})-[:RECORD_OF]->(p:Person)<-[:RECORD_OF]-(:Patient {uid: $b}) "
        "RETURN p.uid AS p",
        a=left,
        b=right,
    )
    assert rows[0]["p"] == done["personId"]
    again = gql(client, CONFIRM, "stew", id=candidate)
    assert "already confirmed" in again["errors"][0]["message"]

    split = gql(client, UNLINK, "stew", r=right)["data"]["unlinkRecord"]
    assert split["personId"] != done["personId"]
    who, _, _ = driver.execute_query(
        "MATCH (d:LinkDecision)-[:CONCERNS]->(:Patient {uid: $r}) RETURN d.action AS a, d.by AS by "
        "ORDER BY d.at",
        r=right,
    )
    assert [(w["a"], w["by"]) for w in who] == [
        ("confirm", "token:steward"),
        ("unlink", "token:steward"),
    ]


def test_steward_rejects(
    client: TestClient, review_pair: tuple[MasterIndex, str, str, str]
) -> None:
    _, candidate, _, _ = review_pair
    done = gql(client, REJECT, "stew", id=candidate)["data"]["rejectMatch"]
    assert done == {"action": "reject", "candidateId": candidate, "personId": None}
    missing = gql(client, REJECT, "stew", id="match:nope")
    assert "no match candidate" in missing["errors"][0]["message"]
