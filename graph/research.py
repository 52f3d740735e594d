"""Cypher of the research export (``research/``): what it reads of consenting persons."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import neo4j

from graph.connection import native, plain, run_read

# Per person: demographics of each domain record (quasi-identifiers only: nothing that names
# or locates the person below a postal code's first digits is read) and every clinical fact
# with its codes. Observation components travel with their observation.
PERSON_DATA = """
UNWIND $persons AS uid
MATCH (p:Person {uid: uid})
CALL (p) {
  MATCH (p)<-[:RECORD_OF]-(r:Patient)
  RETURN collect(r { .birthDate, .gender, .postalCode, .state, .deceasedDate }) AS records
}
CALL (p) {
  MATCH (p)<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(f)
  WHERE NOT coalesce(f.isComponent, false)
  RETURN collect({
    labels: labels(f),
    props: f { .date, .end, .status, .category, .value, .unit, .clinicalStatus,
               .verificationStatus, .intent, .class },
    codes: [(f)-[c:CODED_AS]->(k:Concept) | k { .system, .code, .display, rank: c.rank }]
  }) AS facts
}
RETURN uid, p.birthDate AS birthDate, p.gender AS gender, records, facts
"""


def person_data(
    driver: neo4j.Driver,
    persons: Sequence[str],
    *,
    batch: int = 50,
    database: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Demographics and facts of these persons, ``batch`` persons per round trip."""
    for i in range(0, len(persons), batch):
        for row in run_read(
            driver, PERSON_DATA, {"persons": list(persons[i : i + batch])}, database
        ):
            out = dict(row)
            out["birthDate"] = native(out["birthDate"])
            out["records"] = [plain(r) for r in out["records"]]
            out["facts"] = [f | {"props": plain(f["props"])} for f in out["facts"]]
            yield out
