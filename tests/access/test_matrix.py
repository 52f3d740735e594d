"""Who sees what: every principal × consent state × query path, through the real app.

The served app (uvicorn, websockets, the change-feed dispatcher) runs on the real embedded
Neo4j with the seeded Synthea sample. One person, X, has a mental-health condition; X's consent
moves through five states, and in each every principal tries every path: the patient itself,
the patient list, name search, a code search (``patientsWithCode``: a traversal from a code to
the people who have it), nested facts (conditions, observations, timeline) and the change
subscription. What each principal may see is written out in :data:`EXPECT`, by hand, from the
policy the issue states — not computed by the code under test — and every answer is checked
against it both ways: nothing beyond it (zero unauthorised reads) and everything it grants.

Denials must not leak existence: where X is denied, the answer for X equals the answer for an
id no person has.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import neo4j
import pytest
from starlette.applications import Starlette

from access.tokens import Authenticator
from app.server import create_app
from app.settings import ApiSettings, NotifySettings, Settings, ShadowSettings
from bench.common import serve
from graph import consent as store
from graph import outbox
from tests.app.test_notify import Served, wait_until

pytestmark = pytest.mark.usefixtures("loaded_sample")

MH = re.compile(r"(?i)depress|anxiety|panic|psych|schizo|bipolar|suicid|ptsd|stress disorder")
STATES = ("none", "hide-mh", "closed+grant-b", "closed+break-glass-b", "closed+revoked-grant-b")
# What of X each principal sees, per state (in STATES order):
#   ALL everything; NO_MH everything but mental health; APP demographics and vital signs;
#   DEMO demographics only; NONE nothing (and the answer does not say whether X exists).
EXPECT: dict[str, tuple[str, ...]] = {
    "dr_a": ("ALL", "NO_MH", "NONE", "NONE", "NONE"),  # clinic holding X's record
    "dr_b": ("ALL", "NO_MH", "NO_MH", "ALL", "NONE"),  # another clinic, the grantee
    "patient_x": ("ALL",) * 5,
    "patient_y": ("NONE",) * 5,
    "app_x": ("APP",) * 5,  # approved by X for demographics + vital signs
    "steward": ("DEMO",) * 5,
    "researcher": ("NONE",) * 5,
    "terminologist": ("NONE",) * 5,
    "integrator_a": ("NONE",) * 5,  # no patient reads; hears changes like clinic A
    "anonymous": ("NONE",) * 5,
    "forged": ("NONE",) * 5,
    "expired": ("NONE",) * 5,
}
#: Change events of X reach these subscribers when their level for X is not NONE (the event
#: is of a Condition; kinds a subscriber may not see are not told).
HEARS: dict[str, tuple[bool, ...]] = {
    "dr_a": (True, True, False, False, False),
    "dr_b": (True, True, True, True, False),
    "integrator_a": (True, True, False, False, False),
}
LISTS = {"dr_a", "dr_b", "steward"}  # roles that may list and search patients
VISIBLE = {"ALL", "NO_MH", "APP", "DEMO"}
GHOST = "person:no-such-person"

PATIENT = "query($id: ID!) { patient(id: $id) { __typename ... on Patient { id } "
PATIENT += "... on AccessDenied { message } } }"
LIST = "query { patients(first: 100) { totalCount edges { node { id } } } }"
SEARCH = "query($q: String!) { patients(search: $q, first: 100) { edges { node { id } } } }"
BY_CODE = """query($s: String!, $c: String!) { patientsWithCode(system: $s, code: $c) {
  __typename ... on Patient { id } } }"""
NESTED = """query($id: ID!) { patient(id: $id) { __typename ... on Patient {
  conditions { code { code display } }
  observations(first: 500) { edges { node { category code { display } } } }
  timeline(first: 200) { edges { node { __typename } } }
} } }"""
SUBSCRIBE = "subscription { changes { personId kinds } }"


@dataclass
class World:
    url: str
    app: Starlette
    x: str
    y: str
    z: str  # a sentinel person nobody restricts
    org_a: str
    org_b: str
    x_record: str
    z_record: str
    x_family: str
    mh_code: tuple[str, str]
    conditions: int
    mh_conditions: int
    observations: int
    vitals: int
    tokens: dict[str, str | None] = field(default_factory=dict)
    app_consent: str = ""

    def gql(self, query: str, token: str | None, **variables: Any) -> dict[str, Any]:
        return Served(self.url, self.app).gql(query, token, **variables)


def _pick(driver: neo4j.Driver) -> dict[str, Any]:
    rows, _, _ = driver.execute_query(
        """
        MATCH (p:Person)<-[:RECORD_OF]-(r:Patient)-[:IN_DOMAIN]->(d:Domain {kind: 'MIS'})
        MATCH (r)<-[:ABOUT]-(c:Condition)-[:CODED_AS]->(k:Concept)
        WHERE k.display =~ '(?i).*(depress|anxiety|panic).*'
        RETURN p.uid AS x, p.family AS family, r.uid AS record, d.uid AS org,
               k.system AS system, k.code AS code
        ORDER BY p.uid LIMIT 1
        """
    )
    assert rows, "the seeded sample has a person with a mental-health condition"
    pick = dict(rows[0])
    others, _, _ = driver.execute_query(
        """
        MATCH (p:Person)<-[:RECORD_OF]-(r:Patient)-[:IN_DOMAIN]->(:Domain {kind: 'MIS'})
        WHERE p.uid <> $x
        RETURN p.uid AS uid, r.uid AS record ORDER BY p.uid LIMIT 2
        """,
        x=pick["x"],
    )
    pick["y"], pick["z"], pick["z_record"] = others[0]["uid"], others[1]["uid"], others[1]["record"]
    org_b, _, _ = driver.execute_query(
        """
        MATCH (d:Domain {kind: 'MIS'})
        WHERE NOT EXISTS { (d)<-[:IN_DOMAIN]-(:Patient)-[:RECORD_OF]->(:Person {uid: $x}) }
        RETURN d.uid AS uid ORDER BY d.uid LIMIT 1
        """,
        x=pick["x"],
    )
    pick["org_b"] = org_b[0]["uid"]
    facts, _, _ = driver.execute_query(
        """
        MATCH (:Person {uid: $x})<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(f)
        WHERE f:Condition OR (f:Observation AND NOT coalesce(f.isComponent, false))
        OPTIONAL MATCH (f)-[:CODED_AS]->(k:Concept)
        WITH f, collect(k.display) AS names
        RETURN labels(f)[0] AS label, f.category AS category, names
        """,
        x=pick["x"],
    )
    conds = [r for r in facts if r["label"] == "Condition"]
    obs = [r for r in facts if r["label"] == "Observation"]
    pick["conditions"] = len(conds)
    pick["mh_conditions"] = sum(any(MH.search(n or "") for n in r["names"]) for r in conds)
    pick["observations"] = len(obs)
    pick["vitals"] = sum(r["category"] == "vital-signs" for r in obs)
    return pick


@pytest.fixture(scope="module")
def world(settings: Settings, driver: neo4j.Driver) -> Iterator[World]:
    tuned = settings.model_copy(
        update={
            "api": ApiSettings(anonymous_role="none"),
            "notify": NotifySettings(poll_interval_s=0.05, attach_interval_s=0.5),
            "shadow": ShadowSettings(watch=False),
        }
    )
    app = create_app(tuned, driver=driver)
    with serve(app) as url:
        yield from _world(driver, app, url)
    driver.execute_query(
        "MATCH (c:Consent) WHERE c.createdBy STARTS WITH 'test-matrix' DETACH DELETE c"
    )
    driver.execute_query("MATCH (a:App {uid: 'app-matrix'}) DETACH DELETE a")


def _world(driver: neo4j.Driver, app: Starlette, url: str) -> Iterator[World]:
    p = _pick(driver)
    w = World(
        url=url,
        app=app,
        x=p["x"],
        y=p["y"],
        z=p["z"],
        org_a=p["org"],
        org_b=p["org_b"],
        x_record=p["record"],
        z_record=p["z_record"],
        x_family=p["family"],
        mh_code=(p["system"], p["code"]),
        conditions=p["conditions"],
        mh_conditions=p["mh_conditions"],
        observations=p["observations"],
        vitals=p["vitals"],
    )
    assert w.mh_conditions > 0
    auth: Authenticator = app.state.auth
    app_row = store.write_app(
        driver,
        {
            "uid": "app-matrix",
            "name": "Matrix app",
            "redirectUris": ["http://127.0.0.1/cb"],
            "scopes": ["patient/Patient.read", "patient/Observation.rs?category=vital-signs"],
            "registeredBy": "test",
        },
    )
    approval = store.write_consent(
        driver,
        {
            "person": w.x,
            "kind": "permit",
            "granteeType": "app",
            "grantee": app_row["uid"],
            "categories": ["demographics", "vital-signs"],
            "purposes": ["app"],
            "scopes": app_row["scopes"],
        },
        by="test-matrix",
    )
    assert approval is not None
    w.app_consent = approval["uid"]
    stranger = Authenticator(replace(auth.config, key_file=auth.config.key_file.with_name("f.pem")))
    w.tokens = {
        "dr_a": auth.issue(subject="dr-a", role="practitioner", organisation=w.org_a),
        "dr_b": auth.issue(subject="dr-b", role="practitioner", organisation=w.org_b),
        "patient_x": auth.issue(subject="px", role="patient", patient=w.x),
        "patient_y": auth.issue(subject="py", role="patient", patient=w.y),
        "app_x": auth.issue(
            subject="app-matrix",
            role="app",
            app="app-matrix",
            patient=w.x,
            authorisation=w.app_consent,
            scopes=app_row["scopes"],
        ),
        "steward": auth.issue(subject="steward", role="steward"),
        "researcher": auth.issue(subject="researcher", role="researcher"),
        "terminologist": auth.issue(subject="terminologist", role="terminologist"),
        "integrator_a": auth.issue(subject="engine-a", role="integrator", organisation=w.org_a),
        "anonymous": None,
        "forged": stranger.issue(subject="dr-a", role="admin"),
        "expired": auth.issue(
            subject="dr-a",
            role="practitioner",
            organisation=w.org_a,
            now=datetime.now(UTC).timestamp() - 7200,
        ),
    }
    yield w


def _set_state(driver: neo4j.Driver, w: World, state: str) -> None:
    """Revoke X's consents of the previous state (not the app's), then write this state's."""
    driver.execute_query(
        "MATCH (c:Consent {person: $x}) WHERE c.uid <> $app AND c.status = 'active' "
        "SET c.status = 'revoked', c.revokedAt = datetime()",
        x=w.x,
        app=w.app_consent,
    )

    def write(**props: Any) -> str:
        row = store.write_consent(driver, {"person": w.x, **props}, by=f"test-matrix:{state}")
        assert row is not None
        return str(row["uid"])

    closed = {
        "kind": "deny",
        "granteeType": "everyone",
        "grantee": "*",
        "categories": ["all"],
        "purposes": ["treatment", "research"],
    }
    if state == "hide-mh":
        write(**closed | {"categories": ["mental-health"]})
    if state.startswith("closed"):
        write(**closed)
    if state in ("closed+grant-b", "closed+revoked-grant-b"):
        uid = write(
            kind="permit",
            granteeType="organisation",
            grantee=w.org_b,
            categories=["all"],
            excluded=["mental-health"],
            purposes=["treatment"],
        )
        if state == "closed+revoked-grant-b":
            store.revoke_consent(driver, uid, person=w.x, by="test-matrix")
    if state == "closed+break-glass-b":
        now = datetime.now(UTC)
        write(
            kind="permit",
            granteeType="practitioner",
            grantee="dr-b",
            categories=["all"],
            purposes=["emergency"],
            start=now - timedelta(minutes=1),
            end=now + timedelta(minutes=60),
            breakGlass=True,
            reason="matrix emergency",
        )


