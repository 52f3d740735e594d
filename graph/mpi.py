"""The master patient index in the graph: Cypher for links, the review queue and decisions.

Graph shape (labels and types from the ontology):

* ``(:Patient)-[:RECORD_OF {method, probability, weight, evidence, linkedAt, linkedBy}]->(:Person)``
  — one per domain record; ``method`` is ``rule`` / ``probabilistic`` (automatic),
  ``singleton`` (nothing matched), ``steward`` (a confirm or unlink decision);
* ``(:MatchCandidate {status: open|confirmed|rejected})-[:CANDIDATE]->(:Patient)`` x2 — a
  possible match in the data steward's review queue; a rejected candidate keeps the pair apart;
* ``(:LinkDecision {action, by, at, comment})-[:DECIDES]->(:MatchCandidate)`` and
  ``-[:CONCERNS]->(:Patient)`` — append-only log of every decision, the linker's merges too;
* ``(:LinkageModel {uid: "current"})`` — the trained model incoming records are scored with.

Patient records carry ``mpiKeys``, the blocking keys of :func:`identity.linkage.blocking_keys`:
an incoming record is scored only against the records that share a key with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import neo4j

from graph.connection import run_read, run_write

#: The properties record linkage reads from a Patient record.
DEMOGRAPHIC_FIELDS = (
    "uid: r.uid, domain: r.sourceDomain, family: r.family, given: r.given, "
    "otherFamily: r.otherFamily, birthDate: r.birthDate, gender: r.gender, "
    "nationalId: r.nationalId, postalCode: r.postalCode, city: r.city, "
    "addressLine: r.addressLine, phone: r.phone"
)

PENDING_RECORDS = f"""
MATCH (r:Patient) WHERE NOT (r)-[:RECORD_OF]->()
RETURN r {{ {DEMOGRAPHIC_FIELDS} }} AS record
ORDER BY r.uid
"""

# Patient records are few next to facts (one per person per domain): a label scan with a list
# intersection stays in milliseconds at 10^4-10^5 records, and needs no extra node type.
LINKED_RECORDS_SHARING_KEYS = f"""
MATCH (r:Patient)-[:RECORD_OF]->(p:Person)
WHERE any(k IN r.mpiKeys WHERE k IN $keys)
RETURN r {{ {DEMOGRAPHIC_FIELDS}, person: p.uid }} AS record
"""

RECORDS_BY_UID = f"""
UNWIND $uids AS uid
MATCH (r:Patient {{uid: uid}})
OPTIONAL MATCH (r)-[l:RECORD_OF]->(p:Person)
RETURN r {{ {DEMOGRAPHIC_FIELDS}, name: r.name, recordId: r.recordId, person: p.uid,
            link: properties(l) }} AS record
"""

SET_MATCH_KEYS = """
UNWIND $rows AS row
MATCH (r:Patient {uid: row.uid})
SET r.mpiKeys = row.keys
"""

# One statement per batch: a record's previous link (if any) goes, the new one is made.
LINK_RECORDS = """
UNWIND $rows AS row
MATCH (r:Patient {uid: row.record})
OPTIONAL MATCH (r)-[old:RECORD_OF]->(was:Person) WHERE was.uid <> row.person
DELETE old
MERGE (p:Person {uid: row.person})
  ON CREATE SET p.createdAt = $now
MERGE (r)-[l:RECORD_OF]->(p)
SET l = row.props
"""

RECORDS_OF_PERSONS = """
UNWIND $uids AS uid
MATCH (p:Person {uid: uid})<-[:RECORD_OF]-(r:Patient)
OPTIONAL MATCH (r)-[:IN_DOMAIN]->(d:Domain)
RETURN uid, collect(r { .name, .family, .given, .gender, .birthDate, .nationalId,
                        kind: d.kind, uid: r.uid }) AS records
