"""``medshadow terminology embed`` run as a user would, against the session's real Neo4j."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.graph


@pytest.fixture
def system(driver: neo4j.Driver) -> Iterator[str]:
    uri = f"urn:medshadow:test:cli-embed-{uuid.uuid4().hex[:8]}"
    driver.execute_query(
        "UNWIND $rows AS row CREATE (:Concept {uid: $s + '|' + row[0], system: $s, code: row[0], display: row[1]})",
        s=uri,
        rows=[["A", "Asthma"], ["B", "Bronchitis"], ["C", "Common cold"]],
    )
    yield uri
    driver.execute_query("MATCH (c:Concept {system: $s}) DETACH DELETE c", s=uri)


def _embed(args: list[str], neo4j_uri: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(["terminology", "embed", *args], neo4j_uri, tmp_path)


def test_embed_command_writes_vectors_once(
    neo4j_uri: str, driver: neo4j.Driver, system: str, tmp_path: Path
) -> None:
    first = _embed(["--system", system, "--model", "minilm"], neo4j_uri, tmp_path)
    assert first.returncode == 0, first.stderr
    records, _, _ = driver.execute_query(
        "MATCH (c:Concept {system: $s}) RETURN count(c.embMiniLM) AS minilm, count(c.embE5) AS e5",
        s=system,
    )
    assert (records[0]["minilm"], records[0]["e5"]) == (3, 0)
    assert "concept embeddings" in first.stderr

    again = _embed(["--system", system, "--model", "minilm"], neo4j_uri, tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"minilm {system}: 0 embedded, 3 unchanged of 3 concepts" in again.stderr


def test_embed_command_rejects_an_unknown_model(neo4j_uri: str, tmp_path: Path) -> None:
    result = _embed(["--model", "word2vec"], neo4j_uri, tmp_path)
    assert result.returncode == 2
    assert "unknown model(s) word2vec" in result.stderr
