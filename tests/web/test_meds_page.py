"""The clinician's medication review (``/ui/#/patient/<id>/medications``) end to end.

The real app runs under uvicorn; Debian's headless Chromium opens the review of the ``med_world``
person, whose clinic prescriptions meet their own portal entries. Every expected value comes from
the API (``Patient.medicationReview``, ``checkPrescription``) or the fixture, never from
hand-written constants: the page must show what the server decided, in the server's order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from app.server import create_app
from app.settings import Settings
from tests.conftest import MedWorld
from tests.web.conftest import serving, watched_page

TOKENS = {"int-token": "integrator"}  # may not read records; anonymous is a clinician

#: Drugs to try for the what-if; the test uses the first the API says adds an interaction.
WHAT_IF_CANDIDATES = ("warfarin", "clarithromycin", "tramadol")

REVIEW = """
query($id: ID!) {
  patient(id: $id) {
    ... on Patient {
      medicationReview {
        items { key display resolved proposed conflicts sources { domain status } }
        findings { kind priority title }
        counts { interrupt review info }
        activeCount knowledge
        context { age egfr egfrSource pregnant }
        literature { sentence }
      }
    }
  }
}"""

WHAT_IF = """
query($id: ID!, $drug: String!) {
  checkPrescription(patientId: $id, drug: $drug) {
    items { key display proposed }
    findings { kind priority title }
  }
}"""


def post(base_url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL request as the page makes it (anonymous: the default clinician)."""
    response = httpx2.post(
        f"{base_url}/graphql", json={"query": query, "variables": variables}, timeout=60
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def graphql(base_url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The data of a request that must succeed."""
    body = post(base_url, query, variables)
    assert not body.get("errors"), body
    data: dict[str, Any] = body["data"]
    return data


@pytest.fixture(scope="module")
def base_url(settings: Settings, med_world: MedWorld) -> Iterator[str]:
    tuned = settings.model_copy(update={"api": settings.api.model_copy(update={"tokens": TOKENS})})
    with serving(create_app(tuned), "uvicorn-meds") as url:
        yield url


@pytest.fixture(scope="module")
def review(base_url: str, med_world: MedWorld) -> dict[str, Any]:
    """The API's medication review of the med_world person."""
    data = graphql(base_url, REVIEW, {"id": med_world.person})
    result: dict[str, Any] = data["patient"]["medicationReview"]
    return result


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    with watched_page(browser, base_url, viewport={"width": 1366, "height": 900}) as pg:
        yield pg


def texts(locator: Locator) -> list[str]:
    found: list[str] = locator.evaluate_all("es => es.map(e => e.textContent.trim())")
    return found


def item_row(page: Page, key: str) -> Locator:
    return page.locator(f'[data-testid="med-item"][data-key={json.dumps(key)}]')


def test_patient_page_summarises_the_review_and_links_to_it(
    page: Page, med_world: MedWorld, review: dict[str, Any], tmp_path: Path
) -> None:
    page.goto(f"/ui/#/patient/{med_world.person}")
    summary = page.get_by_test_id("meds-summary")
    expect(summary.get_by_test_id("meds-count")).to_have_count(3)
    for priority, count in review["counts"].items():
        chip = summary.locator(f'[data-testid="meds-count"][data-priority="{priority}"]')
        expect(chip).to_have_attribute("data-count", str(count))
        expect(chip).to_have_text(f"{count} {priority}")
    expect(summary.get_by_test_id("meds-active-count")).to_contain_text(str(review["activeCount"]))
    # keyboard: the link is reachable and opens the full review
    summary.screenshot(path=str(tmp_path / "summary.png"))
    summary.get_by_test_id("meds-link").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("patient-meds")).to_be_visible()
    assert page.url.endswith(f"#/patient/{quote(med_world.person, safe='')}/medications")


def test_review_shows_the_reconciled_list_and_ranked_findings(
    page: Page, med_world: MedWorld, review: dict[str, Any], tmp_path: Path
) -> None:
    page.goto(f"/ui/#/patient/{med_world.person}/medications")
    expect(page.get_by_test_id("patient-meds")).to_be_visible()
    header = page.get_by_test_id("meds-header")
    expect(header.get_by_test_id("meds-active")).to_have_text(str(review["activeCount"]))
    expect(header.get_by_test_id("meds-knowledge")).to_have_text(review["knowledge"])
    poly = [f for f in review["findings"] if f["kind"] == "polypharmacy"]
    expect(header.get_by_test_id("meds-polypharmacy")).to_have_count(len(poly[:1]))
    # the patient context the checks used, shown only where the graph has it
    context = review["context"] or {}
    age, egfr = context.get("age"), context.get("egfr")
    expect(header.get_by_test_id("meds-age")).to_have_text([] if age is None else [f"{int(age)} y"])
    expect(header.get_by_test_id("meds-egfr")).to_have_count(0 if egfr is None else 1)
    if egfr is not None and context["egfrSource"]:
        expect(header.get_by_test_id("meds-egfr-source")).to_have_count(1)
    expect(header.get_by_test_id("meds-pregnant")).to_have_count(
        1 if context.get("pregnant") else 0
    )

    # the reconciled list: one row per item, in the API's order, each with its own conflicts
    rows = page.get_by_test_id("med-item")
    expect(rows).to_have_count(len(review["items"]))
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.key)") == [
        i["key"] for i in review["items"]
    ]
    assert texts(rows.get_by_test_id("item-display")) == [i["display"] for i in review["items"]]
    for item in review["items"]:
        row = item_row(page, item["key"])
        expect(row.get_by_test_id("item-source")).to_have_count(len(item["sources"]))
        expect(row.get_by_test_id("item-conflict")).to_have_text(
            [f"Conflict: {c}" for c in item["conflicts"]]
        )
        expect(row.get_by_test_id("item-unresolved")).to_have_count(0 if item["resolved"] else 1)

    # the portal says the patient stopped a clinic drug: that conflict sits on the drug's row
    by_key = {i["key"]: i for i in review["items"]}
    stopped = by_key[med_world.stopped]
    said = [c for c in stopped["conflicts"] if c.startswith(f"{med_world.portal} records it as")]
    assert said, stopped
    expect(item_row(page, med_world.stopped).get_by_test_id("item-conflict")).to_contain_text(said)
    portal = item_row(page, med_world.stopped).locator(
        f'[data-testid="item-source"][data-domain="{med_world.portal}"]'
    )
    expect(portal).to_have_attribute("data-active", "false")
    # the portal lists `same` at another strength: that disagreement sits on its row
    differ = [
        c
        for c in by_key[med_world.same]["conflicts"]
        if c.startswith("strengths differ") and med_world.portal in c
    ]
    assert len(differ) == 1, by_key[med_world.same]
    same = item_row(page, med_world.same).get_by_test_id("item-conflict")
    expect(same.filter(has_text=differ[0])).to_have_count(1)
    # the portal entry no dictionary name matches is kept and flagged, never dropped
    unknown = [i for i in review["items"] if i["display"] == med_world.unknown]
    assert len(unknown) == 1, review["items"]
    assert not unknown[0]["resolved"], unknown
    expect(item_row(page, unknown[0]["key"]).get_by_test_id("item-unresolved")).to_have_text(
        "not recognised"
    )

    # interrupt findings open and first, in the API's order; review and info folded with counts
    interrupt = page.get_by_test_id("findings-interrupt")
    wanted = [f["title"] for f in review["findings"] if f["priority"] == "interrupt"]
    assert texts(interrupt.get_by_test_id("finding-title")) == wanted
    expect(interrupt.get_by_test_id("interrupt-empty")).to_have_count(0 if wanted else 1)
    for title in interrupt.get_by_test_id("finding-title").all():
        expect(title).to_be_visible()
    for priority in ("review", "info"):
        fold = page.get_by_test_id(f"findings-{priority}")
        titles = [f["title"] for f in review["findings"] if f["priority"] == priority]
        assert len(titles) == review["counts"][priority]
        expect(fold).not_to_have_attribute("open", "")
        expect(fold.get_by_test_id("fold-count")).to_have_text(str(review["counts"][priority]))
        for title in fold.get_by_test_id("finding-title").all():
            expect(title).to_be_hidden()
        # keyboard: Enter on the summary unfolds the group, in the API's order
        fold.locator("summary").focus()
        page.keyboard.press("Enter")
        expect(fold).to_have_attribute("open", "")
        expect(fold.get_by_test_id("finding-title")).to_have_text(titles)

    # text-mined literature: its own folded section, with the API's statements or "none"
    literature = page.get_by_test_id("meds-literature")
    expect(literature).not_to_have_attribute("open", "")
    expect(literature.get_by_test_id("literature-row")).to_have_count(len(review["literature"]))
    expect(literature.get_by_test_id("literature-empty")).to_have_count(
        0 if review["literature"] else 1
    )
    page.screenshot(path=str(tmp_path / "medication-review.png"), full_page=True)


