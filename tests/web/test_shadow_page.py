"""The clinician's patient-shadow page (``/ui/#/patient/<id>/shadow``) end to end.

The real app runs under uvicorn with the shadow's clock at the end of the ``shadow_world``
readings; Debian's headless Chromium opens the page of a person with an open alert and device
trends. Every expected value comes from the API (``Patient.shadow``, ``trends`` asked with the
very variables the page sent) or from the graph (Cypher through the ``driver`` fixture), never
from hand-written constants.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import neo4j
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from app.auth import authenticator
from app.server import create_app
from app.settings import Settings
from ontology.model import Label, RelType
from shadow.caregaps import evaluate
from tests.conftest import ShadowWorld
from tests.web.conftest import serving, watched_page

CLINICIAN = "dr-shadow"
TOKENS = {
    "clin-token": f"clinician:{CLINICIAN}",
    "steward-token": "steward:sam",  # demographics only: no shadow, no alerts
    "int-token": "integrator",  # may not read records at all
}

SHADOW = """
query($id: ID!) {
  patient(id: $id) {
    ... on Patient {
      name
      shadow {
        vitals { metric value unit sourceDomain derived inputs { name value } }
        scores { name value complete inputs { name value unit } inputsMissing computedAt }
        careGaps { rule status }
        dataRequests { id status }
        alerts { id state title trail { action actor } }
      }
    }
  }
}"""

TRENDS = """
query($id: ID!, $window: TrendWindow!, $metrics: [String!]) {
  patient(id: $id) {
    ... on Patient {
      shadow {
        trends(window: $window, metrics: $metrics) {
          metric display baselineMean points { low high }
        }
      }
    }
  }
}"""

OPEN_ALERTS = f"""
MATCH (a:{Label.ALERT.value} {{state: 'open'}})-[:{RelType.FOR_PERSON.value}]->(p:{Label.PERSON.value})
WHERE p.uid IN $persons
RETURN p.uid AS person, a.uid AS alert
ORDER BY person, alert
"""

ALERT = f"MATCH (a:{Label.ALERT.value} {{uid: $uid}}) RETURN properties(a) AS props"
RESTORE_ALERT = f"MATCH (a:{Label.ALERT.value} {{uid: $uid}}) SET a = $props"


@dataclass(frozen=True)
class Subject:
    person: str
    alert: str  # an open alert of the person


def graphql(base_url: str, query: str, variables: dict[str, Any]) -> Any:
    """A GraphQL request with the clinician's token; fails on any error."""
    response = httpx2.post(
        f"{base_url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": "Bearer clin-token"},
        timeout=60,
    )
    body = response.json()
    assert response.status_code == 200, body
    assert not body.get("errors"), body
    return body["data"]


def alert_props(driver: neo4j.Driver, uid: str) -> dict[str, Any]:
    records, _, _ = driver.execute_query(ALERT, {"uid": uid}, routing_=neo4j.RoutingControl.READ)
    assert records, f"no alert {uid} in the graph"
    props: dict[str, Any] = records[0]["props"]
    return props


@pytest.fixture(scope="module")
def base_url(settings: Settings, shadow_world: ShadowWorld) -> Iterator[str]:
    """The real app at the shadow world's clock (no watcher: the page must not race one)."""
    clock = datetime.fromtimestamp(shadow_world.as_of, UTC)
    tuned = settings.model_copy(
        update={
            "api": settings.api.model_copy(update={"tokens": TOKENS}),
            "shadow": settings.shadow.model_copy(update={"clock": clock, "watch": False}),
        }
    )
    with serving(create_app(tuned), "uvicorn-shadow") as url:
        yield url


@pytest.fixture(scope="module")
def subject(driver: neo4j.Driver, shadow_world: ShadowWorld, base_url: str) -> Subject:
    """A person of the IoT cloud with an open alert and device aggregates in the 30-day trends.

    Care gaps are evaluated as of the world's day first (what ``medshadow shadow gaps`` does),
    so the page has gaps to show wherever the rules find any."""
    evaluate(driver, datetime.fromtimestamp(shadow_world.as_of, UTC).date())
    records, _, _ = driver.execute_query(
        OPEN_ALERTS, {"persons": list(shadow_world.persons)}, routing_=neo4j.RoutingControl.READ
    )
    for row in records:
        trends = graphql(base_url, TRENDS, {"id": row["person"], "window": "DAYS_30"})
        points = [p for t in trends["patient"]["shadow"]["trends"] for p in t["points"]]
        if any(p["low"] is not None and p["high"] is not None for p in points):
            return Subject(row["person"], row["alert"])
    pytest.fail("no person of the IoT cloud has an open alert and device trends")


@pytest.fixture
def restored_alert(driver: neo4j.Driver, subject: Subject) -> Iterator[dict[str, Any]]:
    """The subject's open alert; put back as it was after the test, so every test (and every
    other module of the session) finds it open."""
    before = alert_props(driver, subject.alert)
    assert before["state"] == "open", before
    yield before
    driver.execute_query(RESTORE_ALERT, {"uid": subject.alert, "props": before})


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    with watched_page(browser, base_url, viewport={"width": 1366, "height": 900}) as pg:
        yield pg


