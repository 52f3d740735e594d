"""The patient's consent page (``/ui/#/consent``) and app approval page (``/ui/#/authorize``)
end to end.

The real app runs under uvicorn on the session's embedded Neo4j; Debian's headless Chromium signs
in through the page's own "sign in as" box. Every expected value comes from the API
(``consents``, ``accessLog``, ``appAuthorization``, ``/auth/dev-users``), never from constants
written here: the page must show what the server recorded. Practitioners' requests go through
a second instance of the app (``graphql_request``), as another client of the same graph would.

Until index.html lists ``consent.js``, each page adds that one line to the HTML it is served, so
the test sees exactly what the line will do.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import neo4j
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Route, expect
from starlette.testclient import TestClient

from app.pipeline import LoadReport
from app.server import create_app
from app.settings import Settings
from tests.conftest import graphql_request
from tests.web.conftest import serving, watched_page

#: The line index.html needs for this page (what the test adds while it is missing).
SCRIPT_LINE = '<script type="module" src="./consent.js"></script>'

CONSENT_FIELDS = (
    "id kind granteeType grantee granteeName categories excluded purposes start end status "
    "breakGlass reason createdAt createdBy revokedAt revokedBy scopes"
)
CONSENTS = f"query($p: ID!) {{ consents(patientId: $p) {{ {CONSENT_FIELDS} }} }}"
CATEGORIES = "{ dataCategories { id label sensitive } organisations { id name } }"
LOG = """query($p: ID!) { accessLog(patientId: $p, first: 50) {
  seq actor role organisation app action what purpose outcome breakGlass } }"""
REVOKE = "mutation($p: ID!, $c: ID!) { revokeConsent(patientId: $p, consentId: $c) { id } }"
RESTRICT = """mutation($p: ID!, $i: RestrictInput!) { restrictAccess(patientId: $p, input: $i) {
  id } }"""
RECORD = """query($id: ID!) { patient(id: $id) { __typename
  ... on Patient { id conditions { id } } ... on AccessDenied { message } } }"""
GLASS = "mutation($p: ID!, $r: String!) { breakGlass(patientId: $p, reason: $r) { id } }"
REGISTER = "mutation($i: AppInput!) { registerApp(input: $i) { clientId name } }"
APP_REQUEST = """query($c: String!, $s: String!, $r: String!) {
  appAuthorization(clientId: $c, scope: $s, redirectUri: $r) {
    name redirectUri scopes { scope label sensitive } } }"""

#: An app asking for vital signs and for mental-health conditions (a sensitive category).
APP_SCOPES = (
    "patient/Observation.rs?category=vital-signs",
    "patient/Condition.rs?category=mental-health",
)
#: 43 characters: the shortest PKCE code challenge RFC 7636 (section 4.2) allows.
CODE_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@dataclass(frozen=True)
class World:
    base_url: str
    api: TestClient
    users: list[dict[str, Any]]
    patient: dict[str, Any]  # the dev user the browser signs in as
    practitioner: dict[str, Any]
    patient_token: str
    labels: dict[str, str]  # data category id -> label
    organisations: list[dict[str, str]]

    @property
    def person(self) -> str:
        return str(self.patient["patient"])

    def ok(self, query: str, token: str | None, **variables: Any) -> dict[str, Any]:
        body = graphql_request(self.api, query, token, **variables)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def consents(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.ok(CONSENTS, self.patient_token, p=self.person)[
            "consents"
        ]
        return found


def dev_token(base_url: str, user: dict[str, Any]) -> str:
    response = httpx2.post(f"{base_url}/auth/dev-token", json=user, timeout=30)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def world(settings: Settings, driver: neo4j.Driver, loaded_sample: LoadReport) -> Iterator[World]:
    """The app served to the browser plus a second instance for API checks; every consent the
    module creates is revoked after it (the audit trail is append-only by design)."""
    with (
        serving(create_app(settings, driver=driver), "uvicorn-consent") as url,
        TestClient(create_app(settings, driver=driver)) as api,
    ):
        users = httpx2.get(f"{url}/auth/dev-users", timeout=30).json()
        patient = next(u for u in users if u["role"] == "patient")
        practitioner = next(u for u in users if u["role"] == "practitioner")
        token = dev_token(url, patient)
        ref = graphql_request(api, CATEGORIES, token)["data"]
        w = World(
            base_url=url,
            api=api,
            users=users,
            patient=patient,
            practitioner=practitioner,
            patient_token=token,
            labels={c["id"]: c["label"] for c in ref["dataCategories"]},
            organisations=ref["organisations"],
        )
        before = {c["id"] for c in w.consents()}
        yield w
        for c in w.consents():
            if c["status"] == "active" and c["id"] not in before:
                w.ok(REVOKE, token, p=w.person, c=c["id"])


def with_consent_module(page: Page) -> None:
    """Serve index.html with the consent module's line added when it is missing."""

    def add_line(route: Route) -> None:
        response = route.fetch()
        html = response.text()
        if "consent.js" not in html:
            html = html.replace("</head>", f"  {SCRIPT_LINE}\n</head>")
        route.fulfill(response=response, body=html)

    def is_index(url: str) -> bool:
        return urlsplit(url).path == "/ui/"

    page.route(is_index, add_line)


