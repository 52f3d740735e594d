"""The workbench over GraphQL through the real app: a terminologist suggests, reviews, publishes
and exports; the virtual EHR then shows the standard code with the map's provenance; other roles
are refused before anything is read."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import neo4j
import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from terminology.conceptmap import from_sssom
from tests.conftest import MappingWorld, graphql_request

TOKENS = {"term": "terminologist:tina", "doc": "clinician", "nope": "none"}

SUGGEST = """mutation($s: String!, $w: String!) {
  suggestMappings(sourceSystem: $s, targetSystem: "loinc", workspace: $w) { codes changed } }"""
QUEUE = """query($s: String!, $w: String!) {
  mappings(sourceSystem: $s, workspace: $w, status: [UNREVIEWED], first: 3) {
    total hasNextPage endCursor
    items { id sourceCode sourceDisplay targetCode score status
            candidates { code display score method rationale features { name value } } } } }"""
REVIEW = """mutation($id: ID!, $code: String!) {
  reviewMapping(id: $id, status: APPROVED, targetCode: $code, comment: "checked") {
    id status targetCode equivalence reviewer history { action by } } }"""
PUBLISH = """mutation($s: String!, $w: String!, $n: String!) {
  publishConceptMap(sourceSystem: $s, targetSystem: "loinc", workspace: $w, name: $n) {
    name version elements links factsCoded } }"""
EXPORT = """query($n: String!) { conceptMapExport(name: $n, format: SSSOM) }"""
PROJECTS = "{ mappingProjects { workspace sourceSystem targetSystem unreviewed approved total } }"
FACT_CODES = """query($id: ID!, $code: String!) { patient(id: $id) { ... on Patient {
  observations(code: $code, first: 100) { edges { node {
    codes { system code mappedBy { map version method confidence } } } } } } } }"""


@pytest.fixture(scope="module")
def client(
    settings: Settings, mapping_world: MappingWorld, driver: neo4j.Driver
) -> Iterator[TestClient]:
    tuned = settings.model_copy(update={"api": settings.api.model_copy(update={"tokens": TOKENS})})
    with TestClient(create_app(tuned, driver=driver)) as c:
        yield c


gql = graphql_request


def test_terminologist_works_the_queue_and_publishes(
    client: TestClient, mapping_world: MappingWorld, driver: neo4j.Driver
) -> None:
    ws, name = f"gql-{uuid.uuid4().hex[:6]}", f"gql-map-{uuid.uuid4().hex[:6]}"
    system = mapping_world.lab_system
    done = gql(client, SUGGEST, "term", s=system, w=ws)
    assert "errors" not in done, done
    assert done["data"]["suggestMappings"]["changed"] == done["data"]["suggestMappings"]["codes"]
    page = gql(client, QUEUE, "term", s=system, w=ws)["data"]["mappings"]
    assert page["total"] == done["data"]["suggestMappings"]["codes"]
    assert page["hasNextPage"] is True
    first = page["items"][0]
    assert first["targetCode"] == first["candidates"][0]["code"]
    assert {f["name"] for f in first["candidates"][0]["features"]} >= {"lexical", "embedding"}

    chosen = first["candidates"][0]["code"]
    reviewed = gql(client, REVIEW, "term", id=first["id"], code=chosen)["data"]["reviewMapping"]
    assert reviewed["status"] == "APPROVED"
    assert reviewed["equivalence"] == "EQUIVALENT"
    assert reviewed["reviewer"] == "tina"
    assert [h["action"] for h in reviewed["history"]] == ["suggest", "review"]

    projects = gql(client, PROJECTS, "term")["data"]["mappingProjects"]
    mine = next(p for p in projects if p["workspace"] == ws)
    assert (mine["approved"], mine["total"]) == (1, page["total"])

    published = gql(client, PUBLISH, "term", s=system, w=ws, n=name)["data"]
    assert published["publishConceptMap"]["elements"] == 1
    assert published["publishConceptMap"]["factsCoded"] > 0
    sssom = from_sssom(gql(client, EXPORT, "term", n=name)["data"]["conceptMapExport"])
    assert [(e.source_code, e.target_code) for e in sssom.elements] == [
        (first["sourceCode"], chosen)
    ]

    # a clinician's virtual EHR shows the standard code, derived, with the map's provenance
    rows, _, _ = driver.execute_query(
        "MATCH (:Concept {uid: $local})<-[:CODED_AS]-(:Observation)-[:ABOUT]->(:Patient)"
        "-[:RECORD_OF]->(p:Person) RETURN p.uid AS person LIMIT 1",
        local=f"{system}|{first['sourceCode']}",
    )
    person = rows[0]["person"]
    body = gql(client, FACT_CODES, "doc", id=person, code=chosen)
    assert "errors" not in body, body
    mapped = [
        c
        for edge in body["data"]["patient"]["observations"]["edges"]
        for c in edge["node"]["codes"]
        if c["mappedBy"] and c["mappedBy"]["map"] == name
    ]
    assert mapped
    assert {(c["system"], c["code"], c["mappedBy"]["version"]) for c in mapped} == {
        ("http://loinc.org", chosen, "1")
    }


@pytest.mark.parametrize("token", ["doc", "nope"])
def test_other_roles_are_refused(
    client: TestClient, mapping_world: MappingWorld, token: str
) -> None:
    for query, variables in (
        (PROJECTS, {}),
        (QUEUE, {"s": mapping_world.lab_system, "w": "main"}),
        (SUGGEST, {"s": mapping_world.lab_system, "w": "x"}),
    ):
        body = gql(client, query, token, **variables)
        assert body["data"] is None
        assert body["errors"][0]["message"] == "not allowed: curate_mappings"


def test_bad_requests_say_what_is_wrong(client: TestClient, mapping_world: MappingWorld) -> None:
    body = gql(client, EXPORT, "term", n="no-such-map")
    assert body["errors"][0]["message"] == "no concept map 'no-such-map'"
    bad = gql(
        client,
        'mutation { importConceptMap(content: "{not json", format: FHIR) { name } }',
        "term",
    )
    assert "not JSON" in bad["errors"][0]["message"]
    doc = {"resourceType": "Patient"}
    wrong = gql(
        client,
        "mutation($c: String!) { importConceptMap(content: $c) { name } }",
        "term",
        c=json.dumps(doc),
    )
    assert "ConceptMap" in wrong["errors"][0]["message"]