def use_token(page: Page, token: str) -> None:
    page.add_init_script(f"localStorage.setItem('medshadowToken', {json.dumps(token)})")


def graphql_bodies(page: Page) -> list[dict[str, Any]]:
    """The GraphQL request bodies the page sends from now on, in order."""
    bodies: list[dict[str, Any]] = []

    def on_request(request: Request) -> None:
        if request.url.endswith("/graphql") and request.method == "POST":
            body = request.post_data_json
            assert isinstance(body, dict), body
            bodies.append(body)

    page.on("request", on_request)
    return bodies


def trends_request(bodies: list[dict[str, Any]], window: str) -> dict[str, Any]:
    asked = [b for b in bodies if "trends(" in b["query"] and b["variables"]["window"] == window]
    assert asked, f"the page asked for no {window} trends: {bodies}"
    variables: dict[str, Any] = asked[-1]["variables"]
    # the server ends the window at the shadow's clock: the page never passes `until`
    assert "until" not in variables, asked[-1]
    assert not re.search(r"trends\([^)]*until", asked[-1]["query"]), asked[-1]
    return variables


def check_charts(page: Page, base_url: str, variables: dict[str, Any]) -> None:
    """One chart per trend the API returns for the page's own variables, one dot per point,
    a low-high bar per device aggregate and a dashed line per personal baseline."""
    expected = graphql(base_url, TRENDS, variables)["patient"]["shadow"]["trends"]
    assert expected, f"no trends for {variables}"
    panel = page.get_by_test_id("shadow-trends")
    expect(panel).to_have_attribute("data-loaded", variables["window"])
    charts = panel.get_by_test_id("trend-chart")
    expect(charts).to_have_count(len(expected))
    assert charts.evaluate_all("cs => cs.map(c => c.dataset.metric)") == [
        t["metric"] for t in expected
    ]
    for i, trend in enumerate(expected):
        chart = charts.nth(i)
        svg = chart.locator("svg[role='img']")
        expect(svg).to_have_count(1)
        # the chart's accessible name summarises the trend, starting with what it shows
        expect(svg).to_have_attribute(
            "aria-label", re.compile(rf"^{re.escape(trend['display'])}, ")
        )
        expect(chart.get_by_test_id("trend-point")).to_have_count(len(trend["points"]))
        ranges = [p for p in trend["points"] if p["low"] is not None and p["high"] is not None]
        bars = chart.locator(".trend-range")
        assert bars.count() == len([p for p in ranges if p["high"] > p["low"]]), trend["metric"]
        has_baseline = trend["baselineMean"] is not None
        expect(chart.get_by_test_id("trend-baseline")).to_have_count(1 if has_baseline else 0)


