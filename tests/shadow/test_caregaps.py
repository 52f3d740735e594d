"""Care-gap rules as data, evaluated on the sample graph: every open gap is checked against an
independent Cypher reading of the same facts; re-evaluation is idempotent; a gap closes when
the required fact arrives."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import neo4j
import pytest
from starlette.testclient import TestClient

from app.pipeline import LoadReport
from app.server import create_app
from app.settings import Settings
from graph.caregaps import person_gaps
from shadow.caregaps import (
    CareGapRuleError,
    add_months,
    default_rules,
    evaluate,
    load_rules,
)
from tests.conftest import graphql_request, run_cli


@pytest.fixture(scope="module")
def as_of(driver: neo4j.Driver, loaded_sample: LoadReport) -> date:
    """The sample's own "today": the day of its newest fact."""
    records, _, _ = driver.execute_query(
        "MATCH (f:Observation) WHERE f.date IS NOT NULL RETURN max(f.date) AS d"
    )
    newest = records[0]["d"].to_native()
    assert isinstance(newest, datetime)
    return newest.date()


def _last_required(
    driver: neo4j.Driver, person: str, label: str, codes: list[str], as_of: date
) -> date | None:
    """Independent of graph/caregaps.py: walk the person's records and facts by hand."""
    records, _, _ = driver.execute_query(
        "MATCH (:Person {uid: $p})<-[:RECORD_OF]-(r:Patient)<-[:ABOUT]-(f)-[:CODED_AS]->(k) "
        "WHERE $label IN labels(f) AND k.uid IN $codes RETURN f.date AS d",
        p=person,
        label=label,
        codes=codes,
    )
    end = datetime.combine(as_of, time(23, 59, 59), tzinfo=UTC)
    days = [r["d"].to_native() for r in records if r["d"] is not None]
    days = [d for d in days if d <= end]
    return max(days).date() if days else None


def test_rules_file_is_data_and_checked(tmp_path: Path) -> None:
    rules = default_rules()
    assert {r.id for r in rules} >= {"diabetes-hba1c", "hypertension-bp", "influenza-older-adults"}
    assert all(r.reference for r in rules)
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "- {id: a, title: t, population: {}, requires: {kind: Observation, codes: ['nope']},"
        " every_months: 6, reference: r}\n"
        "- {id: a, title: t, population: {}, requires: {kind: Potion, codes: ['loinc|1-8']},"
        " every_months: 0, reference: r}\n",
        encoding="utf-8",
    )
    with pytest.raises(CareGapRuleError) as caught:
        load_rules(bad)
    message = str(caught.value)
    assert str(bad) in message
    assert "rule a: requires.codes" in message
    assert "not 'system|code'" in message
    assert "requires.kind" in message
    assert "every_months" in message


def test_add_months_clamps_to_the_month() -> None:
    assert add_months(date(2025, 8, 31), 6) == date(2026, 2, 28)
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    assert add_months(date(2025, 11, 15), 3) == date(2026, 2, 15)


def test_open_gaps_match_the_graph_and_reevaluation_is_idempotent(
    driver: neo4j.Driver, as_of: date
) -> None:
    first = evaluate(driver, as_of)
    assert first.gaps, "the sample should have at least one care gap"
    rules = {r.id: r for r in default_rules()}
    for gap in first.gaps:
        rule = rules[gap.rule]
        last = _last_required(driver, gap.person, rule.requires.kind, rule.requires.codes, as_of)
        assert last == gap.last_done
        if last is not None:
            assert add_months(last, rule.every_months) <= as_of
            assert gap.due == add_months(last, rule.every_months)
        else:
            assert gap.due == as_of
        stored = {g["rule"]: g for g in person_gaps(driver, gap.person, status="open")}
        assert stored[gap.rule]["title"] == rule.title
        assert stored[gap.rule]["dueDate"].to_native() == gap.due
    # the dead have no care gaps
    persons = sorted({g.person for g in first.gaps})
    records, _, _ = driver.execute_query(
        "MATCH (p:Person)<-[:RECORD_OF]-(r:Patient) WHERE p.uid IN $p AND r.deceased IS NOT NULL "
        "RETURN count(r) AS n",
        p=persons,
    )
    assert records[0]["n"] == 0
    # people of a population without a gap did the required thing in the window
    gapped = {(g.rule, g.person) for g in first.gaps}
    assert sum(first.population.values()) > len(gapped)

    again = evaluate(driver, as_of)
    assert (again.opened, again.closed) == (0, 0)
    assert {(g.rule, g.person) for g in again.gaps} == gapped