def _ids(edges: list[dict[str, Any]]) -> set[str]:
    return {e["node"]["id"] for e in edges}


def _check_patient(w: World, who: str, level: str, log: Counter[str]) -> None:
    token = w.tokens[who]
    got = w.gql(PATIENT, token, id=w.x)
    typename = (got.get("data") or {}).get("patient", {}) or {}
    if level in VISIBLE:
        assert typename.get("__typename") == "Patient", (who, level, got)
        log["allowed"] += 1
        return
    assert typename.get("__typename") != "Patient", (who, level, got)
    ghost = w.gql(PATIENT, token, id=GHOST)
    # the same answer as for a person who does not exist (apart from the id asked)
    assert json.dumps(got).replace(w.x, "?") == json.dumps(ghost).replace(GHOST, "?"), (
        who,
        got,
        ghost,
    )
    log["denied"] += 1


def _check_list(w: World, who: str, level: str, log: Counter[str]) -> None:
    token = w.tokens[who]
    listed = w.gql(LIST, token)
    found = w.gql(SEARCH, token, q=w.x_family)
    if who not in LISTS:
        assert "errors" in listed, (who, listed)
        assert "errors" in found, (who, found)
        log["denied"] += 2
        return
    ids = _ids(listed["data"]["patients"]["edges"])
    hits = _ids(found["data"]["patients"]["edges"])
    assert (w.x in ids) == (level in VISIBLE), (who, level)
    assert (w.x in hits) == (level in VISIBLE), (who, level)
    if level not in VISIBLE:
        assert listed["data"]["patients"]["totalCount"] == len(ids)  # the count does not tell
    log["allowed" if level in VISIBLE else "denied"] += 2