def test_what_if_shows_the_findings_a_prescription_would_add(
    page: Page, base_url: str, med_world: MedWorld, tmp_path: Path
) -> None:
    answers = {
        d: graphql(base_url, WHAT_IF, {"id": med_world.person, "drug": d})["checkPrescription"]
        for d in WHAT_IF_CANDIDATES
    }
    drug = next(
        (d for d, a in answers.items() if any(f["kind"] == "interaction" for f in a["findings"])),
        None,
    )
    assert drug is not None, f"none of {WHAT_IF_CANDIDATES} adds an interaction: {answers}"
    expected = answers[drug]
    proposed = [i for i in expected["items"] if i["proposed"]]
    assert len(proposed) == 1, expected["items"]
    refused = post(base_url, WHAT_IF, {"id": med_world.person, "drug": med_world.unknown})
    assert refused["data"] is None, refused
    assert refused["errors"], refused
    refusal = refused["errors"][0]["message"]
    assert med_world.unknown in refusal, refusal

    page.goto(f"/ui/#/patient/{med_world.person}/medications")
    box = page.get_by_test_id("meds-whatif")
    box.get_by_label("Check a new prescription").fill(drug)
    box.get_by_test_id("whatif-input").press("Enter")  # keyboard: Enter submits
    result = box.get_by_test_id("whatif-result")
    expect(result).to_have_attribute("data-drug", drug)
    expect(result.get_by_test_id("finding-title")).to_have_text(
        [f["title"] for f in expected["findings"]]
    )
    assert result.get_by_test_id("finding").evaluate_all(
        "fs => fs.map(f => f.dataset.priority)"
    ) == [f["priority"] for f in expected["findings"]]
    row = item_row(page, proposed[0]["key"])
    expect(row).to_have_attribute("data-proposed", "true")
    expect(row.get_by_test_id("item-proposed")).to_have_text("proposed")
    page.screenshot(path=str(tmp_path / "what-if.png"), full_page=True)

    # an unknown name: the API's error, naming the drug; the proposed row is withdrawn
    box.get_by_test_id("whatif-input").fill(med_world.unknown)
    box.get_by_test_id("whatif-submit").click()
    error = result.get_by_test_id("whatif-error")
    expect(error).to_contain_text(refusal)
    expect(result.get_by_test_id("finding")).to_have_count(0)
    expect(page.locator('[data-testid="med-item"][data-proposed="true"]')).to_have_count(0)


def test_a_role_that_may_not_read_records_sees_the_denial_not_the_data(
    page: Page, med_world: MedWorld
) -> None:
    page.add_init_script(f"localStorage.setItem('medshadowToken', {json.dumps('int-token')})")
    page.goto(f"/ui/#/patient/{med_world.person}/medications")
    denied = page.get_by_test_id("access-denied")
    expect(denied).to_be_visible()
    expect(denied).to_contain_text("not allowed: read_patient")
    for testid in ("patient-meds", "med-item", "finding", "meds-whatif"):
        expect(page.get_by_test_id(testid)).to_have_count(0)
