"""A clinic's local code list imported as its own code system, on the nodes its records use."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import neo4j
import pytest

from loaders.localize import localize_clinic
from terminology.local import language_of, parse_local_codes
from terminology.model import TerminologyError


def _localized(sample_domains: Path, tmp_path: Path) -> tuple[str, Path]:
    split = tmp_path / "domains"
    shutil.copytree(sample_domains, split)
    org = max(
        (d for d in split.iterdir() if d.is_dir()), key=lambda d: len(list(d.glob("*.json")))
    ).name
    report = localize_clinic(split, org, seed=3, out_dir=tmp_path / "local")
    assert report.labs
    return org, tmp_path / "local"


def test_parse_keeps_good_rows_and_reports_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text(
        "code,display,description,unit,frequency\n"
        "LB1,Глюкоза крови,,mg/dL,12\n"
        ",no code,,,\n"
        "LB2,,,,\n"
        "LB1,again,,,\n"
        "LB3,HbA1c,,%,many\n"
        "LB4,Hemoglobin [m/v] bld,,g/dL,3\n",
        encoding="utf-8",
    )
    parsed = parse_local_codes(path, system="urn:medshadow:local:test:lab")
    assert [c.code for c in parsed.concepts] == ["LB1", "LB4"]
    glucose = parsed.concepts[0]
    assert glucose.properties == {"unit": "mg/dL", "frequency": 12}
    assert [(d.value, d.language) for d in glucose.designations] == [("Глюкоза крови", "ru")]
    assert parsed.concepts[1].designations == ()
    assert [(p.line, p.code, p.reason) for p in parsed.problems] == [
        (3, None, "no code"),
        (4, "LB2", "no display"),
        (5, "LB1", "code listed twice"),
        (6, "LB3", "frequency 'many' is not a whole number"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\n1,x\n", encoding="utf-8")
    with pytest.raises(TerminologyError, match="columns code and display"):
        parse_local_codes(bad, system="urn:x")
    assert language_of("Гликированный гемоглобин (HbA1c)") == "ru"
    assert language_of("CKD stage 3") == "en"


def test_import_command_puts_the_list_on_the_clinics_concepts(
    neo4j_uri: str, driver: neo4j.Driver, sample_domains: Path, tmp_path: Path
) -> None:
    org, local = _localized(sample_domains, tmp_path)
    system = f"urn:medshadow:local:{org}:lab"
    env = {**os.environ, "MEDSHADOW_NEO4J__URI": neo4j_uri, "MEDSHADOW_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "app.cli", "terminology", "import-local", str(local / "labs.csv")]
    try:
        done = subprocess.run(
            [*cmd, "--system", system], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        rows, _, _ = driver.execute_query(
            "MATCH (c:Concept {system: $s})-[:IN_VERSION]->(v:CodeSystem) "
            "RETURN count(c) AS n, collect(c.frequency) AS f, collect(v.version)[0] AS v",
            s=system,
        )
        with (local / "labs.csv").open(encoding="utf-8") as fh:
            listed = sum(1 for _ in fh) - 1
        assert rows[0]["n"] == listed
        assert all(isinstance(f, int) and f > 0 for f in rows[0]["f"])
        again = subprocess.run(
            [*cmd, "--system", system], env=env, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0, again.stderr
        count, _, _ = driver.execute_query(
            "MATCH (c:Concept {system: $s}) RETURN count(c) AS n", s=system
        )
        assert count[0]["n"] == listed  # idempotent
    finally:
        driver.execute_query("MATCH (c:Concept {system: $s}) DETACH DELETE c", s=system)
        driver.execute_query("MATCH (v:CodeSystem {system: $s}) DETACH DELETE v", s=system)
