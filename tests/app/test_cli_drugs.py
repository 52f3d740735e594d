"""``medshadow drugs …`` as a user runs it, against the session's Neo4j."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import neo4j

from drugs.service import DrugSafety
from tests.conftest import MedWorld, run_cli

SENTENCES = (
    "Concomitant use of warfarin and aspirin increases the risk of bleeding.\n"
    "Clarithromycin may increase the plasma concentrations of simvastatin.\n"
    "No interaction was observed between amoxicillin and omeprazole.\n"
)


def test_load_reports_and_is_idempotent(
    neo4j_uri: str, tmp_path: Path, drug_knowledge: Any
) -> None:
    done = run_cli(["drugs", "load"], neo4j_uri, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        f"interactions (pairs)  {drug_knowledge.interactions}"
        in " ".join(done.stderr.replace("│", " ").split())
        or str(drug_knowledge.interactions) in done.stderr
    )
    # loaded already by the session: nothing changes
    assert "nodes created or changed" in done.stderr
    row = next(line for line in done.stderr.splitlines() if "nodes created or changed" in line)
    assert row.replace("│", " ").split()[-1] == "0"


def test_check_prints_ranked_findings(neo4j_uri: str, tmp_path: Path, drug_knowledge: Any) -> None:
    done = run_cli(["drugs", "check", "warfarin", "aspirin", "qqzz"], neo4j_uri, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    first = next(line for line in lines if "contraindicated" in line or "interrupt" in line)
    assert "interrupt" in first
    assert "not recognised: qqzz" in done.stderr


def test_review_and_what_if(neo4j_uri: str, tmp_path: Path, med_world: MedWorld) -> None:
    done = run_cli(["drugs", "review", med_world.person], neo4j_uri, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "conflict:" in done.stderr
    assert med_world.unknown in done.stderr
    bad = run_cli(["drugs", "review", med_world.person, "--propose", "zzq"], neo4j_uri, tmp_path)
    assert bad.returncode == 1
    assert "no drug matches 'zzq'" in bad.stderr


def test_mined_statements_stay_apart_from_curated_knowledge(
    driver: neo4j.Driver, neo4j_uri: str, tmp_path: Path, drug_knowledge: Any
) -> None:
    service = DrugSafety(driver)
    before = service.check_names(["warfarin", "aspirin"]).findings
    text = tmp_path / "letter.txt"
    text.write_text(SENTENCES, encoding="utf-8")
    done = run_cli(["drugs", "mine", str(text)], neo4j_uri, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = driver.execute_query(
        "MATCH (s:InteractionStatement) WHERE s.origin = $o "
        "RETURN s.pairKey AS pair, s.type AS type, s.source AS source, s.curated AS curated",
        o=str(text),
    )[0]
    pairs = {r["pair"]: r for r in rows}
    assert set(pairs) == {"aspirin|warfarin", "clarithromycin|simvastatin"}  # not the negated one
    assert pairs["clarithromycin|simvastatin"]["type"] == "mechanism"
    assert pairs["aspirin|warfarin"]["source"] == "letter.txt#s0"
    assert all(r["curated"] is False for r in rows)
    # curated findings are unchanged; the statement is reachable as literature only
    after = service.check_names(["warfarin", "aspirin"])
    assert after.findings == before
    literature = service.literature(after.items)
    assert [s["sentence"] for s in literature if s["origin"] == str(text)] == [
        SENTENCES.splitlines()[0]
    ]
    again = run_cli(["drugs", "mine", str(text)], neo4j_uri, tmp_path)
    assert "0 new or changed" in again.stderr
    driver.execute_query("MATCH (s:InteractionStatement {origin: $o}) DETACH DELETE s", o=str(text))