"""

SET_PERSONS = """
UNWIND $rows AS row
MATCH (p:Person {uid: row.uid})
SET p += row.props
"""

# A Person whose every record moved to another (a merge) or left (an unlink) is gone; on a
# merge its consents (grants, restrictions, app approvals) move to the person it merged into,
# so a restriction is never lost to a merge.
DELETE_EMPTY_PERSONS = """
UNWIND $rows AS row
MATCH (p:Person {uid: row.uid}) WHERE NOT (p)<-[:RECORD_OF]-()
OPTIONAL MATCH (t:Person {uid: row.into})
CALL (p, t) {
  MATCH (p)-[:HAS_CONSENT]->(c:Consent) WHERE t IS NOT NULL
  MERGE (t)-[:HAS_CONSENT]->(c)
  SET c.person = t.uid, c.mergedFrom = p.uid
}
DETACH DELETE p
RETURN count(*) AS deleted
"""

# An unlinked record's new person keeps the old person's active restrictions, so a patient's
# "no" is never lost to an identity fix. Grants and app approvals are not copied: whoever the
# split-off record belongs to never gave them. Keyed by source and target, so a re-run adds
# nothing.
COPY_RESTRICTIONS = """
MATCH (p:Person {uid: $source})-[:HAS_CONSENT]->(c:Consent {kind: 'deny', status: 'active'})
MATCH (t:Person {uid: $target})
MERGE (t)-[:HAS_CONSENT]->(n:Consent {uid: c.uid + '/' + t.uid})
ON CREATE SET n += c {.kind, .granteeType, .grantee, .granteeName, .categories, .excluded,
                      .purposes, .start, .end, .status, .reason},
              n.person = t.uid, n.copiedFrom = c.uid, n.createdAt = $now, n.createdBy = $by
RETURN count(n) AS copied
"""

UPSERT_CANDIDATES = """
UNWIND $rows AS row
MATCH (a:Patient {uid: row.left})
MATCH (b:Patient {uid: row.right})
MERGE (c:MatchCandidate {uid: row.uid})
  ON CREATE SET c.status = 'open', c.createdAt = $now
WITH c, a, b, row
WHERE c.status = 'open'
SET c.left = row.left, c.right = row.right, c.probability = row.probability,
    c.weight = row.weight, c.evidence = row.evidence, c.updatedAt = $now
MERGE (c)-[:CANDIDATE]->(a)
MERGE (c)-[:CANDIDATE]->(b)
"""

# Open candidates whose two records now belong to one person need no decision any more.
CLOSE_RESOLVED_CANDIDATES = """
MATCH (c:MatchCandidate {status: 'open'})-[:CANDIDATE]->(a:Patient)-[:RECORD_OF]->(p:Person),
      (c)-[:CANDIDATE]->(b:Patient)-[:RECORD_OF]->(p)
WHERE a.uid < b.uid
SET c.status = 'linked', c.updatedAt = $now
RETURN count(c) AS closed
"""

# The person pairs that already have an open question in the review queue.
OPEN_CANDIDATE_PERSON_PAIRS = """
MATCH (c:MatchCandidate {status: 'open'})-[:CANDIDATE]->(a:Patient)-[:RECORD_OF]->(pa:Person)
MATCH (c)-[:CANDIDATE]->(b:Patient)-[:RECORD_OF]->(pb:Person)
WHERE a.uid < b.uid AND (pa.uid IN $persons OR pb.uid IN $persons)
RETURN DISTINCT pa.uid AS a, pb.uid AS b
"""

REJECTED_PAIRS = """
UNWIND $uids AS uid
MATCH (:Patient {uid: uid})<-[:CANDIDATE]-(c:MatchCandidate {status: 'rejected'})
RETURN DISTINCT c.left AS left, c.right AS right
"""

REVIEW_QUEUE = f"""
MATCH (c:MatchCandidate)
WHERE ($status IS NULL OR c.status = $status)
  AND ($after IS NULL OR [c.probability, c.uid] < $after)
WITH c ORDER BY c.probability DESC, c.uid DESC LIMIT $limit
MATCH (c)-[:CANDIDATE]->(r:Patient)
OPTIONAL MATCH (r)-[:RECORD_OF]->(p:Person)
WITH c, r, p ORDER BY r.uid
RETURN c {{ .* }} AS candidate,
       collect(r {{ {DEMOGRAPHIC_FIELDS}, name: r.name, recordId: r.recordId,
                    person: p.uid }}) AS records
ORDER BY candidate.probability DESC, candidate.uid DESC
"""

REVIEW_QUEUE_COUNT = """
MATCH (c:MatchCandidate) WHERE ($status IS NULL OR c.status = $status)
RETURN count(c) AS n
"""

CANDIDATE_BY_UID = """
MATCH (c:MatchCandidate {uid: $uid})
RETURN c { .* } AS candidate
"""

# A decision is one node: it decides any number of candidates and concerns the records it
# touched.
LOG_DECISION = """
CREATE (d:LinkDecision {uid: $decision, action: $action, by: $by, at: $now,
                        comment: $comment, fromPerson: $fromPerson, toPerson: $toPerson})