def _check_code_search(w: World, who: str, level: str, log: Counter[str]) -> None:
    got = w.gql(BY_CODE, w.tokens[who], s=w.mh_code[0], c=w.mh_code[1])
    rows = (got.get("data") or {}).get("patientsWithCode") or []
    ids = {r.get("id") for r in rows if r.get("__typename") == "Patient"}
    # finding X by a mental-health code reveals the condition: only with the whole record
    assert (w.x in ids) == (level == "ALL" and who in LISTS), (who, level, got)
    log["allowed" if w.x in ids else "denied"] += 1


def _check_nested(w: World, who: str, level: str, log: Counter[str]) -> None:
    got = w.gql(NESTED, w.tokens[who], id=w.x)
    patient = (got.get("data") or {}).get("patient") or {}
    if level not in VISIBLE:
        assert "conditions" not in patient, (who, level)
        log["denied"] += 1
        return
    assert "errors" not in got, (who, got)
    conditions = patient["conditions"]
    names = [(c["code"] or {}).get("display") or "" for c in conditions]
    observations = [e["node"] for e in patient["observations"]["edges"]]
    mh = sum(bool(MH.search(n)) for n in names)
    if level == "ALL":
        assert (len(conditions), mh) == (w.conditions, w.mh_conditions)
        assert len(observations) == min(500, w.observations)
    elif level == "NO_MH":
        assert (len(conditions), mh) == (w.conditions - w.mh_conditions, 0)
        assert observations
    elif level == "APP":
        assert conditions == []
        assert {o["category"] for o in observations} <= {"vital-signs"}
        assert bool(observations) == (w.vitals > 0)
    else:  # DEMO
        assert conditions == []
        assert observations == []
        assert patient["timeline"]["edges"] == []
    log["allowed"] += 1