@pytest.fixture
def page(browser: Browser, world: World) -> Iterator[Page]:
    with watched_page(browser, world.base_url, viewport={"width": 1366, "height": 900}) as pg:
        with_consent_module(pg)
        yield pg


def sign_in(page: Page, user: dict[str, Any]) -> None:
    """Through the top bar's own control, as a person would."""
    box = page.get_by_test_id("signin")
    box.get_by_test_id("signin-open").click()
    box.get_by_test_id("signin-user").select_option(label=user["label"])
    box.get_by_test_id("signin-submit").click()
    expect(box.get_by_test_id("signin-who")).to_have_attribute("data-subject", user["subject"])


def signed_in_consent_page(page: Page, world: World) -> None:
    page.goto("/ui/#/consent")
    sign_in(page, world.patient)
    expect(page.get_by_test_id("consent-page")).to_have_attribute("data-patient", world.person)


def texts(locator: Locator) -> list[str]:
    found: list[str] = locator.evaluate_all("es => es.map(e => e.textContent.trim())")
    return found


def shown_consents(page: Page) -> list[dict[str, str]]:
    """The active grants and restrictions as the page lists them."""
    rows: list[dict[str, str]] = page.get_by_test_id("consent-row").evaluate_all(
        """rs => rs.map(r => ({
          id: r.dataset.id, kind: r.dataset.kind, granteeType: r.dataset.granteeType,
          grantee: r.dataset.grantee,
          categories: r.querySelector('[data-testid=consent-categories]').textContent,
          excluded: r.querySelector('[data-testid=consent-excluded]')?.textContent ?? '',
          purposes: r.querySelector('[data-testid=consent-purposes]').textContent,
        }))"""
    )
    return rows


def expected_consents(world: World) -> list[dict[str, str]]:
    """The API's active grants and restrictions (apps are listed apart), in the API's order,
    written as the page writes them."""

    def words(ids: list[str]) -> str:
        return ", ".join(world.labels[i] for i in ids)

    return [
        {
            "id": c["id"],
            "kind": c["kind"],
            "granteeType": c["granteeType"],
            "grantee": c["grantee"],
            "categories": words(c["categories"]),
            "excluded": f"except {words(c['excluded'])}" if c["excluded"] else "",
            "purposes": ", ".join(c["purposes"]),
        }
        for c in world.consents()
        if c["status"] == "active" and c["granteeType"] != "app"
    ]


