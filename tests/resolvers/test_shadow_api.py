"""GraphQL of the digital shadow through the real app: trends against the graph's own numbers,
the population view, data requests per domain, who may do what. Expected values come from
Cypher over the same graph."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import neo4j
import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import ApiSettings, Settings, ShadowSettings
from tests.conftest import ShadowWorld, graphql_request

TOKENS = {"t-doc": "clinician:dr-api", "t-int": "integrator", "t-term": "terminologist"}

TRENDS = """
query($id: ID!, $metrics: [String!], $window: TrendWindow!) { patient(id: $id) {
  ... on Patient { shadow { trends(metrics: $metrics, window: $window) {
    metric unit window since until readings mean min max stddev slopePerDay direction
    baselineMean baselineReadings deltaFromBaseline sources points { at value count sourceDomain }
} } } } }
"""


@pytest.fixture(scope="module")
def client(
    settings: Settings, driver: neo4j.Driver, shadow_world: ShadowWorld
) -> Iterator[TestClient]:
    tuned = settings.model_copy(
        update={
            "api": ApiSettings(tokens=TOKENS, anonymous_role="none"),
            "shadow": ShadowSettings(
                clock=datetime.fromtimestamp(shadow_world.as_of, UTC), watch=False
            ),
        }
    )
    with TestClient(create_app(tuned, driver=driver)) as c:
        yield c


def _rows(driver: neo4j.Driver, query: str, **params: Any) -> list[dict[str, Any]]:
    records, _, _ = driver.execute_query(query, params)
    return [dict(r) for r in records]


def test_heart_rate_trend_matches_the_graph(
    client: TestClient, driver: neo4j.Driver, shadow_world: ShadowWorld
) -> None:
    person = shadow_world.persons[0]
    body = graphql_request(
        client, TRENDS, "t-doc", id=person, metrics=["heart_rate"], window="DAYS_30"
    )
    [trend] = body["data"]["patient"]["shadow"]["trends"]
    since, until = shadow_world.as_of - 30 * 86_400, shadow_world.as_of
    # every heart-rate reading of the window, from the devices' buckets and the clinics' facts
    device = _rows(
        driver,
        "MATCH (:Person {uid: $p})<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(s:ReadingSeries "
        "{code: '8867-4'})<-[:IN_SERIES]-(b:ReadingBucket) "
        "WHERE b.start >= $lo AND b.start < $hi "
        "RETURN sum(b.count) AS n, sum(b.sum) AS total, min(b.min) AS lo, max(b.max) AS hi",
        p=person,
        lo=since - since % 86_400,
        hi=until,
    )[0]
    clinic = _rows(
        driver,
        "MATCH (:Person {uid: $p})<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(o:Observation)"
        "-[:CODED_AS]->(:Concept {uid: 'http://loinc.org|8867-4'}) "
        "WHERE o.date >= $since AND o.date < $until RETURN o.value AS v",
        p=person,
        since=datetime.fromtimestamp(since, UTC),
        until=datetime.fromtimestamp(until, UTC),
    )
    n = int(device["n"] or 0) + len(clinic)
    assert trend["readings"] == n
    total = float(device["total"] or 0) + math.fsum(r["v"] for r in clinic)
    assert trend["mean"] == pytest.approx(total / n)
    assert trend["unit"] == "/min"
    assert shadow_world.domain in trend["sources"]
    assert sum(p["count"] for p in trend["points"]) == n
    # the points are daily aggregates of the window, oldest first
    times = [p["at"] for p in trend["points"]]
    assert times == sorted(times)
    assert trend["direction"] in {"rising", "falling", "stable"}
    assert trend["slopePerDay"] is not None


def test_bad_trend_arguments_are_named(client: TestClient, shadow_world: ShadowWorld) -> None:
    body = graphql_request(
        client, TRENDS, "t-doc", id=shadow_world.persons[0], metrics=["pulse"], window="YEAR"
    )
    message = body["errors"][0]["message"]
    assert message.startswith("unknown metric(s) pulse; known: ")
    assert "heart_rate" in message


def test_population_view_counts_every_patient_of_the_organisation(
    client: TestClient, driver: neo4j.Driver
) -> None:
    [busiest] = _rows(
        driver,
        "MATCH (d:Domain {kind: 'MIS'})<-[:IN_DOMAIN]-(:Patient)-[:RECORD_OF]->(p:Person) "
        "RETURN d.uid AS d, count(DISTINCT p) AS n ORDER BY n DESC, d LIMIT 1",
    )
    query = """query($d: ID!) { population(domain: $d, first: 1000) { persons openGaps
      openRequests tiers { tier count } openAlerts { severity count }
      patients { personId tier reasons ascvd10 openAlerts openRequests } } }"""
    view = graphql_request(client, query, "t-doc", d=busiest["d"])["data"]["population"]
    assert view["persons"] == busiest["n"] == len(view["patients"])
    assert sum(t["count"] for t in view["tiers"]) == busiest["n"]
    requests = _rows(
        driver,
        "MATCH (:Domain {uid: $d})<-[:IN_DOMAIN]-(:Patient)-[:RECORD_OF]->(p:Person) "
        "WITH DISTINCT p MATCH (q:DataRequest {status: 'open'})-[:FOR_PERSON]->(p) "
        "RETURN count(q) AS n",
        d=busiest["d"],
    )[0]["n"]
    assert view["openRequests"] == requests
    # highest tier first; every patient placed says why (unless simply low)
    order = ["high", "moderate", "low", "unknown"]
    tiers = [order.index(p["tier"]) for p in view["patients"]]
    assert tiers == sorted(tiers)
    assert all(p["reasons"] for p in view["patients"] if p["tier"] != "low")
    denied = graphql_request(client, query, "t-int", d=busiest["d"])
    assert denied["errors"][0]["message"] == "not allowed: read_population"


def test_domains_read_what_is_asked_of_them_but_not_the_record(
    client: TestClient, driver: neo4j.Driver
) -> None:
    [asked] = _rows(
        driver,
        "MATCH (q:DataRequest {status: 'open'}) UNWIND q.domains AS d "
        "RETURN d, count(q) AS n ORDER BY n DESC, d LIMIT 1",
    )
    query = """query($d: ID!) { dataRequests(domain: $d, first: 1000) {
      id personId need display reasons domains status } }"""
    rows = graphql_request(client, query, "t-int", d=asked["d"])["data"]["dataRequests"]
    assert len(rows) == min(asked["n"], 1000)
    assert all(asked["d"] in r["domains"] and r["status"] == "open" for r in rows)
    patient = """query($id: ID!) { patient(id: $id) { ... on Patient { shadow {
      dataRequests { need } } } ... on AccessDenied { message } } }"""
    body = graphql_request(client, patient, "t-int", id=rows[0]["personId"])
    assert body["data"]["patient"] == {"message": "not allowed: read_patient"}
    assert graphql_request(client, query, "t-term", d=asked["d"])["errors"][0]["message"] == (
        "not allowed: read_data_requests"
    )


def test_alert_transitions_are_checked(
    client: TestClient, driver: neo4j.Driver, shadow_world: ShadowWorld
) -> None:
    uid = f"alert:test-{uuid.uuid4().hex[:8]}"
    driver.execute_query(
        "MATCH (p:Person {uid: $p}) CREATE (a:Alert {uid: $uid, state: 'open', rule: 'news2', "
        "key: '', severity: 'medium', title: 't', trail: [], occurrences: 1, updatedAt: "
        "datetime()})-[:FOR_PERSON]->(p)",
        p=shadow_world.persons[0],
        uid=uid,
    )
    try:
        resolve = "mutation($id: ID!) { resolveAlert(id: $id, note: $n) { id state } }"
        resolve = resolve.replace("$id: ID!)", "$id: ID!, $n: String)")
        ack = "mutation($id: ID!) { acknowledgeAlert(id: $id) { id state } }"
        missing = graphql_request(client, resolve, "t-doc", id="alert:nope", n=None)
        assert missing["errors"][0]["message"] == "no alert 'alert:nope'"
        done = graphql_request(client, resolve, "t-doc", id=uid, n="seen at the visit")
        assert done["data"]["resolveAlert"] == {"id": uid, "state": "resolved"}
        # resolved is final: neither acknowledged nor resolved again
        for mutation in (ack, resolve):
            again = graphql_request(client, mutation, "t-doc", id=uid, n=None)
            assert again["errors"][0]["message"].startswith(f"alert {uid!r} is resolved: ")
        [trail] = _rows(driver, "MATCH (a:Alert {uid: $uid}) RETURN a.trail AS t", uid=uid)
        assert [json.loads(t)["actor"] for t in trail["t"]] == ["dr-api"]
    finally:
        driver.execute_query("MATCH (a:Alert {uid: $uid}) DETACH DELETE a", uid=uid)