def test_clinician_sees_the_shadow_and_acknowledges_an_alert(
    page: Page,
    base_url: str,
    subject: Subject,
    restored_alert: dict[str, Any],
    driver: neo4j.Driver,
    tmp_path: Path,
) -> None:
    shadow = graphql(base_url, SHADOW, {"id": subject.person})["patient"]
    s = shadow["shadow"]
    use_token(page, "clin-token")
    bodies = graphql_bodies(page)

    # the patient page links to the shadow
    page.goto(f"/ui/#/patient/{subject.person}")
    page.get_by_test_id("shadow-link").click()
    expect(page.get_by_test_id("patient-shadow")).to_be_visible()
    expect(page.get_by_test_id("shadow-name")).to_contain_text(shadow["name"])
    expect(page.get_by_test_id("back-to-record")).to_have_attribute(
        "href", f"#/patient/{quote(subject.person, safe='')}"
    )
    newest = max(x["computedAt"] for x in s["scores"])
    expect(page.get_by_test_id("shadow-as-of")).to_have_attribute("data-as-of", newest)
    # first paint: the record page's query, then one shadow query, then the window's trends
    shadow_queries = [b for b in bodies if "shadow {" in b["query"] and "vitals" in b["query"]]
    assert len(shadow_queries) == 1, bodies

    # vitals: one row per vital, in the API's order, with its value and its source's badge
    rows = page.get_by_test_id("vital-row")
    expect(rows).to_have_count(len(s["vitals"]))
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.metric)") == [
        v["metric"] for v in s["vitals"]
    ]
    for i, vital in enumerate(s["vitals"]):
        row = rows.nth(i)
        shown = row.get_by_test_id("vital-value").get_attribute("data-value")
        assert float(shown or "nan") == vital["value"], (vital, shown)
        expect(row.get_by_test_id("vital-unit")).to_have_text(vital["unit"])
        expect(row.get_by_test_id("source-badge")).to_have_attribute(
            "data-domain-id", vital["sourceDomain"]
        )
        derived = row.get_by_test_id("vital-derived")
        expect(derived).to_have_count(1 if vital["derived"] else 0)
        if vital["derived"]:
            derived.locator("summary").click()
            expect(derived.get_by_test_id("derived-input")).to_have_text(
                [f"{x['name']}: {x['value']}" for x in vital["inputs"]]
            )

    # trends: the default 30-day window, then 24 hours
    check_charts(page, base_url, trends_request(bodies, "DAYS_30"))
    page.get_by_test_id("shadow-trends").screenshot(path=str(tmp_path / "trends-30d.png"))
    page.get_by_test_id("window-HOURS_24").click()
    expect(page.get_by_test_id("window-HOURS_24")).to_have_attribute("aria-pressed", "true")
    check_charts(page, base_url, trends_request(bodies, "HOURS_24"))

    # scores: value or "incomplete", the inputs used and the inputs missing, as stored
    for score in s["scores"]:
        card = page.locator(f'[data-testid="score-card"][data-name="{score["name"]}"]')
        expect(card).to_have_count(1)
        expect(card).to_have_attribute("data-complete", str(score["complete"]).lower())
        if not score["complete"]:
            expect(card.get_by_test_id("score-value")).to_have_text("incomplete")
        expect(card.get_by_test_id("score-input")).to_have_text(
            [
                f"{x['name']} = {x['value']}" + (f" {x['unit']}" if x["unit"] else "")
                for x in score["inputs"]
            ]
        )
        missing = card.get_by_test_id("score-missing")
        expect(missing).to_have_count(len(score["inputsMissing"]))
        assert missing.evaluate_all("ms => ms.map(m => m.dataset.input)") == score["inputsMissing"]

    # data requests and care gaps: as many rows as the API has, or the empty state
    for testid, items, empty in (
        ("request-row", s["dataRequests"], "requests-empty"),
        ("gap-row", s["careGaps"], "gaps-empty"),
    ):
        expect(page.get_by_test_id(testid)).to_have_count(len(items))
        expect(page.get_by_test_id(empty)).to_have_count(0 if items else 1)
    page.screenshot(path=str(tmp_path / "shadow.png"), full_page=True)

    # alerts: open and acknowledged before resolved; acknowledge the open one in place
    alerts = page.get_by_test_id("alert-row")
    expect(alerts).to_have_count(len(s["alerts"]))
    states = alerts.evaluate_all("rs => rs.map(r => r.dataset.state)")
    assert states == sorted(states, key=lambda x: x == "resolved"), states
    row = page.locator(f'[data-testid="alert-row"][data-id="{subject.alert}"]')
    expect(row.get_by_test_id("alert-severity")).to_have_text(restored_alert["severity"])
    expect(row.get_by_test_id("alert-state")).to_have_text("open")
    row.get_by_test_id("alert-note").fill("seen on the ward round")
    row.get_by_test_id("alert-ack").focus()
    page.keyboard.press("Enter")
    expect(row).to_have_attribute("data-state", "acknowledged")
    expect(row.get_by_test_id("alert-ack")).to_have_count(0)
    expect(row.get_by_test_id("alert-resolve")).to_be_focused()  # the keyboard stays in the row
    after = alert_props(driver, subject.alert)
    assert after["state"] == "acknowledged", after
    entries = [json.loads(e) for e in after["trail"]]
    assert (entries[-1]["action"], entries[-1]["actor"]) == ("acknowledged", CLINICIAN), entries
    row.get_by_test_id("alert-trail").locator("summary").click()
    entry = row.locator('[data-testid="trail-entry"][data-action="acknowledged"]')
    expect(entry).to_have_attribute("data-actor", CLINICIAN)
    expect(entry).to_contain_text("seen on the ward round")
    expect(row.get_by_test_id("trail-entry")).to_have_count(len(entries))


def test_a_role_without_manage_alerts_sees_the_refusal_in_the_row(
    page: Page,
    subject: Subject,
    restored_alert: dict[str, Any],
    driver: neo4j.Driver,
    settings: Settings,
) -> None:
    # the patient themself reads their shadow but may not acknowledge its alerts
    token = authenticator(settings).issue(subject="pat", role="patient", patient=subject.person)
    use_token(page, token)
    page.goto(f"/ui/#/patient/{subject.person}/shadow")
    row = page.locator(f'[data-testid="alert-row"][data-id="{subject.alert}"]')
    row.get_by_test_id("alert-ack").click()
    expect(row.get_by_test_id("alert-error")).to_contain_text("not allowed: manage_alerts")
    expect(row).to_have_attribute("data-state", "open")
    expect(row.get_by_test_id("alert-ack")).to_be_enabled()
    assert alert_props(driver, subject.alert)["trail"] == restored_alert["trail"]


def test_a_role_that_may_not_read_records_sees_the_denial_not_the_data(
    page: Page, subject: Subject
) -> None:
    use_token(page, "int-token")
    page.goto(f"/ui/#/patient/{subject.person}/shadow")
    denied = page.get_by_test_id("access-denied")
    expect(denied).to_be_visible()
    expect(denied).to_contain_text("not allowed: read_patient")
    for testid in ("patient-shadow", "vital-row", "alert-row", "trend-chart", "score-card"):
        expect(page.get_by_test_id(testid)).to_have_count(0)