def test_sign_in_lists_the_demo_users_and_signs_out(page: Page, world: World) -> None:
    page.goto("/ui/#/consent")
    # anonymous (the demo's default clinician): the page says who may use it
    expect(page.get_by_test_id("consent-not-patient")).to_contain_text("clinician")
    box = page.get_by_test_id("signin")
    expect(box.get_by_test_id("signin-who")).to_have_text("Not signed in (acting as clinician)")
    box.get_by_test_id("signin-open").click()
    assert texts(box.locator("option")) == [u["label"] for u in world.users]

    box.get_by_test_id("signin-user").select_option(label=world.practitioner["label"])
    box.get_by_test_id("signin-submit").click()
    who = box.get_by_test_id("signin-who")
    expect(who).to_have_attribute("data-subject", world.practitioner["subject"])
    expect(who).to_contain_text(world.practitioner["label"])
    expect(page.get_by_test_id("consent-not-patient")).to_contain_text(
        world.practitioner["organisation"]
    )

    sign_in(page, world.patient)
    expect(who).to_contain_text(world.patient["label"])
    expect(who).to_have_attribute("data-role", "patient")
    expect(page.get_by_test_id("consent-page")).to_have_attribute("data-patient", world.person)
    assert page.evaluate("localStorage.getItem('medshadowToken')")

    box.get_by_test_id("signin-out").click()
    expect(page.get_by_test_id("consent-not-patient")).to_be_visible()
    expect(box.get_by_test_id("signin-who")).to_have_text("Not signed in (acting as clinician)")
    assert page.evaluate("localStorage.getItem('medshadowToken')") is None


def test_a_refused_token_is_named_not_taken_for_anonymous(page: Page) -> None:
    page.add_init_script("localStorage.setItem('medshadowToken', 'not-a-token')")
    page.goto("/ui/#/consent")
    box = page.get_by_test_id("signin")
    expect(box.get_by_test_id("signin-problem")).to_contain_text("Sign-in not valid")
    expect(page.get_by_test_id("consent-not-patient")).to_contain_text("not valid")
    expect(box.get_by_test_id("signin-out")).to_be_visible()


def test_without_demo_sign_in_the_control_says_so(
    browser: Browser, settings: Settings, driver: neo4j.Driver, world: World
) -> None:
    off = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"dev_login": False})}
    )
    with serving(create_app(off, driver=driver), "uvicorn-consent-nodev") as url:
        assert httpx2.get(f"{url}/auth/dev-users", timeout=30).status_code == 404
        # not watched_page: Chromium logs the expected 404 as a console error; anything else
        # the page logs or throws still fails the test
        context = browser.new_context(base_url=url)
        pg = context.new_page()
        problems: list[str] = []

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error" and not msg.location["url"].endswith("/auth/dev-users"):
                problems.append(f"console error: {msg.text} at {msg.location}")

        pg.on("console", on_console)
        pg.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
        with_consent_module(pg)
        try:
            pg.goto("/ui/#/consent")
            box = pg.get_by_test_id("signin")
            expect(box.get_by_test_id("signin-off")).to_contain_text("Demo sign-in is off")
            expect(box.get_by_test_id("signin-menu")).to_have_count(0)
            expect(box.get_by_test_id("signin-who")).to_have_text(
                "Not signed in (acting as clinician)"
            )
            expect(pg.get_by_test_id("consent-not-patient")).to_be_visible()
        finally:
            context.close()
        assert problems == [], problems