def test_gap_closes_when_the_required_fact_arrives(driver: neo4j.Driver, as_of: date) -> None:
    evaluation = evaluate(driver, as_of)
    gap = evaluation.gaps[0]
    rule = next(r for r in default_rules() if r.id == gap.rule)
    fact = f"test-fact-{uuid.uuid4().hex[:8]}"
    when = datetime.combine(as_of - timedelta(days=1), time(9), tzinfo=UTC)
    driver.execute_query(
        "MATCH (:Person {uid: $p})<-[:RECORD_OF]-(r:Patient) WITH r LIMIT 1 "
        "MERGE (k:Concept {uid: $code}) "
        f"CREATE (f:{rule.requires.kind} {{uid: $fact, date: $when, sourceDomain: 'mis:test'}}) "
        "CREATE (f)-[:ABOUT]->(r) CREATE (f)-[:CODED_AS]->(k)",
        p=gap.person,
        code=rule.requires.codes[0],
        fact=fact,
        when=when,
    )
    try:
        after = evaluate(driver, as_of)
        assert after.closed >= 1
        assert (gap.rule, gap.person) not in {(g.rule, g.person) for g in after.gaps}
        history = {g["rule"]: g for g in person_gaps(driver, gap.person)}
        assert history[gap.rule]["status"] == "closed"
        assert history[gap.rule]["closedAt"] is not None
    finally:
        driver.execute_query("MATCH (f {uid: $fact}) DETACH DELETE f", fact=fact)
        evaluate(driver, as_of)  # the gap opens again: leave the graph as the others found it


def test_cli_and_graphql_show_the_gaps(
    driver: neo4j.Driver, as_of: date, settings: Settings, neo4j_uri: str, tmp_path: Path
) -> None:
    done = run_cli(["shadow", "gaps", "--as-of", as_of.isoformat()], neo4j_uri, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"care gaps as of {as_of.isoformat()}" in done.stderr
    gaps = evaluate(driver, as_of).gaps
    assert f"{len(gaps)} open care gaps (0 new, 0 closed" in done.stderr
    bad = run_cli(["shadow", "gaps", "--as-of", "yesterday"], neo4j_uri, tmp_path)
    assert bad.returncode == 2
    assert "is not YYYY-MM-DD" in bad.stderr

    person = gaps[0].person
    expected = sorted(g.rule for g in gaps if g.person == person)
    tokens = {"doc": "clinician", "nope": "none"}
    tuned = settings.model_copy(update={"api": settings.api.model_copy(update={"tokens": tokens})})
    query = """query($id: ID!) { patient(id: $id) { __typename ... on Patient {
      shadow { careGaps(status: "open") { rule title status dueDate lastDone reference } } }
      ... on AccessDenied { message } } }"""
    with TestClient(create_app(tuned, driver=driver)) as client:
        body = graphql_request(client, query, "doc", id=person)
        shown = body["data"]["patient"]["shadow"]["careGaps"]
        assert sorted(g["rule"] for g in shown) == expected
        assert all(g["status"] == "open" and g["reference"] for g in shown)
        refused = graphql_request(client, query, "nope", id=person)
        assert refused["data"]["patient"] == {
            "__typename": "AccessDenied",
            "message": "not allowed: read_patient",
        }
