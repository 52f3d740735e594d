"""Terminology operations over GraphQL, against the real Neo4j with ICD-10 and ICD-10-CM."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import neo4j
import pytest
from starlette.testclient import TestClient

from access.policy import Principal, Role
from access.terminology import TerminologyAccess
from app.server import create_app
from app.settings import Settings
from terminology.sources import parse
from tests.conftest import graphql_request

TOKENS = {"doc": "clinician", "term": "terminologist", "nope": "none"}


@pytest.fixture(scope="module")
def client(settings: Settings, driver: neo4j.Driver) -> Iterator[TestClient]:
    TerminologyAccess.for_driver(driver, Principal("t", Role.TERMINOLOGIST)).load(
        list(parse(["icd10", "icd10cm"]))
    )
    tuned = settings.model_copy(update={"api": settings.api.model_copy(update={"tokens": TOKENS})})
    with TestClient(create_app(tuned, driver=driver)) as c:
        yield c


def gql(client: TestClient, query: str, token: str = "doc", **variables: Any) -> dict[str, Any]:
    return graphql_request(client, query, token, **variables)


LOOKUP = """query($s: String!, $c: String!) { lookup(system: $s, code: $c) {
  __typename
  ... on CodeLookup { concept { code display designations { value language use } }
                      parents { code } childrenCount versions { version status } }
  ... on ConceptNotFound { code }
  ... on AccessDenied { message } } }"""


def test_lookup_with_russian_designation(client: TestClient) -> None:
    data = gql(client, LOOKUP, s="icd10", c="E11")["data"]["lookup"]
    assert data["__typename"] == "CodeLookup"
    assert data["concept"]["display"] == "Type 2 diabetes mellitus"
    assert any(d["language"] == "ru" for d in data["concept"]["designations"])
    assert data["parents"] == [{"code": "E10-E14"}]
    assert data["childrenCount"] == 10
    assert data["versions"] == [{"version": "2019", "status": "active"}]
    missing = gql(client, LOOKUP, s="icd10", c="ZZZ")["data"]["lookup"]
    assert missing == {"__typename": "ConceptNotFound", "code": "ZZZ"}
    denied = gql(client, LOOKUP, token="nope", s="icd10", c="E11")["data"]["lookup"]
    assert denied["__typename"] == "AccessDenied"


def test_subsumes_validate_translate(client: TestClient) -> None:
    q = """{ a: subsumes(system: "icd10cm", codeA: "E11", codeB: "E11.9")
             b: subsumes(system: "icd10cm", codeA: "E11.9", codeB: "E11")
             c: subsumes(system: "icd10cm", codeA: "E11", codeB: "I10")
             v: validateCode(system: "icd10cm", code: "E11.9", display: "Asthma") {
                  result message display }
             t: translate(system: "icd10", code: "E11.9", targetSystem: "icd10cm") {
                  concept { system code } map equivalence method } }"""
    data = gql(client, q)["data"]
    assert (data["a"], data["b"], data["c"]) == ("SUBSUMES", "SUBSUMED_BY", "NOT_SUBSUMED")
    assert data["v"]["result"] is False
    assert "wrong display" in data["v"]["message"]
    assert data["t"] == [
        {
            "concept": {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"},
            "map": "icd10-who-cm-identity",
            "equivalence": "equivalent",
            "method": "identical-code",
        }
    ]


def test_expand_pages_and_russian_search(client: TestClient) -> None:
    q = """query($after: String) { expand(system: "icd10cm", under: "E11.6", first: 5,
             after: $after) { concepts { code } total hasNextPage endCursor } }"""
    codes: list[str] = []
    after = None
    while True:
        page = gql(client, q, after=after)["data"]["expand"]
        codes += [c["code"] for c in page["concepts"]]
        if not page["hasNextPage"]:
            break
        after = page["endCursor"]
    assert len(codes) == page["total"] == len(set(codes)) > 5
    assert codes == sorted(codes)
    assert "E11.65" in codes
    s = """{ searchConcepts(text: "сахарный диабет", systems: ["icd10"], language: "ru",
             first: 20) { system code display score } }"""
    found = gql(client, s)["data"]["searchConcepts"]
    assert any(c["code"] in {"E10-E14", "E11", "E10"} for c in found)
    # the app serves semantic search too (embedding models, loaded on first use); ICD-10 has
    # no embeddings in this database, so it finds nothing there, and says nothing is wrong
    semantic = gql(client, s.replace("first: 20", "first: 20, semantic: true"))
    assert "errors" not in semantic, semantic
    assert all(
        c["system"].endswith("icd10") or "icd" in c["system"]
        for c in semantic["data"]["searchConcepts"]
    )


def test_only_terminologists_load(client: TestClient) -> None:
    m = """mutation { loadCodeSystems(sources: ["ucum"]) {
             system version concepts created problems } }"""
    denied = gql(client, m, token="doc")
    assert "not allowed" in denied["errors"][0]["message"]
    first = gql(client, m, token="term")["data"]["loadCodeSystems"]
    again = gql(client, m, token="term")["data"]["loadCodeSystems"]
    assert first[0]["system"] == "http://unitsofmeasure.org"
    assert first[0]["concepts"] > 1000
    assert again[0]["created"] == 0
    unknown = gql(client, 'mutation { loadCodeSystems(sources: ["nope"]) { system } }', "term")
    assert "unknown sources" in unknown["errors"][0]["message"]
    systems = gql(client, "{ codeSystems { system version content hierarchical } }")
    assert {
        "system": "http://unitsofmeasure.org",
        "version": "2.2",
        "content": "fragment",
        "hierarchical": False,
    } in systems["data"]["codeSystems"]


def test_semantic_search_goes_through_the_context_seam(
    client: TestClient, driver: neo4j.Driver
) -> None:
    import asyncio

    from nlp.semantic import SemanticSearch, embed_concepts
    from resolvers.context import Context
    from resolvers.schema import build_schema

    gql(client, 'mutation { loadCodeSystems(sources: ["ucum"]) { system } }', "term")
    embed_concepts(driver, "minilm", system="http://unitsofmeasure.org")
    context = Context.for_principal(
        driver, Principal("doc", Role.CLINICIAN), semantic=SemanticSearch(driver)
    )
    q = """{ searchConcepts(text: "millimetre of mercury column", systems: ["ucum"],
             semantic: true, first: 3) { system code score } }"""
    result = asyncio.run(build_schema().execute(q, context_value=context))
    assert result.errors is None, result.errors
    assert result.data is not None
    found = result.data["searchConcepts"]
    assert {c["system"] for c in found} == {"http://unitsofmeasure.org"}
    assert "Hg" in found[0]["code"]  # a mercury column unit: mm[Hg], m[Hg], [in_i'Hg]
    assert {"mm[Hg]", "m[Hg]"} & {c["code"] for c in found}
    assert found[0]["score"] >= found[-1]["score"]


def test_semantic_search_without_an_index_says_so(driver: neo4j.Driver) -> None:
    """A process that serves no embeddings (no SemanticSearch in its context) answers clearly."""
    import asyncio

    from resolvers.context import Context
    from resolvers.schema import build_schema

    context = Context.for_principal(driver, Principal("t", Role.CLINICIAN))
    result = asyncio.run(
        build_schema().execute(
            '{ searchConcepts(text: "diabetes", semantic: true) { code } }',
            context_value=context,
        )
    )
    assert result.errors is not None
    assert "semantic search is not configured" in result.errors[0].message