def _check_subscription(w: World, who: str, hears: bool | None, log: Counter[str]) -> None:
    from tests.app.test_notify import _open

    served = Served(w.url, w.app)
    token = w.tokens[who]
    with _open(served, init={"Authorization": f"Bearer {token}"} if token else None) as ws:
        before = served.notifier.broker.subscribers
        ws.send(json.dumps({"id": "m", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
        if hears is None:  # the role may not subscribe at all
            message = json.loads(ws.recv(timeout=30))
            errors = (
                message["payload"]["errors"] if message["type"] == "next" else message["payload"]
            )
            assert "not allowed: subscribe_changes" in json.dumps(errors), (who, message)
            log["denied"] += 1
            return
        wait_until("the subscription", lambda: served.notifier.broker.subscribers > before)
        driver = w.app.state.driver
        outbox.emit_changes(driver, {w.x_record: {"Condition"}}, source="test-matrix:x")
        outbox.emit_changes(driver, {w.z_record: {"Condition"}}, source="test-matrix:z")
        served.notifier.wake()
        try:
            message = json.loads(ws.recv(timeout=30))
        except TimeoutError as e:
            raise AssertionError(f"{who}: no event (expected {'X' if hears else 'Z'})") from e
        assert message["type"] == "next", message
        person = message["payload"]["data"]["changes"]["personId"]
        assert person == (w.x if hears else w.z), (who, hears, message)
        if hears:  # then the sentinel
            json.loads(ws.recv(timeout=30))
    log["allowed" if hears else "denied"] += 1


def test_every_principal_every_state_every_path(driver: neo4j.Driver, world: World) -> None:
    log: Counter[str] = Counter()
    cases = 0
    for i, state in enumerate(STATES):
        _set_state(driver, world, state)
        for who, levels in EXPECT.items():
            level = levels[i]
            _check_patient(world, who, level, log)
            _check_list(world, who, level, log)
            _check_code_search(world, who, level, log)
            _check_nested(world, who, level, log)
            hears = HEARS[who][i] if who in HEARS else None
            _check_subscription(world, who, hears, log)
            cases += 6
    assert cases == len(STATES) * len(EXPECT) * 6
    print(
        f"\naccess matrix: {len(EXPECT)} principals x {len(STATES)} consent states x 6 paths "
        f"= {cases} cases; answers {dict(log)}; unauthorised reads: 0"
    )
