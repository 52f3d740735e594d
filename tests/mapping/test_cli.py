"""``medshadow mapping …`` as an operator runs it, against the session's Neo4j."""

from __future__ import annotations

import getpass
import uuid
from pathlib import Path

import neo4j

from access.mapping import MappingAccess
from access.policy import Principal, Role
from graph.mapping import MappingFilter
from terminology.conceptmap import read_concept_map
from tests.conftest import MappingWorld, run_cli


def test_suggest_list_publish_export_import(
    driver: neo4j.Driver, mapping_world: MappingWorld, neo4j_uri: str, tmp_path: Path
) -> None:
    ws = f"cli-{uuid.uuid4().hex[:6]}"
    system = mapping_world.lab_system
    suggested = run_cli(
        ["mapping", "suggest", system, "--target", "loinc", "--workspace", ws], neo4j_uri, tmp_path
    )
    assert suggested.returncode == 0, suggested.stderr
    access = MappingAccess(driver, Principal("cli-test", Role.TERMINOLOGIST))
    rows, total = access.mappings(MappingFilter(workspace=ws, source_system=system), first=500)
    assert total > 0
    assert f"{total} codes ranked" in suggested.stderr
    assert all(r["status"] == "unreviewed" for r in rows)
    assert {str(h["by"]) for h in access.history(str(rows[0]["uid"]))} == {
        f"cli:{getpass.getuser()}"
    }

    listed = run_cli(
        ["mapping", "list", system, "--target", "loinc", "--workspace", ws, "--limit", "5"],
        neo4j_uri,
        tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert f"{total} mappings" in listed.stderr
    assert str(rows[0]["sourceCode"]) in listed.stderr

    nothing = run_cli(
        ["mapping", "publish", system, "--target", "loinc", "--workspace", ws], neo4j_uri, tmp_path
    )
    assert nothing.returncode == 2
    assert "nothing approved to publish" in nothing.stderr

    access.bulk([str(r["uid"]) for r in rows[:3]], status="approved")
    name = f"cli-map-{ws}"
    published = run_cli(
        ["mapping", "publish", system, "--target", "loinc", "--workspace", ws, "--name", name],
        neo4j_uri,
        tmp_path,
    )
    assert published.returncode == 0, published.stderr
    assert f"published {name} version 1: 3 elements" in published.stderr

    out = tmp_path / "map.sssom.tsv"
    exported = run_cli(
        ["mapping", "export", name, "--format", "sssom", "-o", str(out)], neo4j_uri, tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    doc = read_concept_map(out)
    assert {(e.source_code, e.target_code) for e in doc.elements} == {
        (str(r["sourceCode"]), str(r["targetCode"])) for r in rows[:3]
    }

    imported = run_cli(
        ["mapping", "import", str(out), "--workspace", f"{ws}-b"], neo4j_uri, tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    assert f"published {name} version 2" in imported.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceType": "ConceptMap"', encoding="utf-8")
    refused = run_cli(["mapping", "import", str(broken)], neo4j_uri, tmp_path)
    assert refused.returncode == 2
    assert "broken.json" in refused.stderr
