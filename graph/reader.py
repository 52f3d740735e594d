"""Read side of the virtual EHR: named Cypher and small functions, values always as parameters.

Every read goes through :class:`GraphReader`, which routes to READ and counts round trips (the
GraphQL layer proves its DataLoaders keep that count independent of the record's size).
Fact queries take a *list* of person uids so one round trip serves a whole page of patients.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import neo4j

from ontology.model import FACT_LABELS, Label


@dataclass(frozen=True, slots=True)
class FactFilter:
    code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    first: int | None = None
    after_date: datetime | None = None
    after_uid: str | None = None


#: No filter: every fact of the label.
ALL_FACTS = FactFilter()


class GraphReader:
    """A driver plus a round-trip counter; one per request."""

    def __init__(self, driver: neo4j.Driver, *, database: str | None = None) -> None:
        self.driver = driver
        self.database = database
        self.round_trips = 0

    def read(self, query: str, params: Mapping[str, Any]) -> list[neo4j.Record]:
        self.round_trips += 1
        records, _, _ = self.driver.execute_query(
            neo4j.Query(query),
            dict(params),
            routing_=neo4j.RoutingControl.READ,
            database_=self.database,
        )
        return records


PERSON_FIELDS = (
    "uid: p.uid, name: p.name, family: p.family, given: p.given, gender: p.gender, "
    "birthDate: p.birthDate, nationalId: p.nationalId"
)

PERSONS_BY_UID = f"""
UNWIND $uids AS uid
MATCH (p:Person {{uid: uid}})
RETURN p {{ {PERSON_FIELDS} }} AS person
"""

# A patient list narrowed by consent (access/guard.py ``listing``): ``$only`` (uids, or null),
# ``$careOrg`` (persons with a record in that domain are in too) and ``$hidden`` (never listed).
_VISIBLE = """($only IS NULL AND $careOrg IS NULL OR p.uid IN coalesce($only, [])
    OR ($careOrg IS NOT NULL AND EXISTS {
        (p)<-[:RECORD_OF]-(:Patient)-[:IN_DOMAIN]->(:Domain {uid: $careOrg}) }))
  AND NOT p.uid IN $hidden"""

PERSONS_PAGE = f"""
MATCH (p:Person) WHERE {_VISIBLE}
RETURN p {{ {PERSON_FIELDS} }} AS person
ORDER BY p.name, p.uid SKIP $skip LIMIT $limit
"""

PERSONS_SEARCH = f"""
CALL db.index.fulltext.queryNodes('person_search', $lucene) YIELD node AS p, score
WITH p, score WHERE {_VISIBLE}
RETURN p {{ {PERSON_FIELDS} }} AS person
ORDER BY score DESC, p.name, p.uid SKIP $skip LIMIT $limit
"""

PERSONS_COUNT = f"MATCH (p:Person) WHERE {_VISIBLE} RETURN count(p) AS n"
PERSONS_SEARCH_COUNT = f"""
CALL db.index.fulltext.queryNodes('person_search', $lucene) YIELD node AS p
WITH p WHERE {_VISIBLE} RETURN count(p) AS n
"""

# Per record: its domain, how it is linked, and the operational data store's registry — each
# kind of fact it holds with count and newest date, and when each kind was last written.
RECORDS_OF_PERSONS = """
UNWIND $uids AS uid
MATCH (:Person {uid: uid})<-[l:RECORD_OF]-(r:Patient)-[:IN_DOMAIN]->(d:Domain)
OPTIONAL MATCH (r)<-[:ABOUT]-(f)
WITH uid, l, r, d, labels(f)[0] AS kind, count(f) AS n, max(f.date) AS last
WITH uid, l, r, d, sum(n) AS facts, max(last) AS lastDate,
     collect(CASE WHEN kind IS NULL THEN NULL ELSE {kind: kind, count: n, lastDate: last} END)
       AS kinds
RETURN uid, r { .uid, .recordId, .mrn, .identifiers, .name, .updatedAt, .updatedKinds,
                .updatedTimes } AS record,
       d { .uid, .name, .kind } AS domain, facts, lastDate, kinds, properties(l) AS link