def test_patient_grants_restricts_and_revokes(page: Page, world: World, tmp_path: Path) -> None:
    signed_in_consent_page(page, world)
    org = world.organisations[0]

    # a grant to a practitioner without naming one: the API's message, nothing saved
    page.get_by_test_id("grant-to-practitioner").check()
    page.get_by_test_id("grant-cat-all").check()
    page.get_by_test_id("grant-submit").click()
    expect(page.get_by_test_id("grant-error")).to_contain_text("names who")
    assert shown_consents(page) == expected_consents(world)

    # share everything with a clinic except mental health
    page.get_by_test_id("grant-to-organisation").check()
    page.get_by_test_id("grant-org").select_option(org["id"])
    page.get_by_test_id("grant-exclude-mental-health").check()
    page.get_by_test_id("grant-submit").click()
    expect(page.get_by_test_id("consent-notice")).to_contain_text(
        f"Shared with Organisation: {org['name']}"
    )
    grants = [
        c
        for c in world.consents()
        if c["status"] == "active"
        and c["granteeType"] == "organisation"
        and c["grantee"] == org["id"]
    ]
    assert len(grants) == 1, grants
    grant = grants[0]
    assert (grant["kind"], grant["categories"], grant["excluded"], grant["purposes"]) == (
        "permit",
        ["all"],
        ["mental-health"],
        ["treatment"],
    )
    assert shown_consents(page) == expected_consents(world)
    row = page.locator(f'[data-testid="consent-row"][data-id="{grant["id"]}"]')
    expect(row.get_by_test_id("consent-excluded")).to_have_text(
        f"except {world.labels['mental-health']}"
    )

    # hide mental health from everyone
    page.get_by_test_id("restrict-cat-mental-health").check()
    page.get_by_test_id("restrict-submit").click()
    expect(page.get_by_test_id("consent-notice")).to_have_text("Hidden from everyone.")
    denies = [
        c
        for c in world.consents()
        if c["status"] == "active" and c["kind"] == "deny" and c["granteeType"] == "everyone"
    ]
    assert [c["categories"] for c in denies] == [["mental-health"]]
    assert shown_consents(page) == expected_consents(world)
    page.screenshot(path=str(tmp_path / "consent.png"), full_page=True)

    # revoke the grant: asked first, then it moves to the history
    row.get_by_test_id("consent-revoke").click()
    row.get_by_test_id("consent-revoke-cancel").click()
    expect(row).to_have_count(1)
    row.get_by_test_id("consent-revoke").click()
    row.get_by_test_id("consent-revoke-confirm").click()
    expect(page.get_by_test_id("consent-notice")).to_contain_text("Revoked")
    expect(row).to_have_count(0)
    history = page.get_by_test_id("consent-history")
    expect(history).not_to_have_attribute("open", "")
    history.locator("summary").click()
    past = history.locator(f'[data-testid="history-row"][data-id="{grant["id"]}"]')
    expect(past).to_be_visible()
    expect(past).to_have_attribute("data-status", "revoked")
    revoked = next(c for c in world.consents() if c["id"] == grant["id"])
    assert revoked["status"] == "revoked"
    assert revoked["revokedBy"] == world.patient["subject"]
    expect(past.get_by_test_id("consent-revoked")).to_contain_text(f"by {revoked['revokedBy']}")
    assert shown_consents(page) == expected_consents(world)
    expect(history.get_by_test_id("history-count")).to_have_text(
        str(sum(1 for c in world.consents() if c["status"] != "active"))
    )


