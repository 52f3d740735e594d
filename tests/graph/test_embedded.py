"""The embedded Neo4j is a real Neo4j 5.26 with APOC, and fails clearly when it cannot start."""

from __future__ import annotations

from pathlib import Path

import neo4j
import pytest

from graph.connection import apoc_version
from graph.embedded import EmbeddedNeo4j, free_port
from graph.errors import EmbeddedNeo4jError
from graph.schema import schema_statements
from ontology.model import Label


def test_apoc_and_version(driver: neo4j.Driver) -> None:
    records, _, _ = driver.execute_query("RETURN apoc.version() AS v")
    assert records[0]["v"].startswith("5.26")
    assert apoc_version(driver) == records[0]["v"]
    records, _, _ = driver.execute_query("CALL dbms.components() YIELD versions, edition")
    assert records[0]["versions"][0].startswith("5.26")
    assert records[0]["edition"] == "community"


def test_status_reports_running_server(neo4j_server: EmbeddedNeo4j) -> None:
    status = neo4j_server.status()
    assert status.running
    assert status.uri == f"bolt://127.0.0.1:{neo4j_server.port}"


def test_schema_has_a_uid_constraint_per_ontology_label(driver: neo4j.Driver) -> None:
    records, _, _ = driver.execute_query(
        "SHOW CONSTRAINTS YIELD labelsOrTypes, properties, type "
        "WHERE type = 'UNIQUENESS' RETURN labelsOrTypes[0] AS label, properties AS props"
    )
    constrained = {r["label"] for r in records if r["props"] == ["uid"]}
    assert constrained == {label.value for label in Label}
    # Creating the schema again is a no-op, not an error.
    for statement in schema_statements():
        driver.execute_query(statement)


def test_missing_jars_error_says_how_to_fix(tmp_path: Path) -> None:
    server = EmbeddedNeo4j(tmp_path / "home", port=free_port(), jars=tmp_path / "nothing")
    with pytest.raises(EmbeddedNeo4jError, match="make setup"):
        server.start(timeout_s=5)


def test_missing_java_error_says_how_to_fix(tmp_path: Path) -> None:
    server = EmbeddedNeo4j(
        tmp_path / "home", port=free_port(), jars=tmp_path, java="no-such-java-binary"
    )
    with pytest.raises(EmbeddedNeo4jError, match="install a JDK 17"):
        server.start(timeout_s=5)


def test_stop_of_a_home_without_server_is_false(tmp_path: Path) -> None:
    server = EmbeddedNeo4j(tmp_path / "home", port=free_port(), jars=tmp_path)
    assert not server.status().running
    assert server.stop() is False
