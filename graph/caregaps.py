"""Cypher of the care-gap rules (``shadow/caregaps.py``): a rule's population with the date of
each person's last required fact, and the ``CareGap`` nodes (``-[:FOR_PERSON]->`` the person)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import neo4j

from graph.connection import run_read
from ontology.model import Label, RelType

CARE_GAP, PERSON, CONCEPT = Label.CARE_GAP.value, Label.PERSON.value, Label.CONCEPT.value
FOR_PERSON, RECORD_OF, ABOUT, CODED_AS, IS_A = (
    RelType.FOR_PERSON.value,
    RelType.RECORD_OF.value,
    RelType.ABOUT.value,
    RelType.CODED_AS.value,
    RelType.IS_A.value,
)
#: Fact kinds a rule may require (labels from the ontology, never from input).
KINDS = {
    label.value: label
    for label in (
        Label.OBSERVATION,
        Label.IMMUNIZATION,
        Label.PROCEDURE,
        Label.CONDITION,
        Label.MEDICATION_REQUEST,
    )
}

#: Persons with an active condition coded with one of the codes or one under them (IS_A), as
#: of the evaluation time (derived codes from concept maps count too).
_WITH_CONDITION = f"""
MATCH (root:{CONCEPT}) WHERE root.uid IN $conditions
MATCH (root)<-[:{IS_A}*0..]-(k:{CONCEPT})
WITH collect(DISTINCT k) AS ks
UNWIND ks AS k
MATCH (k)<-[:{CODED_AS}]-(c:{Label.CONDITION.value})-[:{ABOUT}]->(:{Label.PATIENT.value})
      -[:{RECORD_OF}]->(p:{PERSON})
WHERE (c.date IS NULL OR c.date <= $asOf) AND (c.end IS NULL OR c.end > $asOf)
WITH DISTINCT p
"""
_EVERYONE = f"MATCH (p:{PERSON})\n"


def population_query(kind: str, *, with_conditions: bool) -> str:
    label = KINDS[kind].value
    return (
        (_WITH_CONDITION if with_conditions else _EVERYONE)
        + f"""
WITH p WHERE NOT EXISTS {{
    (p)<-[:{RECORD_OF}]-(d:{Label.PATIENT.value})
    WHERE d.deceased IS NOT NULL AND d.deceased <= $asOf
  }}
  AND ($sex IS NULL OR p.gender = $sex)
  AND ($minAge IS NULL OR (p.birthDate IS NOT NULL
       AND duration.between(date(p.birthDate), date($asOf)).years >= $minAge))
  AND ($maxAge IS NULL OR (p.birthDate IS NOT NULL
       AND duration.between(date(p.birthDate), date($asOf)).years <= $maxAge))
CALL (p) {{
  OPTIONAL MATCH (p)<-[:{RECORD_OF}]-(:{Label.PATIENT.value})<-[:{ABOUT}]-(f:{label})
                 -[:{CODED_AS}]->(k:{CONCEPT})
  WHERE k.uid IN $codes AND f.date <= $asOf
  RETURN max(f.date) AS last
}}
RETURN p.uid AS person, last
ORDER BY person
"""
    )


def population_last_done(
    driver: neo4j.Driver,
    *,
    conditions: Sequence[str],
    min_age: int | None,
    max_age: int | None,
    sex: str | None,
    kind: str,
    codes: Sequence[str],
    as_of: date,
    database: str | None = None,
) -> list[dict[str, Any]]:
    """Each person of the population with the time of their last required fact (or None)."""
    query = population_query(kind, with_conditions=bool(conditions))
    params = {
        "conditions": list(conditions),
        "minAge": min_age,
        "maxAge": max_age,
        "sex": sex,
        "codes": list(codes),
        "asOf": _end_of(as_of),
    }
    return [dict(r) for r in run_read(driver, query, params, database)]


STORE = f"""
UNWIND $gaps AS gap
MATCH (p:{PERSON} {{uid: gap.person}})
MERGE (c:{CARE_GAP} {{uid: gap.rule + '|' + gap.person}})
WITH c, p, gap, c.status = 'open' AS wasOpen
SET c.rule = gap.rule, c.title = gap.title, c.dueDate = gap.due, c.lastDone = gap.lastDone,
    c.reference = gap.reference, c.status = 'open', c.evaluatedAt = $asOf, c.closedAt = null,
    c.raisedAt = CASE WHEN wasOpen THEN c.raisedAt ELSE $now END
MERGE (c)-[:{FOR_PERSON}]->(p)
RETURN count(CASE WHEN wasOpen THEN null ELSE 1 END) AS opened
"""

CLOSE = f"""
MATCH (c:{CARE_GAP})
WHERE c.rule IN $rules AND c.status = 'open' AND NOT c.uid IN $open
SET c.status = 'closed', c.closedAt = $now, c.evaluatedAt = $asOf
RETURN count(c) AS closed
"""

PERSON_GAPS = f"""
MATCH (c:{CARE_GAP})-[:{FOR_PERSON}]->(:{PERSON} {{uid: $person}})
WHERE $status IS NULL OR c.status = $status
RETURN c {{ .rule, .title, .status, .dueDate, .lastDone, .reference, .raisedAt, .closedAt,
           .evaluatedAt }} AS gap
ORDER BY gap.status DESC, gap.dueDate, gap.rule
"""


def store_gaps(
    driver: neo4j.Driver,
    gaps: Sequence[dict[str, Any]],
    *,
    rules: Sequence[str],
    as_of: date,
    database: str | None = None,
) -> tuple[int, int]:
    """Open (or keep open) these gaps and close the other open gaps of these rules, in one
    transaction. Returns (newly opened, closed)."""
    open_uids = [f"{g['rule']}|{g['person']}" for g in gaps]
    now = datetime.now(UTC)

    def work(tx: neo4j.ManagedTransaction) -> tuple[int, int]:
        opened = tx.run(STORE, gaps=list(gaps), asOf=as_of, now=now).single()
        closed = tx.run(CLOSE, rules=list(rules), open=open_uids, asOf=as_of, now=now).single()
        return (int(opened["opened"]) if opened else 0, int(closed["closed"]) if closed else 0)

    with driver.session(database=database) as session:
        return session.execute_write(work)


def person_gaps(
    driver: neo4j.Driver, person: str, *, status: str | None = None, database: str | None = None
) -> list[dict[str, Any]]:
    rows = run_read(driver, PERSON_GAPS, {"person": person, "status": status}, database)
    return [dict(r["gap"]) for r in rows]


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)