def test_access_log_shows_a_practitioners_reads_denials_and_break_glass(
    page: Page, world: World, tmp_path: Path
) -> None:
    p = world.person
    doctor = dev_token(world.base_url, world.practitioner)
    subject = world.practitioner["subject"]
    assert world.ok(RECORD, doctor, id=p)["patient"]["__typename"] == "Patient"
    closed = world.ok(RESTRICT, world.patient_token, p=p, i={"categories": ["all"]})
    assert world.ok(RECORD, doctor, id=p)["patient"]["__typename"] == "AccessDenied"
    glass = world.ok(GLASS, doctor, p=p, r="unconscious in the emergency department")
    assert world.ok(RECORD, doctor, id=p)["patient"]["__typename"] == "Patient"
    log = [e for e in world.ok(LOG, world.patient_token, p=p)["accessLog"] if e["actor"] == subject]
    assert {e["outcome"] for e in log} == {"allowed", "denied"}, log
    flagged_reads = [e for e in log if e["breakGlass"] and e["action"] == "read"]
    assert flagged_reads, log

    signed_in_consent_page(page, world)
    # the practitioner's break-glass is one of the patient's consents, flagged
    episode = page.locator(f'[data-testid="consent-row"][data-id="{glass["breakGlass"]["id"]}"]')
    expect(episode.get_by_test_id("consent-break-glass")).to_have_text("Break-glass")
    for e in log:
        row = page.locator(f'[data-testid="log-row"][data-seq="{e["seq"]}"]')
        expect(row).to_have_attribute("data-actor", subject)
        expect(row.get_by_test_id("log-what")).to_have_text(f"{e['action']} {e['what']}")
        expect(row.get_by_test_id("log-purpose")).to_have_text(e["purpose"])
        via = [e["role"], e["organisation"], f"app {e['app']}" if e["app"] else None]
        expect(row.get_by_test_id("log-via")).to_have_text(" · ".join(v for v in via if v))
        expect(row).to_have_attribute("data-outcome", e["outcome"])
        expect(row.get_by_test_id("log-outcome")).to_contain_text(
            "Denied" if e["outcome"] == "denied" else "Allowed"
        )
        expect(row).to_have_attribute("data-break-glass", "true" if e["breakGlass"] else "false")
        expect(row.get_by_test_id("log-break-glass")).to_have_count(1 if e["breakGlass"] else 0)
    own = page.locator(f'[data-testid="log-row"][data-actor="{world.patient["subject"]}"]')
    expect(own.first.get_by_test_id("log-actor")).to_have_text("You")  # the page's own reads
    read = page.locator(f'[data-testid="log-row"][data-seq="{flagged_reads[0]["seq"]}"]')
    expect(read.get_by_test_id("log-break-glass")).to_be_visible()
    expect(read.get_by_test_id("log-purpose")).to_have_text("emergency")
    page.get_by_test_id("access-log").screenshot(path=str(tmp_path / "access-log.png"))
    world.ok(REVOKE, world.patient_token, p=p, c=glass["breakGlass"]["id"])
    world.ok(REVOKE, world.patient_token, p=p, c=closed["restrictAccess"]["id"])