WITH d
CALL (d) {
  UNWIND $candidates AS cid
  MATCH (c:MatchCandidate {uid: cid})
  SET c.status = $status, c.decidedBy = $by, c.decidedAt = $now
  MERGE (d)-[:DECIDES]->(c)
}
CALL (d) {
  UNWIND $records AS rid
  MATCH (r:Patient {uid: rid})
  MERGE (d)-[:CONCERNS]->(r)
}
"""

DECISIONS_FOR_RECORD = """
MATCH (d:LinkDecision)-[:CONCERNS]->(:Patient {uid: $uid})
RETURN d { .* } AS decision ORDER BY d.at
"""

# Where a person that was merged away went (the newest merge or confirmation that emptied it).
MERGED_INTO = """
MATCH (d:LinkDecision {fromPerson: $uid}) WHERE d.action IN ['merge', 'confirm']
RETURN d.toPerson AS person ORDER BY d.at DESC LIMIT 1
"""

LOAD_MODEL = """
MATCH (m:LinkageModel {uid: 'current'})
RETURN m.json AS json, m.autoThreshold AS auto, m.reviewThreshold AS review
"""

STORE_THRESHOLDS = """
MATCH (m:LinkageModel {uid: 'current'})
SET m.autoThreshold = $auto, m.reviewThreshold = $review
"""

STORE_MODEL = """
MERGE (m:LinkageModel {uid: 'current'})
SET m.json = $json, m.trainedAt = $now, m.records = $records, m.source = $source
"""

ALL_RECORDS = f"""
MATCH (r:Patient)
RETURN r {{ {DEMOGRAPHIC_FIELDS} }} AS record
ORDER BY r.uid
"""


def pending_records(driver: neo4j.Driver, *, database: str | None = None) -> list[dict[str, Any]]:
    """Patient records no Person holds yet (just loaded or created)."""
    return [dict(r["record"]) for r in run_read(driver, PENDING_RECORDS, {}, database)]


def all_records(driver: neo4j.Driver, *, database: str | None = None) -> list[dict[str, Any]]:
    return [dict(r["record"]) for r in run_read(driver, ALL_RECORDS, {}, database)]


def linked_records_sharing(
    driver: neo4j.Driver, keys: Iterable[str], *, database: str | None = None
) -> list[dict[str, Any]]:
    """Linked records with at least one of the blocking ``keys``, each with its person."""
    params = {"keys": sorted(set(keys))}
    if not params["keys"]:
        return []
    rows = run_read(driver, LINKED_RECORDS_SHARING_KEYS, params, database)
    return [dict(r["record"]) for r in rows]


def records_by_uid(
    driver: neo4j.Driver, uids: Sequence[str], *, database: str | None = None
) -> list[dict[str, Any]]:
    rows = run_read(driver, RECORDS_BY_UID, {"uids": list(uids)}, database)
    return [dict(r["record"]) for r in rows]


def set_match_keys(
    driver: neo4j.Driver, rows: Sequence[Mapping[str, Any]], *, database: str | None = None
) -> None:
    if rows:
        run_write(driver, SET_MATCH_KEYS, {"rows": list(rows)}, database)


def link_records(
    driver: neo4j.Driver,
    rows: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    database: str | None = None,
    batch_size: int = 2000,
) -> None:
    """``rows``: ``{record, person, props}``; a record's link to any other person is replaced."""
    for i in range(0, len(rows), batch_size):
        run_write(
            driver, LINK_RECORDS, {"rows": list(rows[i : i + batch_size]), "now": now}, database
        )


