"""``medshadow terminology load`` run as a user would, against the session's real Neo4j."""

from __future__ import annotations

from pathlib import Path

import neo4j

from tests.conftest import run_cli

LOAD = ["terminology", "load"]


def test_load_reports_per_system_and_names_bad_rows(
    neo4j_uri: str, driver: neo4j.Driver, tmp_path: Path
) -> None:
    done = run_cli([*LOAD, "--system", "loinc"], neo4j_uri, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "http://loinc.org" in done.stderr
    assert "top2000-1.6" in done.stderr
    records, _, _ = driver.execute_query(
        "MATCH (c:Concept {uid: 'http://loinc.org|718-7'})-[:IN_VERSION]->(s:CodeSystem) "
        "RETURN c.display AS d, collect(s.version) AS v"
    )
    assert records[0]["d"] == "Hemoglobin [Mass/volume] in Blood"
    assert "top2000-1.6" in records[0]["v"]

    ucum = run_cli([*LOAD, "--system", "ucum"], neo4j_uri, tmp_path)
    assert ucum.returncode == 3  # loaded, one row of the common-units table reported
    assert "ucum_examples.tsv:838: Torr: not valid UCUM" in ucum.stderr.replace("\n", "")


def test_unknown_source_fails_clearly(neo4j_uri: str, tmp_path: Path) -> None:
    done = run_cli([*LOAD, "--system", "nope"], neo4j_uri, tmp_path)
    assert done.returncode == 2
    assert "unknown sources ['nope']" in done.stderr