def approval_page(base_url: str, client_id: str, redirect: str, state: str) -> str:
    """Where the OAuth authorize endpoint sends the browser (Chromium follows that redirect
    itself, past the route that adds the module's line, so the test takes the hop)."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect,
        "scope": " ".join(APP_SCOPES),
        "state": state,
        "code_challenge": CODE_CHALLENGE,
        "code_challenge_method": "S256",
    }
    hop = httpx2.get(f"{base_url}/oauth/authorize", params=query, timeout=30)
    assert hop.status_code == 302, hop.text
    location: str = hop.headers["location"]
    assert location.startswith("/ui/#/authorize?"), location
    assert parse_qs(urlsplit(location.split("#", 1)[1]).query) == {k: [v] for k, v in query.items()}
    return location


@pytest.fixture(scope="module")
def app_client(world: World, driver: neo4j.Driver) -> Iterator[str]:
    """A third-party app registered by a practitioner, redirecting to the test server's own
    /health (so the browser can load where it lands); removed after the module."""
    registered = world.ok(
        REGISTER,
        dev_token(world.base_url, world.practitioner),
        i={
            "name": f"Test consent UI {uuid.uuid4().hex[:6]}",
            "redirectUris": [f"{world.base_url}/health"],
            "scopes": list(APP_SCOPES),
        },
    )["registerApp"]
    yield registered["clientId"]
    driver.execute_query("MATCH (a:App {uid: $c}) DETACH DELETE a", c=registered["clientId"])


def test_app_approval_page_approves_then_the_patient_revokes(
    page: Page, world: World, app_client: str, tmp_path: Path
) -> None:
    redirect = f"{world.base_url}/health"
    asked = world.ok(
        APP_REQUEST, world.patient_token, c=app_client, s=" ".join(APP_SCOPES), r=redirect
    )["appAuthorization"]
    assert any(s["sensitive"] for s in asked["scopes"]), asked
    signed_in_consent_page(page, world)
    page.goto(approval_page(world.base_url, app_client, redirect, "st-approve"))
    approval = page.get_by_test_id("authorize-page")
    expect(approval.get_by_test_id("authorize-app")).to_have_text(asked["name"])
    expect(approval.get_by_test_id("authorize-host")).to_have_text(urlsplit(redirect).netloc)
    scopes = approval.get_by_test_id("authorize-scope")
    expect(scopes.get_by_test_id("scope-label")).to_have_text([s["label"] for s in asked["scopes"]])
    for s in asked["scopes"]:
        item = approval.locator(f'[data-testid="authorize-scope"][data-scope="{s["scope"]}"]')
        expect(item.get_by_test_id("scope-sensitive")).to_have_count(1 if s["sensitive"] else 0)
    expect(approval.get_by_test_id("authorize-sensitive")).to_be_visible()
    page.screenshot(path=str(tmp_path / "authorize.png"), full_page=True)

    approval.get_by_test_id("authorize-approve").click()
    page.wait_for_url(re.compile(r"/health\?"))
    landed = urlsplit(page.url)
    assert f"{landed.scheme}://{landed.netloc}{landed.path}" == redirect
    query = parse_qs(landed.query)
    assert query["state"] == ["st-approve"]
    assert len(query["code"]) == 1, query
    assert query["code"][0], query
    approvals = [
        c
        for c in world.consents()
        if c["granteeType"] == "app" and c["grantee"] == app_client and c["status"] == "active"
    ]
    assert len(approvals) == 1, approvals
    assert sorted(approvals[0]["scopes"]) == sorted(APP_SCOPES)

    # the patient sees the app and revokes it; the API agrees
    page.goto("/ui/#/consent")
    app_row = page.locator(f'[data-testid="app-row"][data-id="{approvals[0]["id"]}"]')
    expect(app_row.get_by_test_id("app-name")).to_have_text(asked["name"])
    app_row.get_by_test_id("app-revoke").click()
    app_row.get_by_test_id("app-revoke-confirm").click()
    expect(app_row).to_have_count(0)
    now = next(c for c in world.consents() if c["id"] == approvals[0]["id"])
    assert now["status"] == "revoked"


def test_app_approval_page_denies(page: Page, world: World, app_client: str) -> None:
    redirect = f"{world.base_url}/health"
    before = {c["id"] for c in world.consents()}
    signed_in_consent_page(page, world)
    page.goto(approval_page(world.base_url, app_client, redirect, "st-deny"))
    page.get_by_test_id("authorize-deny").click()
    page.wait_for_url(re.compile(r"/health\?"))
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"error": ["access_denied"], "state": ["st-deny"]}
    assert {c["id"] for c in world.consents()} == before  # nothing was authorised


def test_approval_page_refuses_an_unregistered_redirect_and_non_patients(
    page: Page, world: World, app_client: str
) -> None:
    elsewhere = f"{world.base_url}/elsewhere"
    refused = graphql_request(
        world.api, APP_REQUEST, world.patient_token, c=app_client, s=APP_SCOPES[0], r=elsewhere
    )
    message = refused["errors"][0]["message"]
    page.goto("/ui/#/consent")
    sign_in(page, world.patient)
    page.goto(
        f"/ui/#/authorize?{urlencode({'client_id': app_client, 'redirect_uri': elsewhere, 'scope': APP_SCOPES[0], 'code_challenge': CODE_CHALLENGE})}"
    )
    expect(page.get_by_test_id("authorize-error")).to_contain_text(message)
    expect(page.get_by_test_id("authorize-approve")).to_have_count(0)

    page.get_by_test_id("signin-out").click()
    page.goto(approval_page(world.base_url, app_client, f"{world.base_url}/health", "st"))
    expect(page.get_by_test_id("authorize-not-patient")).to_contain_text("Sign in as the patient")
    expect(page.get_by_test_id("authorize-approve")).to_have_count(0)
