"""The virtual EHR over GraphQL, against the real Neo4j loaded with the split Synthea sample."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import pytest
from starlette.testclient import TestClient

from access.policy import Principal, Role
from app.pipeline import LoadReport
from app.server import create_app
from app.settings import Settings
from resolvers.context import Context
from resolvers.schema import build_schema
from tests.conftest import graphql_request

EXAMPLES = Path(__file__).resolve().parents[2] / "resolvers" / "examples"

DONE_WHEN = """{ patients(first: 5) { edges { node { id name conditions {
  code { display } source { domain } } } } } }"""

FULL_RECORD = (EXAMPLES / "full_record.graphql").read_text()


@pytest.fixture(scope="module")
def client(
    settings: Settings, loaded_sample: LoadReport, driver: neo4j.Driver
) -> Iterator[TestClient]:
    tuned = settings.model_copy(
        update={
            "api": settings.api.model_copy(
                update={"tokens": {"s3cret": "clinician", "nope": "none"}}
            )
        }
    )
    with TestClient(create_app(tuned, driver=driver)) as c:
        yield c


def gql(
    client: TestClient, query: str, token: str | None = None, **variables: Any
) -> dict[str, Any]:
    return graphql_request(client, query, token, **variables)


def _multi_domain_person(driver: neo4j.Driver, *, fewest: bool) -> str:
    records, _, _ = driver.execute_query(
        "MATCH (p:Person)<-[:RECORD_OF]-(r:Patient)<-[:ABOUT]-(f) "
        "WITH p, count(DISTINCT r) AS recs, count(f) AS facts WHERE recs >= 2 "
        f"RETURN p.uid AS uid ORDER BY facts {'ASC' if fewest else 'DESC'} LIMIT 1"
    )
    return str(records[0]["uid"])


def test_done_when_query_returns_data_from_several_domains(client: TestClient) -> None:
    body = gql(client, DONE_WHEN)
    assert "errors" not in body
    edges = body["data"]["patients"]["edges"]
    assert len(edges) == 5
    domains = {c["source"]["domain"] for e in edges for c in e["node"]["conditions"]}
    assert len(domains) >= 2
    assert all(c["code"]["display"] for e in edges for c in e["node"]["conditions"])


def test_full_record_spans_domains_with_provenance(
    client: TestClient, driver: neo4j.Driver
) -> None:
    uid = _multi_domain_person(driver, fewest=False)
    body = gql(client, FULL_RECORD, id=uid)
    assert "errors" not in body, body
    p = body["data"]["patient"]
    assert p["__typename"] == "Patient"
    records, _, _ = driver.execute_query(
        "MATCH (:Person {uid: $uid})<-[:RECORD_OF]-(r:Patient)-[:IN_DOMAIN]->(d) "
        "RETURN collect(d.name) AS names, collect(r.recordId) AS ids",
        uid=uid,
    )
    assert sorted(d["name"] for d in p["domains"]) == sorted(records[0]["names"])
    assert {d["recordId"] for d in p["domains"]} == set(records[0]["ids"])
    assert len({c["source"]["domain"] for c in p["encounters"]}) >= 2
    # Each local record brings its own MRN identifier; the national id is shared.
    assert len([i for i in p["identifiers"] if "mrn" in i["system"]]) == len(p["domains"])
    conditions, _, _ = driver.execute_query(
        "MATCH (:Person {uid: $uid})<-[:RECORD_OF]-()<-[:ABOUT]-(c:Condition) RETURN count(c) AS n",
        uid=uid,
    )
    assert len(p["conditions"]) == conditions[0]["n"]
    dates = [e["node"]["date"] for e in p["timeline"]["edges"]]
    assert dates == sorted(dates, reverse=True)


def test_round_trips_do_not_grow_with_record_size(driver: neo4j.Driver) -> None:
    """One Cypher round trip per requested field kind, however many facts the record has."""
    schema = build_schema()
    counts: dict[bool, tuple[int, int]] = {}
    for fewest in (True, False):
        uid = _multi_domain_person(driver, fewest=fewest)
        context = Context.for_principal(driver, Principal("test", Role.CLINICIAN))
        result = asyncio.run(
            schema.execute(FULL_RECORD, variable_values={"id": uid}, context_value=context)
        )
        assert result.errors is None
        data = result.data or {}
        facts = sum(len(v) for v in data["patient"].values() if isinstance(v, list))
        counts[fewest] = (context.access.round_trips, facts)
    small, large = counts[True], counts[False]
    assert large[1] > small[1]  # the second record really is bigger
    # consent decision + person + records (shared by domains and identifiers) + 7 fact lists
    # + observations + timeline
    assert small[0] == large[0] == 12


def test_observations_filter_and_keyset_pagination(
    client: TestClient, driver: neo4j.Driver
) -> None:
    uid = _multi_domain_person(driver, fewest=False)
    q = """query($id: ID!, $after: String) { patient(id: $id) { ... on Patient {
      observations(code: "8480-6", first: 3, after: $after) {
        edges { cursor node { id date value unit code { code } } } pageInfo { hasNextPage endCursor } } } } }"""
    seen: list[str] = []
    after = None
    for _ in range(3):
        page = gql(client, q, id=uid, after=after)["data"]["patient"]["observations"]
        nodes = [e["node"] for e in page["edges"]]
        assert all(n["code"]["code"] == "8480-6" and n["unit"] == "mm[Hg]" for n in nodes)
        seen += [n["id"] for n in nodes]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) >= 3


def test_search_by_family_name(client: TestClient, driver: neo4j.Driver) -> None:
    records, _, _ = driver.execute_query(
        "MATCH (p:Person) WHERE p.family IS NOT NULL RETURN p.family AS f, p.uid AS uid LIMIT 1"
    )
    family, uid = records[0]["f"], records[0]["uid"]
    body = gql(
        client,
        "query($q: String) { patients(search: $q) { totalCount edges { node { id } } } }",
        q=family[:4],
    )
    assert uid in {e["node"]["id"] for e in body["data"]["patients"]["edges"]}
    # Lucene syntax in user input is escaped, not interpreted.
    body = gql(client, 'query { patients(search: "*) OR name:(") { totalCount } }')
    assert "errors" not in body


def test_not_found_and_access_denied_are_typed_results(client: TestClient) -> None:
    q = 'query { patient(id: "nid:000-00-0000") { __typename ... on PatientNotFound { message } ... on AccessDenied { message } } }'
    # an id no person has is answered like a person one may not see: existence is not told
    assert gql(client, q)["data"]["patient"]["__typename"] == "AccessDenied"
    assert gql(client, q, token="s3cret")["data"]["patient"]["__typename"] == "AccessDenied"
    denied = gql(client, q, token="nope")["data"]["patient"]
    assert denied["__typename"] == "AccessDenied"
    unknown = gql(client, q, token="forged")["data"]["patient"]
    assert unknown["__typename"] == "AccessDenied"
    body = gql(client, "{ patients { edges { node { id } } } }", token="nope")
    assert body["data"] is None
    assert "not allowed" in body["errors"][0]["message"]


def test_limits_reject_abusive_queries(client: TestClient) -> None:
    aliases = (
        "{ " + " ".join(f"a{i}: patients(first: 1) {{ totalCount }}" for i in range(20)) + " }"
    )
    assert "errors" in gql(client, aliases)
    deep = "{ patients { edges { node { " * 4 + "id" + " } } }" * 4 + " }"
    body = gql(client, deep)
    assert "errors" in body
    body = gql(client, "{ patients(first: 1000) { totalCount } }")
    assert "between 1 and 100" in body["errors"][0]["message"]
    # shallow, short, few aliases, but 100 patients x 500 observations: refused before it runs
    wide = "{ patients(first: 100) { edges { node { observations(first: 500) { edges { node { id } } } } } } }"
    body = gql(client, wide)
    assert body["data"] is None
    assert "query cost 21004101 exceeds the limit of 250000" in body["errors"][0]["message"]


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "neo4j": "up"}