def records_of_persons(
    driver: neo4j.Driver, uids: Sequence[str], *, database: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    rows = run_read(driver, RECORDS_OF_PERSONS, {"uids": list(uids)}, database)
    return {r["uid"]: [dict(x) for x in r["records"]] for r in rows}


def set_persons(
    driver: neo4j.Driver, rows: Sequence[Mapping[str, Any]], *, database: str | None = None
) -> None:
    if rows:
        run_write(driver, SET_PERSONS, {"rows": list(rows)}, database)


def delete_empty_persons(
    driver: neo4j.Driver,
    uids: Iterable[str],
    *,
    into: Mapping[str, str] | None = None,
    database: str | None = None,
) -> int:
    """Remove persons left without records; ``into``: where each merged into (consents move)."""
    targets = into or {}
    params = {"rows": [{"uid": u, "into": targets.get(u)} for u in sorted(set(uids))]}
    if not params["rows"]:
        return 0
    rows = run_write(driver, DELETE_EMPTY_PERSONS, params, database)
    return int(rows[0]["deleted"]) if rows else 0


def copy_restrictions(
    driver: neo4j.Driver,
    source: str,
    target: str,
    *,
    by: str,
    now: datetime,
    database: str | None = None,
) -> int:
    """Give ``target`` copies of ``source``'s active restrictions; how many it has."""
    params = {"source": source, "target": target, "by": by, "now": now}
    rows = run_write(driver, COPY_RESTRICTIONS, params, database)
    return int(rows[0]["copied"]) if rows else 0


def upsert_candidates(
    driver: neo4j.Driver,
    rows: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    database: str | None = None,
) -> None:
    """Open (or refresh) review items; decided ones are left as the steward left them."""
    if rows:
        run_write(driver, UPSERT_CANDIDATES, {"rows": list(rows), "now": now}, database)


def close_resolved_candidates(
    driver: neo4j.Driver, *, now: datetime, database: str | None = None
) -> int:
    rows = run_write(driver, CLOSE_RESOLVED_CANDIDATES, {"now": now}, database)
    return int(rows[0]["closed"]) if rows else 0


def open_candidate_person_pairs(
    driver: neo4j.Driver, persons: Iterable[str], *, database: str | None = None
) -> set[tuple[str, str]]:
    params = {"persons": sorted(set(persons))}
    if not params["persons"]:
        return set()
    rows = run_read(driver, OPEN_CANDIDATE_PERSON_PAIRS, params, database)
    return {(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in rows}


def rejected_pairs(
    driver: neo4j.Driver, uids: Iterable[str], *, database: str | None = None
) -> set[tuple[str, str]]:
    params = {"uids": sorted(set(uids))}
    if not params["uids"]:
        return set()
    rows = run_read(driver, REJECTED_PAIRS, params, database)
    return {(r["left"], r["right"]) for r in rows}


def review_queue(
    driver: neo4j.Driver,
    *,
    status: str | None,
    limit: int,
    after: tuple[float, str] | None = None,
    database: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    params: dict[str, Any] = {
        "status": status,
        "limit": limit,
        "after": list(after) if after else None,
    }
    rows = run_read(driver, REVIEW_QUEUE, params, database)
    total = run_read(driver, REVIEW_QUEUE_COUNT, {"status": status}, database)[0]["n"]
    items = [{**dict(r["candidate"]), "records": [dict(x) for x in r["records"]]} for r in rows]
    return items, int(total)


def candidate(
    driver: neo4j.Driver, uid: str, *, database: str | None = None
) -> dict[str, Any] | None:
    rows = run_read(driver, CANDIDATE_BY_UID, {"uid": uid}, database)
    return dict(rows[0]["candidate"]) if rows else None


def log_decision(
    driver: neo4j.Driver,
    decision: Mapping[str, Any],
    records: Sequence[str],
    *,
    candidates: Sequence[str] = (),
    status: str | None = None,
    database: str | None = None,
) -> None:
    """Append a :class:`LinkDecision`; the ``candidates`` it decides get ``status``."""
    params = {
        **decision,
        "records": list(records),
        "candidates": list(candidates),
        "status": status,
    }
    run_write(driver, LOG_DECISION, params, database)


def decisions_for_record(
    driver: neo4j.Driver, uid: str, *, database: str | None = None
) -> list[dict[str, Any]]:
    return [
        dict(r["decision"]) for r in run_read(driver, DECISIONS_FOR_RECORD, {"uid": uid}, database)
    ]


def load_model(
    driver: neo4j.Driver, *, database: str | None = None
) -> tuple[str, float | None, float | None] | None:
    """The current model's JSON and the thresholds the index last linked with."""
    rows = run_read(driver, LOAD_MODEL, {}, database)
    if not rows:
        return None
    return str(rows[0]["json"]), rows[0]["auto"], rows[0]["review"]


def store_thresholds(
    driver: neo4j.Driver, auto: float, review: float, *, database: str | None = None
) -> None:
    run_write(driver, STORE_THRESHOLDS, {"auto": auto, "review": review}, database)


def store_model_json(
    driver: neo4j.Driver,
    text: str,
    *,
    records: int,
    source: str,
    now: datetime,
    database: str | None = None,
) -> None:
    params = {"json": text, "records": records, "source": source, "now": now}
    run_write(driver, STORE_MODEL, params, database)