ORDER BY d.name
"""

# Facts of one label for a set of persons, with code(s) and provenance in the same round trip;
# the per-person subquery keeps a page limit per person, not per batch.
_FACTS = """
UNWIND $uids AS uid
CALL (uid) {{
  MATCH (:Person {{uid: uid}})<-[:RECORD_OF]-(r:Patient)<-[:ABOUT]-(f:`{label}`)
  MATCH (r)-[:IN_DOMAIN]->(d:Domain)
  WHERE {where}
  RETURN f, d ORDER BY f.date DESC, f.uid {limit}
}}
RETURN uid, f {{ .* }} AS fact, d {{ .uid, .name, .kind }} AS domain,
       [(f)-[c:CODED_AS]->(k:Concept) | k {{ .system, .code, .display, rank: c.rank,
          map: c.map, mapVersion: c.mapVersion, method: c.method, confidence: c.confidence,
          equivalence: c.equivalence }}] AS codes,
       [(f)-[:HAS_COMPONENT]->(c) | c {{ .value, .unit, .valueString,
          concept: [(c)-[:CODED_AS]->(k:Concept) | k {{ .system, .code, .display }}][0] }}]
         AS components
"""

TIMELINE = """
UNWIND $uids AS uid
CALL (uid) {
  MATCH (:Person {uid: uid})<-[:RECORD_OF]-(r:Patient)<-[:ABOUT]-(f)
  WHERE f.date IS NOT NULL AND NOT coalesce(f.isComponent, false)
    AND ($since IS NULL OR f.date >= $since) AND ($until IS NULL OR f.date < $until)
    AND ($afterDate IS NULL OR f.date < $afterDate OR (f.date = $afterDate AND f.uid > $afterUid))
  MATCH (r)-[:IN_DOMAIN]->(d:Domain)
  RETURN f, d ORDER BY f.date DESC, f.uid LIMIT $limit
}
RETURN uid, f { .* } AS fact, labels(f) AS labels, d { .uid, .name, .kind } AS domain,
       [(f)-[c:CODED_AS]->(k:Concept) | k { .system, .code, .display, rank: c.rank,
          map: c.map, mapVersion: c.mapVersion, method: c.method, confidence: c.confidence,
          equivalence: c.equivalence }] AS codes
"""


def facts_query(label: Label, flt: FactFilter) -> str:
    if label not in FACT_LABELS:
        raise ValueError(f"{label} is not a clinical fact label")
    where = ["true"]
    if flt.code is not None:
        where.append("EXISTS { (f)-[:CODED_AS]->(:Concept {code: $code}) }")
    elif label is Label.OBSERVATION:
        where.append("NOT coalesce(f.isComponent, false)")
    if flt.since is not None:
        where.append("f.date >= $since")
    if flt.until is not None:
        where.append("f.date < $until")
    if flt.after_date is not None:
        where.append("(f.date < $afterDate OR (f.date = $afterDate AND f.uid > $afterUid))")
    limit = "LIMIT $limit" if flt.first is not None else ""
    return _FACTS.format(label=label.value, where=" AND ".join(where), limit=limit)


def fact_params(uids: Sequence[str], flt: FactFilter) -> dict[str, Any]:
    return {
        "uids": list(uids),
        "code": flt.code,
        "since": flt.since,
        "until": flt.until,
        "afterDate": flt.after_date,
        "afterUid": flt.after_uid,
        "limit": flt.first,
    }


def lucene_escape(term: str) -> str:
    """A term with Lucene's special characters escaped (user text never becomes syntax)."""
    return _LUCENE_SPECIAL.sub(r"\\\g<0>", term)


def lucene_query(text: str) -> str:
    """Escape user text for Lucene and make each term a prefix match."""
    terms = [lucene_escape(t) for t in text.split() if t.strip()]
    return " AND ".join(f"{t}*" for t in terms)


_LUCENE_SPECIAL = re.compile(r'[+\-!(){}\[\]^"~*?:\\/&|]')


def count_records_in_domains(driver: neo4j.Driver, org_keys: Sequence[str]) -> int:
    """How many patient records the MIS domains of these organisations hold."""
    records, _, _ = driver.execute_query(
        "MATCH (r:Patient) WHERE r.sourceDomain IN $domains RETURN count(r) AS n",
        {"domains": [f"mis:{key}" for key in org_keys]},
        routing_=neo4j.RoutingControl.READ,
    )
    return int(records[0]["n"])
