"""GraphQL of drug safety through the real app: list checks, the medication review, what-if,
who may call what, and bad requests. Expected values come from the service over the same
graph."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import neo4j
import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import ApiSettings, Settings
from drugs.service import DrugSafety
from shadow.service import ShadowService
from tests.conftest import MedWorld, graphql_request

TOKENS = {"t-doc": "clinician:dr-drugs", "t-int": "integrator", "t-term": "terminologist"}

REVIEW = """
query($id: ID!) { patient(id: $id) { ... on Patient { medicationReview {
  activeCount knowledge unresolved counts { interrupt review info }
  context { age egfr pregnant }
  items { key display active resolved conflicts sources { domain status strength patientReported } }
  findings { kind severity baseSeverity priority title items drugs evidence sourceLevel
             management via rules also sources }
} } } }
"""

CHECK = """
query($drugs: [String!]!) { interactions(drugs: $drugs) {
  unresolved items { key } findings { kind severity priority title interaction }
  literature { sentence type }
} }
"""

WHAT_IF = """
query($id: ID!, $drug: String!) { checkPrescription(patientId: $id, drug: $drug) {
  items { key proposed } findings { title items severity }
} }
"""


@pytest.fixture(scope="module")
def client(settings: Settings, driver: neo4j.Driver, drug_knowledge: Any) -> Iterator[TestClient]:
    tuned = settings.model_copy(update={"api": ApiSettings(tokens=TOKENS, anonymous_role="none")})
    with TestClient(create_app(tuned, driver=driver)) as c:
        yield c


def test_medication_review_matches_the_service(
    client: TestClient, driver: neo4j.Driver, med_world: MedWorld
) -> None:
    body = graphql_request(client, REVIEW, "t-doc", id=med_world.person)
    assert "errors" not in body, body
    got = body["data"]["patient"]["medicationReview"]
    expected = DrugSafety(driver, shadow=ShadowService(driver)).review(
        med_world.person, int(time.time())
    )
    assert [i["key"] for i in got["items"]] == [i.key for i in expected.items]
    assert [f["title"] for f in got["findings"]] == [f.title for f in expected.findings]
    assert got["counts"]["interrupt"] == sum(f.priority == "interrupt" for f in expected.findings)
    assert got["unresolved"] == [med_world.unknown]
    added = next(
        f for f in got["findings"] if set(f["items"]) == {med_world.added, med_world.partner}
    )
    assert med_world.portal in added["sources"]
    assert got["context"]["age"] > 0


def test_interactions_of_a_typed_list(client: TestClient) -> None:
    body = graphql_request(client, CHECK, "t-doc", drugs=["warfarin", "aspirin", "qqzz"])
    got = body["data"]["interactions"]
    assert got["unresolved"] == ["qqzz"]
    lead = got["findings"][0]
    assert lead["severity"] == "CONTRAINDICATED"
    assert lead["priority"] == "interrupt"
    assert lead["interaction"].startswith("ansm:")


def test_what_if(client: TestClient, med_world: MedWorld) -> None:
    body = graphql_request(client, WHAT_IF, "t-doc", id=med_world.person, drug="warfarin")
    got = body["data"]["checkPrescription"]
    proposed = [i["key"] for i in got["items"] if i["proposed"]]
    assert proposed == ["warfarin#proposed"]
    assert got["findings"]
    assert all("warfarin#proposed" in f["items"] for f in got["findings"])


@pytest.mark.parametrize(
    ("token", "query", "variables", "allowed"),
    [
        ("t-term", CHECK, {"drugs": ["warfarin"]}, True),  # knowledge, no patient data
        ("t-int", CHECK, {"drugs": ["warfarin"]}, False),
        ("t-term", WHAT_IF, {"drug": "warfarin"}, False),  # patient data
        (None, CHECK, {"drugs": ["warfarin"]}, False),
    ],
)
def test_who_may_call_what(
    client: TestClient,
    med_world: MedWorld,
    token: str | None,
    query: str,
    variables: dict[str, Any],
    allowed: bool,
) -> None:
    if "$id" in query:
        variables = {**variables, "id": med_world.person}
    body = graphql_request(client, query, token, **variables)
    if allowed:
        assert "errors" not in body, body
    else:
        assert body["data"] is None
        assert body["errors"][0]["message"].startswith("not allowed:")


def test_integrator_gets_no_medication_review(client: TestClient, med_world: MedWorld) -> None:
    body = graphql_request(client, REVIEW, "t-int", id=med_world.person)
    assert body["data"]["patient"] == {"message": "not allowed: read_patient"} or (
        "medicationReview" not in str(body["data"])
    )


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [
        (CHECK, {"drugs": []}, "give at least one drug"),
        (CHECK, {"drugs": [f"drug{i}" for i in range(51)]}, "at most 50 drugs"),
        (WHAT_IF, {"drug": "zzq-unknown"}, "no drug matches 'zzq-unknown'"),
        # an unknown person is denied like a person without consent (existence not told)
        (WHAT_IF, {"drug": "warfarin", "id": "person:nobody"}, "or there is no such patient"),
    ],
)
def test_bad_requests_are_named(
    client: TestClient, med_world: MedWorld, query: str, variables: dict[str, Any], message: str
) -> None:
    variables = {"id": med_world.person, **variables} if "$id" in query else variables
    body = graphql_request(client, query, "t-doc", **variables)
    assert message in body["errors"][0]["message"]
