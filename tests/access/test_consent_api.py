"""Consent, break-glass, the open API for apps and the audit trail, through the real app.

Flows a patient, a practitioner, a steward and a third-party app go through: a revocation
takes effect on the next request; break-glass is time-limited and flagged; the OAuth
authorisation-code flow with PKCE (RFC 7636) gives an app a token limited to the approving
patient and scopes, revoked with the approval; the audit trail records reads with who, what,
purpose and outcome, is readable by the patient and stewards only, and detects a changed row.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import neo4j
import pytest
from starlette.testclient import TestClient

from access.tokens import Authenticator
from app.server import create_app
from app.settings import ApiSettings, Settings
from graph import consent as store
from tests.conftest import graphql_request

pytestmark = pytest.mark.usefixtures("loaded_sample")

RECORD = "query($id: ID!) { patient(id: $id) { __typename ... on Patient { id conditions { id } "
RECORD += "withheldCategories } ... on AccessDenied { message } } }"
GRANT = """mutation($p: ID!, $i: GrantInput!) { grantAccess(patientId: $p, input: $i) {
  id kind granteeType grantee categories excluded purposes status } }"""
RESTRICT = """mutation($p: ID!, $i: RestrictInput!) { restrictAccess(patientId: $p, input: $i) {
  id kind categories } }"""
REVOKE = """mutation($p: ID!, $c: ID!) { revokeConsent(patientId: $p, consentId: $c) {
  id status revokedBy } }"""
CONSENTS = "query($p: ID!) { consents(patientId: $p) { id kind status granteeType } }"
LOG = """query($p: ID!) { accessLog(patientId: $p, first: 200) {
  seq actor role organisation app action what purpose outcome reason basis breakGlass } }"""
GLASS = """mutation($p: ID!, $r: String!) { breakGlass(patientId: $p, reason: $r) {
  id breakGlass start end reason } }"""
EPISODES = "query { breakGlassEpisodes { id personId reviewedAt } }"
REVIEW = "mutation($c: ID!) { reviewBreakGlass(consentId: $c) { id reviewedAt reviewedBy } }"
REGISTER = """mutation($i: AppInput!) { registerApp(input: $i) { clientId name scopes } }"""
APPROVE = """mutation($p: ID!, $c: String!, $s: String!, $r: String!, $ch: String!, $st: String) {
  approveApp(patientId: $p, clientId: $c, scope: $s, redirectUri: $r, codeChallenge: $ch,
             state: $st) { redirectTo } }"""


@dataclass
class Actors:
    client: TestClient
    auth: Authenticator
    x: str
    org_a: str
    org_b: str
    patient: str
    dr_a: str
    dr_b: str
    steward: str

    def gql(self, query: str, token: str | None, **variables: Any) -> dict[str, Any]:
        return graphql_request(self.client, query, token, **variables)

    def ok(self, query: str, token: str | None, **variables: Any) -> dict[str, Any]:
        body = self.gql(query, token, **variables)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture(scope="module")
def actors(settings: Settings, driver: neo4j.Driver) -> Iterator[Actors]:
    tuned = settings.model_copy(update={"api": ApiSettings(anonymous_role="none")})
    rows, _, _ = driver.execute_query(
        """
        MATCH (p:Person)<-[:RECORD_OF]-(:Patient)-[:IN_DOMAIN]->(d:Domain {kind: 'MIS'})
        WITH p, collect(d.uid)[0] AS org ORDER BY p.uid DESC LIMIT 1
        MATCH (b:Domain {kind: 'MIS'})
        WHERE NOT EXISTS { (b)<-[:IN_DOMAIN]-(:Patient)-[:RECORD_OF]->(p) }
        RETURN p.uid AS x, org, b.uid AS org_b LIMIT 1
        """
    )
    x, org_a, org_b = rows[0]["x"], rows[0]["org"], rows[0]["org_b"]
    with TestClient(create_app(tuned, driver=driver)) as client:
        auth: Authenticator = client.app.state.auth  # type: ignore[attr-defined]
        yield Actors(
            client=client,
            auth=auth,
            x=x,
            org_a=org_a,
            org_b=org_b,
            patient=auth.issue(subject="pat-x", role="patient", patient=x),
            dr_a=auth.issue(subject="dr-a", role="practitioner", organisation=org_a),
            dr_b=auth.issue(subject="dr-b", role="practitioner", organisation=org_b),
            steward=auth.issue(subject="steward-1", role="steward"),
        )
    driver.execute_query("MATCH (c:Consent {person: $x}) DETACH DELETE c", x=x)
    driver.execute_query("MATCH (a:App) WHERE a.name STARTS WITH 'Test ' DETACH DELETE a")


def _typename(a: Actors, token: str) -> str:
    return str(a.ok(RECORD, token, id=a.x)["patient"]["__typename"])


def test_patient_grants_restricts_and_revokes_effective_on_the_next_request(
    actors: Actors,
) -> None:
    a = actors
    closed = a.ok(RESTRICT, a.patient, p=a.x, i={"granteeType": "everyone", "categories": ["all"]})[
        "restrictAccess"
    ]
    assert _typename(a, a.dr_a) == "AccessDenied"
    grant = a.ok(
        GRANT,
        a.patient,
        p=a.x,
        i={"granteeType": "organisation", "grantee": a.org_b, "excluded": ["mental-health"]},
    )["grantAccess"]
    assert (grant["kind"], grant["categories"], grant["excluded"], grant["purposes"]) == (
        "permit",
        ["all"],
        ["mental-health"],
        ["treatment"],
    )
    seen = a.ok(RECORD, a.dr_b, id=a.x)["patient"]
    assert seen["__typename"] == "Patient"
    assert "mental-health" in seen["withheldCategories"]  # what may be withheld, not whether
    assert _typename(a, a.dr_a) == "AccessDenied"
    revoked = a.ok(REVOKE, a.patient, p=a.x, c=grant["id"])["revokeConsent"]
    assert (revoked["status"], revoked["revokedBy"]) == ("revoked", "pat-x")
    assert _typename(a, a.dr_b) == "AccessDenied"  # the very next request
    a.ok(REVOKE, a.patient, p=a.x, c=closed["id"])
    assert _typename(a, a.dr_a) == "Patient"
    states = {c["id"]: c["status"] for c in a.ok(CONSENTS, a.patient, p=a.x)["consents"]}
    assert states[grant["id"]] == states[closed["id"]] == "revoked"  # history kept


def test_only_the_patient_manages_their_consent_and_inputs_are_checked(actors: Actors) -> None:
    a = actors
    for token in (a.dr_a, a.steward, a.auth.issue(subject="p2", role="patient", patient="x")):
        body = a.gql(RESTRICT, token, p=a.x, i={"categories": ["all"]})
        assert body["data"] is None
        assert "not allowed" in body["errors"][0]["message"]
    for i, words in (
        ({"granteeType": "organisation", "grantee": "mis:nowhere"}, "no organisation"),
        ({"granteeType": "spaceship", "grantee": "x"}, "unknown grantee type"),
        ({"granteeType": "everyone", "categories": ["gossip"]}, "unknown data category"),
        ({"granteeType": "everyone", "purposes": ["marketing"]}, "cannot be granted"),
        (
            {
                "granteeType": "everyone",
                "start": "2026-02-01T00:00:00Z",
                "end": "2026-01-01T00:00:00Z",
            },
            "ends before it starts",
        ),
    ):
        body = a.gql(GRANT, a.patient, p=a.x, i=i)
        assert words in body["errors"][0]["message"], (i, body)
    body = a.gql(CONSENTS, a.dr_a, p=a.x)
    assert "not allowed: review_access" in body["errors"][0]["message"]


def test_break_glass_is_time_limited_flagged_and_reviewed(
    actors: Actors, settings: Settings
) -> None:
    a = actors
    closed = a.ok(RESTRICT, a.patient, p=a.x, i={"categories": ["all"]})["restrictAccess"]
    assert _typename(a, a.dr_b) == "AccessDenied"
    short = a.gql(GLASS, a.dr_b, p=a.x, r="ER")
    assert "reason of at least" in short["errors"][0]["message"]
    assert (
        "not allowed: break_glass"
        in a.gql(GLASS, a.steward, p=a.x, r="x" * 20)["errors"][0]["message"]
    )
    glass = a.ok(GLASS, a.dr_b, p=a.x, r="unconscious in the emergency department")["breakGlass"]
    start, end = (datetime.fromisoformat(glass[k]) for k in ("start", "end"))
    assert (end - start).total_seconds() == settings.auth.break_glass_minutes * 60
    assert _typename(a, a.dr_b) == "Patient"
    assert _typename(a, a.dr_a) == "AccessDenied"  # only for the practitioner who broke it
    log = a.ok(LOG, a.patient, p=a.x)["accessLog"]
    flagged = [e for e in log if e["actor"] == "dr-b" and e["breakGlass"]]
    assert {e["action"] for e in flagged} >= {"break-glass", "read"}
    assert all(e["purpose"] == "emergency" for e in flagged if e["action"] == "read")
    episodes = a.ok(EPISODES, a.steward)["breakGlassEpisodes"]
    assert glass["id"] in {e["id"] for e in episodes}
    reviewed = a.ok(REVIEW, a.steward, c=glass["id"])["reviewBreakGlass"]
    assert reviewed["reviewedBy"] == "steward-1"
    assert glass["id"] not in {e["id"] for e in a.ok(EPISODES, a.steward)["breakGlassEpisodes"]}
    a.ok(REVOKE, a.patient, p=a.x, c=glass["id"])
    a.ok(REVOKE, a.patient, p=a.x, c=closed["id"])


def test_access_log_records_reads_and_denials_and_is_access_controlled(
    actors: Actors, driver: neo4j.Driver
) -> None:
    a = actors
    hide = a.ok(RESTRICT, a.patient, p=a.x, i={"categories": ["mental-health"]})["restrictAccess"]
    a.ok(RECORD, a.dr_a, id=a.x)
    a.ok(REVOKE, a.patient, p=a.x, c=hide["id"])
    a.ok(RESTRICT, a.patient, p=a.x, i={"categories": ["all"]})
    a.ok(RECORD, a.dr_a, id=a.x)  # denied now
    log = a.ok(LOG, a.patient, p=a.x)["accessLog"]
    mine = [e for e in log if e["actor"] == "dr-a"]
    denied = [e for e in mine if e["outcome"] == "denied"]
    allowed = [e for e in mine if e["outcome"] == "allowed"]
    assert denied
    assert denied[0]["purpose"] == "treatment"
    assert allowed
    assert {e["organisation"] for e in mine} == {a.org_a}
    assert any("Condition" in e["what"] for e in allowed)
    assert any(e["basis"] == "implied:treatment" for e in allowed)
    assert [e["seq"] for e in log] == sorted((e["seq"] for e in log), reverse=True)
    # the patient's own reads are logged too; the log is not open to practitioners
    assert "not allowed: review_access" in a.gql(LOG, a.dr_a, p=a.x)["errors"][0]["message"]
    assert a.ok(LOG, a.steward, p=a.x)["accessLog"]
    nested = a.ok(
        "query($id: ID!) { patient(id: $id) { ... on Patient { accessLog(first: 5) { seq } } } }",
        a.patient,
        id=a.x,
    )
    assert len(nested["patient"]["accessLog"]) == 5
    for c in store.consents(driver, persons=[a.x]):
        if c["status"] == "active":
            store.revoke_consent(driver, c["uid"], person=a.x, by="test")


def test_audit_trail_is_a_hash_chain_that_detects_changes(driver: neo4j.Driver) -> None:
    checked, problems = store.verify_audit_chain(driver)
    assert checked > 0
    assert problems == []
    rows, _, _ = driver.execute_query(
        "MATCH (e:AuditEvent) RETURN e.seq AS seq, e.outcome AS outcome ORDER BY e.seq DESC LIMIT 1"
    )
    seq, outcome = rows[0]["seq"], rows[0]["outcome"]
    driver.execute_query("MATCH (e:AuditEvent {seq: $s}) SET e.outcome = 'allowed!'", s=seq)
    try:
        _, problems = store.verify_audit_chain(driver)
        assert problems == [f"event {seq}: content changed after it was written"]
    finally:
        driver.execute_query("MATCH (e:AuditEvent {seq: $s}) SET e.outcome = $o", s=seq, o=outcome)
    assert store.verify_audit_chain(driver)[1] == []


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_app_registers_patient_approves_token_is_limited_and_revocable(actors: Actors) -> None:
    a = actors
    redirect = "http://127.0.0.1:9/callback"
    scopes = ["patient/Patient.read", "patient/Observation.rs?category=vital-signs"]
    app = a.ok(
        REGISTER, a.dr_a, i={"name": "Test BP diary", "redirectUris": [redirect], "scopes": scopes}
    )["registerApp"]
    bad = a.gql(
        REGISTER,
        a.dr_a,
        i={"name": "Test W", "redirectUris": [redirect], "scopes": ["patient/Observation.write"]},
    )
    assert "not of the form" in bad["errors"][0]["message"]
    plain_http = a.gql(
        REGISTER,
        a.dr_a,
        i={"name": "Test H", "redirectUris": ["http://evil.example/cb"], "scopes": scopes},
    )
    assert "must be https" in plain_http["errors"][0]["message"]
    # the authorize endpoint hands the browser to the approval page
    start = a.client.get(
        "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": app["clientId"],
            "redirect_uri": redirect,
            "scope": " ".join(scopes),
            "state": "s1",
            "code_challenge": "c",
            "code_challenge_method": "S256",
        },
        follow_redirects=False,
    )
    assert start.status_code == 302
    assert start.headers["location"].startswith("/ui/#/authorize?")
    verifier, challenge = _pkce()
    other = a.auth.issue(subject="p2", role="patient", patient="person:other")
    assert (
        "not allowed"
        in a.gql(
            APPROVE, other, p=a.x, c=app["clientId"], s=" ".join(scopes), r=redirect, ch=challenge
        )["errors"][0]["message"]
    )
    to = a.ok(
        APPROVE,
        a.patient,
        p=a.x,
        c=app["clientId"],
        s=" ".join(scopes),
        r=redirect,
        ch=challenge,
        st="s1",
    )["approveApp"]["redirectTo"]
    query = parse_qs(urlsplit(to).query)
    assert to.startswith(redirect)
    assert query["state"] == ["s1"]
    code = query["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": app["clientId"],
        "redirect_uri": redirect,
        "code_verifier": "wrong" * 10,
    }
    assert a.client.post("/oauth/token", data=form).json()["error"] == "invalid_grant"
    # a failed exchange used the code up: approve again for a fresh one
    verifier, challenge = _pkce()
    to = a.ok(
        APPROVE, a.patient, p=a.x, c=app["clientId"], s=" ".join(scopes), r=redirect, ch=challenge
    )["approveApp"]["redirectTo"]
    form |= {"code": parse_qs(urlsplit(to).query)["code"][0], "code_verifier": verifier}
    issued = a.client.post("/oauth/token", data=form)
    assert issued.status_code == 200, issued.text
    token = issued.json()
    assert (token["token_type"], token["patient"], token["scope"]) == (
        "Bearer",
        a.x,
        " ".join(scopes),
    )
    assert a.client.post("/oauth/token", data=form).json()["error"] == "invalid_grant"  # one use
    app_token = token["access_token"]
    me = a.ok("{ me { role app patientId scopes } }", app_token)["me"]
    assert (me["role"], me["app"], me["patientId"]) == ("app", app["clientId"], a.x)
    seen = a.ok(
        "query($id: ID!) { patient(id: $id) { __typename ... on Patient { conditions { id } "
        "observations(first: 200) { edges { node { category } } } } } }",
        app_token,
        id=a.x,
    )["patient"]
    assert seen["conditions"] == []
    assert {e["node"]["category"] for e in seen["observations"]["edges"]} <= {"vital-signs"}
    other_person = a.ok("{ patients(first: 1) { edges { node { id } } } }", a.dr_a)["patients"][
        "edges"
    ][0]["node"]["id"]
    if other_person != a.x:
        assert _typename(a, app_token) == "Patient"
        assert a.ok(RECORD, app_token, id=other_person)["patient"]["__typename"] == "AccessDenied"
    approval = next(
        c
        for c in a.ok(CONSENTS, a.patient, p=a.x)["consents"]
        if c["granteeType"] == "app" and c["status"] == "active"
    )
    a.ok(REVOKE, a.patient, p=a.x, c=approval["id"])
    assert _typename(a, app_token) == "AccessDenied"  # the token is dead on the next request
