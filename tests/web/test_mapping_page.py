"""The terminologist's mapping workbench (``/ui/mapping.html``) end to end, keyboard only.

The real app runs under uvicorn with its mapping engine; suggestions for the localized clinic's
lab codes are made through GraphQL in a workspace of this module's own; Debian's headless
Chromium works the queue. Expected values come from the API (the queue, candidates, agreement)
and from the graph (Cypher through the ``driver`` fixture), never from hand-written constants.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx2
import neo4j
import pytest
from playwright.sync_api import (
    Browser,
    Page,
    expect,
)

from app.server import create_app
from app.settings import Settings
from ontology.model import Label, RelType
from terminology.model import LOINC
from tests.conftest import MappingWorld
from tests.web.conftest import serving, watched_page

TOKENS = {"term-token": "terminologist:alice", "clin-token": "clinician"}
OPEN = ["UNREVIEWED", "FLAGGED"]  # the page's default status filter

MAPPING_FIELDS = """
id sourceCode status targetCode reviewer comment
candidates { code display score }
"""

MAPPING_STATE = f"""
MATCH (m:{Label.MAPPING.value} {{uid: $uid}})
OPTIONAL MATCH (h:{Label.MAPPING_CHANGE.value})-[:{RelType.REVISES.value}]->(m)
WITH m, h ORDER BY h.at
RETURN m.status AS status, m.targetCode AS targetCode, m.reviewer AS reviewer,
       m.comment AS comment, [x IN collect(h) | x.action] AS actions
"""

FACTS_CODED_BY_MAP = f"""
MATCH ()-[r:{RelType.CODED_AS.value} {{map: $name}}]->()
RETURN count(r) AS n
"""

CURRENT_MAP = f"""
MATCH (c:{Label.CONCEPT_MAP.value} {{name: $name, current: true}})
RETURN c.version AS version, c.elements AS elements
"""


def graphql(base_url: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    """A GraphQL request with the terminologist's token; fails on any error."""
    response = httpx2.post(
        f"{base_url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": "Bearer term-token"},
        timeout=600,
    )
    body = response.json()
    assert response.status_code == 200, body
    assert not body.get("errors"), body
    return body["data"]


def suggest(base_url: str, world: MappingWorld, workspace: str, codes: list[str] | None) -> Any:
    data = graphql(
        base_url,
        """
        mutation($s: String!, $t: String!, $w: String!, $codes: [String!]) {
          suggestMappings(sourceSystem: $s, targetSystem: $t, workspace: $w, codes: $codes) {
            codes changed withoutCandidates
          }
        }""",
        {"s": world.lab_system, "t": LOINC, "w": workspace, "codes": codes},
    )
    return data["suggestMappings"]


def open_queue(base_url: str, world: MappingWorld, workspace: str) -> list[dict[str, Any]]:
    """The first page of the queue as the page asks for it."""
    data = graphql(
        base_url,
        f"""
        query($s: String, $t: String, $w: String!, $st: [MappingStatus!]) {{
          mappings(sourceSystem: $s, targetSystem: $t, workspace: $w, status: $st, first: 50) {{
            items {{ {MAPPING_FIELDS} }}
          }}
        }}""",
        {"s": world.lab_system, "t": LOINC, "w": workspace, "st": OPEN},
    )
    items: list[dict[str, Any]] = data["mappings"]["items"]
    return items


def graph_state(driver: neo4j.Driver, uid: str) -> dict[str, Any]:
    records, _, _ = driver.execute_query(
        MAPPING_STATE, {"uid": uid}, routing_=neo4j.RoutingControl.READ
    )
    assert records, f"no mapping {uid} in the graph"
    return dict(records[0])


@pytest.fixture(scope="module")
def base_url(settings: Settings, mapping_world: MappingWorld) -> Iterator[str]:
    """The real app (with its mapping engine) on a free port, served by uvicorn in a thread."""
    api = settings.api.model_copy(update={"tokens": TOKENS})
    with serving(create_app(settings.model_copy(update={"api": api})), "uvicorn-mapping") as url:
        yield url


