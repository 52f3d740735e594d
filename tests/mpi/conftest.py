"""Scenarios for the master patient index tests: scratch domains ``mis:mpi-*``, cleaned up."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import neo4j
import pytest

from graph.writer import write_batch
from mpi.service import MasterIndex
from ontology.model import Label, RelType
from ontology.records import GraphBatch

PREFIX = "mis:mpi-"


def purge(driver: neo4j.Driver) -> None:
    driver.execute_query("MATCH (n) WHERE n.sourceDomain STARTS WITH $p DETACH DELETE n", p=PREFIX)
    driver.execute_query("MATCH (d:Domain) WHERE d.uid STARTS WITH $p DETACH DELETE d", p=PREFIX)
    driver.execute_query(
        "MATCH (c:MatchCandidate) WHERE COUNT { (c)-[:CANDIDATE]->() } < 2 DETACH DELETE c"
    )
    driver.execute_query("MATCH (d:LinkDecision) WHERE NOT (d)-[:CONCERNS]->() DETACH DELETE d")
    driver.execute_query("MATCH (p:Person) WHERE NOT (p)<-[:RECORD_OF]-() DETACH DELETE p")
    persons, _, _ = driver.execute_query("MATCH (p:Person) RETURN p.uid AS uid")
    MasterIndex(driver).refresh_persons([r["uid"] for r in persons])


def write_records(driver: neo4j.Driver, tag: str, *records: dict[str, Any]) -> list[str]:
    """Patient records, each in its own scratch clinic ``mis:mpi-<tag>-<i>``; their uids."""
    batch = GraphBatch()
    uids = []
    for i, props in enumerate(records):
        domain = f"{PREFIX}{tag}-{i}"
        uid = f"{domain}/Patient/p{i}"
        batch.node(Label.DOMAIN, domain, {"name": domain, "kind": "MIS"})
        batch.node(Label.PATIENT, uid, {"recordId": f"p{i}", "sourceDomain": domain, **props})
        batch.rel(RelType.IN_DOMAIN, (Label.PATIENT, uid), (Label.DOMAIN, domain))
        uids.append(uid)
    write_batch(driver, batch)
    return uids


def _two_records(driver: neo4j.Driver, tag: str) -> tuple[str, str]:
    """Two records of one made-up human in two scratch domains: same name and birth date,
    different address, no national id — a possible match, not a certain one."""
    common = {
        "family": f"Quenby{tag}",
        "given": ["Adelheid"],
        "name": f"Adelheid Quenby{tag}",
        "gender": "female",
        "birthDate": date(1961, 3, 14),
    }
    left, right = write_records(
        driver,
        tag,
        {**common, "addressLine": "1 Elm St", "city": "Springfield"},
        {**common, "addressLine": "9 Oak Ave", "city": "Shelbyville"},
    )
    return left, right


@pytest.fixture
def review_pair(driver: neo4j.Driver) -> Iterator[tuple[MasterIndex, str, str, str]]:
    """Thresholds that send every scored pair to review: the pair waits for the steward."""
    tag = uuid.uuid4().hex[:8]
    left, right = _two_records(driver, tag)
    index = MasterIndex(driver, auto_threshold=1.0, review_threshold=0.0)
    report = index.link_pending()
    assert report.review_opened >= 1
    rows, _, _ = driver.execute_query(
        "MATCH (c:MatchCandidate {status: 'open'})-[:CANDIDATE]->(:Patient {uid: $a}) "
        "MATCH (c)-[:CANDIDATE]->(:Patient {uid: $b}) RETURN c.uid AS uid",
        a=left,
        b=right,
    )
    yield index, rows[0]["uid"], left, right
    MasterIndex(driver, auto_threshold=0.99, review_threshold=0.1).thresholds()  # restore
    purge(driver)
