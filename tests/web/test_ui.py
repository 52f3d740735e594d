"""The web UI end to end: the real app under uvicorn, the sample graph, Debian's headless Chromium.

Nothing is mocked: the browser talks to ``/graphql`` of the app that ``medshadow serve`` runs,
which reads the embedded Neo4j holding the seeded Synthea sample. Expected values come from the
graph itself (Cypher through the ``driver`` fixture), not from fixtures written by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import neo4j
import pytest
from playwright.sync_api import Browser, Page, expect

from app.pipeline import LoadReport
from app.server import create_app
from app.settings import Settings
from tests.web.conftest import serving, watched_page


@dataclass(frozen=True)
class MultiDomainPerson:
    uid: str
    family: str
    name: str
    records: int  # records (one per domain) linked to the person: rows of the Domains panel
    condition_domains: int  # distinct domains that recorded at least one condition


@pytest.fixture(scope="module")
def base_url(settings: Settings, loaded_sample: LoadReport) -> Iterator[str]:
    """The real app on a free port, served by uvicorn in a background thread."""
    with serving(create_app(settings), "uvicorn-ui-test") as url:
        yield url


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh page; fails the test if the UI logged any console error or threw."""
    with watched_page(browser, base_url, viewport={"width": 1280, "height": 900}) as pg:
        yield pg


@pytest.fixture(scope="module")
def person(driver: neo4j.Driver, loaded_sample: LoadReport) -> MultiDomainPerson:
    """A person whose conditions were recorded in at least two domains."""
    records, _, _ = driver.execute_query(
        """
        MATCH (p:Person)<-[:RECORD_OF]-(r:Patient)<-[:ABOUT]-(:Condition)
        MATCH (r)-[:IN_DOMAIN]->(d:Domain)
        WITH p, count(DISTINCT d) AS conditionDomains WHERE conditionDomains >= 2
        MATCH (p)<-[:RECORD_OF]-(rec:Patient)-[:IN_DOMAIN]->(:Domain)
        WITH p, conditionDomains, count(DISTINCT rec) AS n WHERE n >= 2
        RETURN p.uid AS uid, p.family AS family, p.name AS name, n, conditionDomains
        ORDER BY conditionDomains DESC, n DESC, p.uid
        LIMIT 1
        """,
        routing_=neo4j.RoutingControl.READ,
    )
    assert records, "the sample has no person with conditions from two domains"
    row = records[0]
    assert row["family"], row
    return MultiDomainPerson(
        uid=row["uid"],
        family=row["family"],
        name=row["name"],
        records=row["n"],
        condition_domains=row["conditionDomains"],
    )


def test_search_lists_patients_and_finds_one_by_family_name(
    page: Page, person: MultiDomainPerson, tmp_path: Path
) -> None:
    page.goto("/ui/")
    rows = page.get_by_test_id("patient-row")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 2
    expect(page.get_by_test_id("search-status")).to_contain_text("patient")
    page.screenshot(path=str(tmp_path / "ui-search.png"), full_page=True)

    fragment = person.family[: max(3, len(person.family) - 2)]
    page.get_by_test_id("search-input").fill(fragment)
    target = page.locator(f'[data-testid="patient-row"][data-id="{person.uid}"]')
    expect(target).to_be_visible()
    expect(target).to_contain_text(person.family)
    expect(page).to_have_url(f"/ui/#/?q={fragment}")  # search survives back/reload

    page.get_by_test_id("search-input").fill("zzzqqq-no-such-patient")
    expect(page.get_by_test_id("search-empty")).to_be_visible()
    expect(rows).to_have_count(0)

    page.get_by_test_id("search-input").fill(person.family)
    expect(target).to_be_visible()
    target.click()
    expect(page.get_by_test_id("patient-record")).to_be_visible()
    expect(page.get_by_test_id("patient-name")).to_contain_text(person.family)


def test_enter_in_search_box_opens_first_match(page: Page, person: MultiDomainPerson) -> None:
    page.goto("/ui/")
    expect(page.get_by_test_id("patient-row").first).to_be_visible()
    page.get_by_test_id("search-input").fill(person.family)
    page.get_by_test_id("search-input").press("Enter")
    expect(page.get_by_test_id("patient-record")).to_be_visible()
    assert "#/patient/" in page.url