@pytest.fixture(scope="module")
def workspace(base_url: str, mapping_world: MappingWorld) -> str:
    """Suggestions for the clinic's lab codes in a workspace no other test uses."""
    name = f"web-{uuid4().hex[:6]}"
    out = suggest(base_url, mapping_world, name, None)
    assert out["codes"] >= 6, out  # enough rows for every step below
    assert out["changed"] == out["codes"], out
    return name


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh page (empty localStorage) that fails its test on console errors."""
    viewport = {"width": 1400, "height": 950}
    with watched_page(
        browser, base_url, timeout_ms=20_000, viewport=viewport, accept_downloads=True
    ) as pg:
        yield pg


def test_terminologist_works_the_queue_with_the_keyboard(
    page: Page,
    base_url: str,
    workspace: str,
    mapping_world: MappingWorld,
    driver: neo4j.Driver,
    tmp_path: Path,
) -> None:
    queue = open_queue(base_url, mapping_world, workspace)
    assert len(queue) >= 6, queue
    assert len(queue[0]["candidates"]) >= 2, queue[0]

    page.goto("/ui/mapping.html#token=term-token")
    expect(page.get_by_test_id("workbench")).to_be_visible()
    # the token moved into localStorage and out of the address bar (and its history)
    assert "token" not in page.url, page.url
    assert page.evaluate("localStorage.getItem('medshadowToken')") == "term-token"

    picker = page.get_by_test_id("project-picker")
    picker.select_option(value=f"{workspace}|{mapping_world.lab_system}|{LOINC}")
    expect(picker).to_contain_text(workspace)
    picker.press("Escape")  # back to the queue

    rows = page.get_by_test_id("queue-row")
    expect(rows.first).to_have_attribute("data-id", queue[0]["id"])
    expect(rows).to_have_count(len(queue))
    # ordered as the API returns them (most frequent local codes first)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.code)") == [
        m["sourceCode"] for m in queue
    ]
    expect(rows.first).to_have_attribute("aria-current", "true")

    # the first row in detail: its ranked candidates with their scores
    first = queue[0]
    detail = page.get_by_test_id("detail")
    expect(detail.get_by_test_id("detail-code")).to_have_text(first["sourceCode"])
    candidates = detail.get_by_test_id("candidate")
    expect(candidates).to_have_count(len(first["candidates"]))
    assert candidates.evaluate_all("cs => cs.map(c => c.dataset.code)") == [
        c["code"] for c in first["candidates"]
    ]
    expect(candidates.first.get_by_test_id("candidate-score")).to_have_text(
        f"{first['candidates'][0]['score']:.2f}"
    )
    chosen = detail.locator('[data-testid="candidate"][aria-current="true"]')
    expect(chosen).to_have_attribute("data-code", first["targetCode"])
    page.screenshot(path=str(tmp_path / "mapping-queue.png"), full_page=True)

    # 2 then a: candidate 2 becomes the target and the mapping is approved; the cursor moves on
    second_code = first["candidates"][1]["code"]
    page.keyboard.press("2")
    page.keyboard.press("a")
    expect(rows.nth(0)).to_have_attribute("data-status", "approved")
    expect(rows.nth(0)).to_have_attribute("data-target-code", second_code)
    expect(rows.nth(0).get_by_test_id("row-target")).to_contain_text(second_code)
    expect(rows.nth(1)).to_have_attribute("aria-current", "true")
    saved = graph_state(driver, first["id"])
    assert (saved["status"], saved["targetCode"], saved["reviewer"]) == (
        "approved",
        second_code,
        "alice",
    ), saved
    assert "review" in saved["actions"], saved
    history = graphql(
        base_url,
        "query($id: ID!) { mapping(id: $id) { history { action by } } }",
        {"id": first["id"]},
    )["mapping"]["history"]
    assert {"action": "review", "by": "alice"} in history, history

    # r on the next row rejects it
    page.keyboard.press("r")
    expect(rows.nth(1)).to_have_attribute("data-status", "rejected")
    assert graph_state(driver, queue[1]["id"])["status"] == "rejected"
    expect(rows.nth(2)).to_have_attribute("aria-current", "true")

    # x on two rows, then A: both approved with their top candidate in one bulk action
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.get_by_test_id("page-info")).to_contain_text("2 selected")
    page.keyboard.press("Shift+A")
    for i in (2, 3):
        top = queue[i]["candidates"][0]["code"]
        expect(rows.nth(i)).to_have_attribute("data-status", "approved")
        expect(rows.nth(i)).to_have_attribute("data-target-code", top)
        state = graph_state(driver, queue[i]["id"])
        assert (state["status"], state["targetCode"], state["reviewer"]) == (
            "approved",
            top,
            "alice",
        ), state
        assert "bulk" in state["actions"], state
    expect(page.get_by_test_id("mw-status")).to_contain_text("Approved 2 mappings")

    # c, a comment, Enter: saved; the letters typed into the box decide nothing
    expect(rows.nth(3)).to_have_attribute("aria-current", "true")
    comment = f"ref range differs; ask the lab ({workspace})"
    page.keyboard.press("c")
    expect(page.get_by_test_id("comment")).to_be_focused()
    page.keyboard.type(comment)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("mw-status")).to_contain_text(
        f"Comment saved on {queue[3]['sourceCode']}"
    )
    state = graph_state(driver, queue[3]["id"])
    assert (state["comment"], state["status"]) == (comment, "approved"), state
    assert graph_state(driver, queue[4]["id"])["status"] == "unreviewed"
    expect(rows.nth(3)).to_be_focused()  # Enter left the box

    # the history of the current row, then the help overlay
    page.keyboard.press("h")
    entries = page.get_by_test_id("history-entry")
    expect(entries).to_have_count(len(state["actions"]))
    expect(entries.last).to_contain_text("alice")
    page.keyboard.press("?")
    expect(page.get_by_test_id("help")).to_be_visible()
    expect(page.get_by_test_id("help")).to_contain_text("approve all selected")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("help")).to_be_hidden()

    # publish under a name of this test's own: version and facts coded as the graph has them
    map_name = f"{workspace}-lab-to-loinc"
    page.get_by_test_id("map-name").focus()
    page.keyboard.type(map_name)
    page.keyboard.press("Enter")
    result = page.get_by_test_id("publish-result")
    expect(result.get_by_test_id("publish-name")).to_have_text(map_name)
    records, _, _ = driver.execute_query(
        CURRENT_MAP, {"name": map_name}, routing_=neo4j.RoutingControl.READ
    )
    assert records, f"no current concept map {map_name}"
    expect(result.get_by_test_id("publish-version")).to_have_text(records[0]["version"])
    expect(result.get_by_test_id("publish-elements")).to_have_text(str(records[0]["elements"]))
    coded, _, _ = driver.execute_query(
        FACTS_CODED_BY_MAP, {"name": map_name}, routing_=neo4j.RoutingControl.READ
    )
    assert coded[0]["n"] > 0
    expect(result.get_by_test_id("publish-facts")).to_have_text(str(coded[0]["n"]))
    approved = [queue[0], queue[2], queue[3]]
    assert records[0]["elements"] == len(approved)

    # the FHIR export downloads the published ConceptMap
    with page.expect_download() as download_info:
        result.get_by_test_id("export-fhir").focus()
        page.keyboard.press("Enter")
    document = json.loads(Path(download_info.value.path()).read_text(encoding="utf-8"))
    assert document["resourceType"] == "ConceptMap"
    assert document["version"] == records[0]["version"]
    mapped = {
        e["code"]: [t["code"] for t in e["target"]] for g in document["group"] for e in g["element"]
    }
    assert mapped == {
        m["sourceCode"]: [graph_state(driver, m["id"])["targetCode"]] for m in approved
    }
    page.screenshot(path=str(tmp_path / "mapping-published.png"), full_page=True)


def test_agreement_of_two_workspaces(
    page: Page, base_url: str, workspace: str, mapping_world: MappingWorld
) -> None:
    """A second reviewer maps three codes in a workspace of their own; the panel shows the
    report the API gives."""
    other = f"{workspace}-b"
    codes = [m["sourceCode"] for m in open_queue(base_url, mapping_world, workspace)[:3]]
    suggest(base_url, mapping_world, other, codes)
    theirs = open_queue(base_url, mapping_world, other)
    ids = [m["id"] for m in theirs]
    graphql(
        base_url,
        "mutation($ids: [ID!]!) { bulkReviewMappings(ids: $ids, status: APPROVED, acceptTop: true) { id } }",
        {"ids": ids},
    )
    expected = graphql(
        base_url,
        """
        query($s: String!, $t: String!, $a: String!, $b: String!) {
          mappingAgreement(sourceSystem: $s, targetSystem: $t, workspaceA: $a, workspaceB: $b) {
            compared codes percent disagreements { sourceCode }
          }
        }""",
        {"s": mapping_world.lab_system, "t": LOINC, "a": workspace, "b": other},
    )["mappingAgreement"]

    page.goto("/ui/mapping.html#token=term-token")
    picker = page.get_by_test_id("project-picker")
    picker.select_option(value=f"{workspace}|{mapping_world.lab_system}|{LOINC}")
    expect(page.get_by_test_id("workspace-a")).to_have_value(workspace)
    page.get_by_test_id("workspace-b").focus()
    page.keyboard.type(other)
    page.keyboard.press("Enter")
    panel = page.get_by_test_id("agreement-result")
    expect(panel.get_by_test_id("agreement-percent")).to_have_text(
        f"{expected['percent'] * 100:.1f} %"
    )
    expect(panel.get_by_test_id("agreement-compared")).to_have_text(
        f"{expected['compared']} of {expected['codes']} codes"
    )
    rows = panel.get_by_test_id("disagreement-row")
    expect(rows).to_have_count(len(expected["disagreements"]))
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.code)")) == sorted(
        d["sourceCode"] for d in expected["disagreements"]
    )


def test_clinician_token_is_refused_and_sees_no_queue(page: Page, base_url: str) -> None:
    page.goto("/ui/mapping.html#token=clin-token")
    message = page.get_by_test_id("auth-message")
    expect(message).to_be_visible()
    expect(message).to_contain_text("not allowed: curate_mappings")
    expect(page.get_by_test_id("workbench")).to_be_hidden()
    expect(page.get_by_test_id("queue-row")).to_have_count(0)
    assert "token" not in page.url
    # keys do nothing without a workbench
    page.keyboard.press("a")
    expect(page.get_by_test_id("queue-row")).to_have_count(0)


def test_missing_token_says_how_to_get_one(page: Page, base_url: str) -> None:
    page.goto("/ui/mapping.html")
    message = page.get_by_test_id("auth-message")
    expect(message).to_contain_text("No access token")
    expect(message).to_contain_text(re.compile(r"mapping\.html#token="))
    expect(page.get_by_test_id("workbench")).to_be_hidden()
    # a terminologist's token entered in the form opens the workbench
    page.get_by_test_id("token-input").fill("term-token")
    page.get_by_test_id("token-input").press("Enter")
    expect(page.get_by_test_id("workbench")).to_be_visible()
    expect(page.get_by_test_id("auth-message")).to_be_hidden()
