"""``medshadow load portal`` / ``load social``, run as a user would, against the real Neo4j."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from loaders.portal import portal_domain
from loaders.portal_gen import generate_portal
from loaders.social import community_domain
from tests.conftest import purge_domains, run_cli


@pytest.fixture
def names(driver: neo4j.Driver) -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    portal, community = f"cli-portal-{tag}", f"cli-community-{tag}"
    yield portal, community
    purge_domains(driver, portal_domain(portal), community_domain(community))


def test_load_portal_and_social_commands(
    neo4j_uri: str,
    driver: neo4j.Driver,
    sample_domains: Path,
    tmp_path: Path,
    names: tuple[str, str],
) -> None:
    portal, community = names
    export = tmp_path / "portal"
    report = generate_portal(sample_domains, export, seed=3, fraction=0.5)
    done = run_cli(["load", "portal", "--portal", portal, str(export)], neo4j_uri, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "portal load" in done.stderr
    records, _, _ = driver.execute_query(
        "MATCH (r:Patient {sourceDomain: $d}) RETURN count(r) AS n", d=portal_domain(portal)
    )
    assert records[0]["n"] == report.accounts

    posts = tmp_path / "posts.ndjson"
    good = {
        "id": "p1",
        "community": community,
        "author": {"handle": "h1"},
        "time": "2025-01-02T03:04:05Z",
        "text": "hello",
    }
    posts.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "p2", "text": ""}) + "\n")
    done = run_cli(["load", "social", str(posts)], neo4j_uri, tmp_path)
    assert done.returncode == 3, done.stderr  # loaded, one line quarantined
    assert "1 entries quarantined" in done.stderr
    assert "text" in done.stderr
    records, _, _ = driver.execute_query(
        "MATCH (d:Document {sourceDomain: $d}) RETURN collect(d.recordId) AS ids",
        d=community_domain(community),
    )
    assert records[0]["ids"] == ["p1"]