def test_record_shows_every_domain_and_mixed_sources(
    page: Page, person: MultiDomainPerson, driver: neo4j.Driver, tmp_path: Path
) -> None:
    record_posts: list[str] = []
    page.on(
        "request",
        lambda r: (
            record_posts.append(r.url)
            if r.url.endswith("/graphql") and "PatientRecord" in (r.post_data or "")
            else None
        ),
    )
    page.goto(f"/ui/#/patient/{person.uid}")
    expect(page.get_by_test_id("patient-record")).to_be_visible()
    # the record itself is one request (panels such as the medication summary ask on their own,
    # so that their failure never blanks the record)
    assert len(record_posts) == 1, "the record's first view must be one GraphQL request"

    domains = page.get_by_test_id("domains-panel").get_by_test_id("domain-row")
    expect(domains).to_have_count(person.records)
    # each record says how the master patient index linked it, with the evidence on hover,
    # and which kinds of data its domain holds
    link = domains.first.get_by_test_id("link-cell")
    expect(link).to_have_text(re.compile(r"^(rule|probabilistic|merge|steward|singleton)"))
    assert "national_id" in (link.get_attribute("title") or "") or "singleton" in link.inner_text()
    expect(domains.first.get_by_test_id("kinds-cell")).to_contain_text("Encounter")

    conditions = page.get_by_test_id("section-conditions")
    expect(conditions).to_be_visible()
    expect(conditions.get_by_test_id("fact-row").first).to_be_visible()
    badges = conditions.get_by_test_id("source-badge")
    n = badges.count()
    names = {badges.nth(i).get_attribute("data-domain") for i in range(n)}
    assert len(names) >= 2, names
    # domain names need not be unique (the sample has two "NANTUCKET COTTAGE HOSPITAL"s): ids are
    domain_ids = {badges.nth(i).get_attribute("data-domain-id") for i in range(n)}
    assert len(domain_ids) == person.condition_domains, domain_ids
    # the badge colour is a function of the domain: same domain, same colour, anywhere
    first_badge = badges.first
    domain_badge = page.get_by_test_id("domains-panel").locator(
        f'[data-testid="source-badge"][data-domain-id="{first_badge.get_attribute("data-domain-id")}"]'
    )
    assert first_badge.get_attribute("style") == domain_badge.get_attribute("style")
    assert "record" in (first_badge.get_attribute("title") or "")
    code = conditions.locator(".code").first
    assert (code.get_attribute("title") or "").strip(), "code system + code belong in the tooltip"
    page.screenshot(path=str(tmp_path / "ui-record.png"), full_page=False)

    # observations and timeline: first page came with the record, later pages on demand
    page.get_by_test_id("tab-observations").click()
    observations = page.get_by_test_id("section-observations")
    expect(observations.get_by_test_id("fact-row").first).to_be_visible()
    assert observations.get_by_test_id("fact-row").count() <= 50

    # a panel with components (blood pressure) renders as "systolic/diastolic unit"
    panels, _, _ = driver.execute_query(
        """
        MATCH (:Person {uid: $uid})<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(o:Observation)
              -[:HAS_COMPONENT]->()-[:CODED_AS]->(:Concept {code: '8480-6'})
        MATCH (o)-[c:CODED_AS]->(k:Concept)
        RETURN k.code AS code ORDER BY c.rank LIMIT 1
        """,
        {"uid": person.uid},
        routing_=neo4j.RoutingControl.READ,
    )
    if panels:
        page.get_by_test_id("obs-filter").fill(panels[0]["code"])
        page.get_by_test_id("obs-filter").press("Enter")
        first_value = observations.get_by_test_id("fact-row").first.locator(".value")
        expect(first_value).to_have_text(re.compile(r"^\d+(\.\d+)?/\d+(\.\d+)?( .+)?$"))
        codes = observations.get_by_test_id("fact-row").locator("td:nth-child(2) .code")
        assert {codes.nth(i).get_attribute("data-code") for i in range(codes.count())} == {
            panels[0]["code"]
        }
    page.screenshot(path=str(tmp_path / "ui-observations.png"), full_page=False)

    page.get_by_test_id("tab-timeline").click()
    timeline = page.get_by_test_id("section-timeline")
    timeline_rows = timeline.get_by_test_id("fact-row")
    expect(timeline_rows.first).to_be_visible()
    if page.get_by_test_id("timeline-more").is_visible():
        shown = timeline_rows.count()
        page.get_by_test_id("timeline-more").click()
        expect(timeline_rows).not_to_have_count(shown)
        assert timeline_rows.count() > shown
        ids = [timeline_rows.nth(i).get_attribute("data-id") for i in range(timeline_rows.count())]
        assert len(ids) == len(set(ids)), "the next page must not repeat entries"

    page.set_viewport_size({"width": 820, "height": 900})
    page.get_by_test_id("tab-conditions").click()
    page.screenshot(path=str(tmp_path / "ui-record-narrow.png"), full_page=False)


def test_unknown_patient_is_denied_like_a_hidden_one(page: Page) -> None:
    """An id no person has is answered like a person whose consent does not cover you: the
    page cannot tell which (issue 7: denials do not leak existence)."""
    page.goto("/ui/#/patient/no-such-person-0000")
    expect(page.get_by_test_id("access-denied")).to_be_visible()
    expect(page.get_by_test_id("access-denied")).to_contain_text("no-such-person-0000")
    expect(page.get_by_test_id("access-denied")).to_contain_text("or there is no such patient")
    # escaping: markup in the id is shown as text, never parsed
    page.goto("/ui/#/patient/" + "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    expect(page.get_by_test_id("access-denied")).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.locator("main img").count() == 0


def test_unknown_token_shows_error_and_access_denied(page: Page, person: MultiDomainPerson) -> None:
    """The bearer token from localStorage is sent; a token with no rights gets clear states."""
    page.add_init_script("window.localStorage.setItem('medshadowToken', 'not-a-known-token')")
    page.goto("/ui/")
    expect(page.get_by_test_id("search-error")).to_contain_text("not allowed")
    expect(page.get_by_test_id("patient-row")).to_have_count(0)
    page.goto(f"/ui/#/patient/{person.uid}")
    expect(page.get_by_test_id("access-denied")).to_contain_text("not allowed")
    expect(page.get_by_test_id("patient-record")).to_have_count(0)
