"""Cypher of consent, registered apps and the audit trail (policy in ``access/consent.py``).

* ``(:Person)-[:HAS_CONSENT]->(:Consent)``: grants, restrictions, app authorisations and
  break-glass episodes. A consent is never deleted: revoking sets ``status: 'revoked'`` with
  who and when, so a patient's consent history stays readable.
* ``(:App)``: a registered third-party app (client id, redirect URIs, requested scopes);
  ``(:AuthCode)``: a one-time authorisation code (stored as its SHA-256).
* ``(:AuditEvent)``: one row per (request, person, action), created and never changed; each
  carries the SHA-256 of the previous event so a rewritten or deleted row breaks the chain
  (``verify_audit_chain``). The chain head ``(:AuditHead)`` serialises appends.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import neo4j

from graph.connection import native, plain, run_read, run_write
from ontology.model import Label, RelType

_P, _C, _A = Label.PERSON.value, Label.CONSENT.value, Label.AUDIT_EVENT.value
_HAS = RelType.HAS_CONSENT.value

CONSENT_FIELDS = (
    ".uid, .person, .kind, .granteeType, .grantee, .granteeName, .categories, .excluded, "
    ".purposes, .start, .end, .status, .breakGlass, .reason, .createdAt, .createdBy, "
    ".revokedAt, .revokedBy, .reviewedAt, .reviewedBy, .scopes"
)


def _now() -> datetime:
    return datetime.now(UTC)


def write_consent(
    driver: neo4j.Driver, consent: Mapping[str, Any], *, by: str, database: str | None = None
) -> dict[str, Any] | None:
    """Create one consent for an existing person; ``None`` when the person does not exist."""
    props = dict(consent)
    props.setdefault("uid", f"consent:{uuid.uuid4()}")
    props.update(status="active", createdAt=_now(), createdBy=by)
    rows = run_write(
        driver,
        f"""
        MATCH (p:{_P} {{uid: $person}})
        CREATE (p)-[:{_HAS}]->(c:{_C})
        SET c = $props
        RETURN c {{ {CONSENT_FIELDS} }} AS consent
        """,
        {"person": props["person"], "props": props},
        database,
    )
    return plain(rows[0]["consent"]) if rows else None


def revoke_consent(
    driver: neo4j.Driver,
    uid: str,
    *,
    person: str | None,
    by: str,
    database: str | None = None,
) -> dict[str, Any] | None:
    """Revoke an active consent (of ``person`` when given); ``None`` when there is none."""
    rows = run_write(
        driver,
        f"""
        MATCH (c:{_C} {{uid: $uid}})
        WHERE $person IS NULL OR c.person = $person
        SET c.status = 'revoked', c.revokedAt = coalesce(c.revokedAt, $now),
            c.revokedBy = coalesce(c.revokedBy, $by)
        RETURN c {{ {CONSENT_FIELDS} }} AS consent
        """,
        {"uid": uid, "person": person, "by": by, "now": _now()},
        database,
    )
    return plain(rows[0]["consent"]) if rows else None


def review_break_glass(
    driver: neo4j.Driver, uid: str, *, by: str, database: str | None = None
) -> dict[str, Any] | None:
    rows = run_write(
        driver,
        f"""
        MATCH (c:{_C} {{uid: $uid, breakGlass: true}})
        SET c.reviewedAt = coalesce(c.reviewedAt, $now), c.reviewedBy = coalesce(c.reviewedBy, $by)
        RETURN c {{ {CONSENT_FIELDS} }} AS consent
        """,
        {"uid": uid, "by": by, "now": _now()},
        database,
    )
    return plain(rows[0]["consent"]) if rows else None


def consents(
    driver: neo4j.Driver,
    *,
    persons: Sequence[str] | None = None,
    break_glass: bool | None = None,
    database: str | None = None,
) -> list[dict[str, Any]]:
    """Consents (every state) of these persons, or all of them; newest first."""
    rows = run_read(
        driver,
        f"""
        MATCH (c:{_C})
        WHERE ($persons IS NULL OR c.person IN $persons)
          AND ($breakGlass IS NULL OR coalesce(c.breakGlass, false) = $breakGlass)
        RETURN c {{ {CONSENT_FIELDS} }} AS consent
        ORDER BY c.createdAt DESC, c.uid
        """,
        {"persons": list(persons) if persons is not None else None, "breakGlass": break_glass},
        database,
    )
    return [plain(r["consent"]) for r in rows]


def decision_inputs(
    driver: neo4j.Driver, persons: Sequence[str], *, database: str | None = None
) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """Per existing person: its active consents and the domains holding its records."""
    rows = run_read(
        driver,
        f"""
        UNWIND $persons AS uid
        MATCH (p:{_P} {{uid: uid}})
        RETURN uid,
          [(p)-[:{_HAS}]->(c:{_C}) WHERE c.status = 'active' | c {{ {CONSENT_FIELDS} }}]
            AS consents,
          [(p)<-[:RECORD_OF]-(:Patient)-[:IN_DOMAIN]->(d:Domain) | d.uid] AS domains
        """,
        {"persons": list(persons)},
        database,
    )
    return {r["uid"]: ([plain(c) for c in r["consents"]], list(r["domains"])) for r in rows}


def persons_with_consents(
    driver: neo4j.Driver, *, kind: str | None = None, database: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every person with an active consent (of ``kind``), with those consents."""
    rows = run_read(
        driver,
        f"""
        MATCH (c:{_C} {{status: 'active'}})
        WHERE $kind IS NULL OR c.kind = $kind
        RETURN c.person AS uid, collect(c {{ {CONSENT_FIELDS} }}) AS consents
        """,
        {"kind": kind},
        database,
    )
    return {r["uid"]: [plain(c) for c in r["consents"]] for r in rows}


def organisations(driver: neo4j.Driver, *, database: str | None = None) -> dict[str, str]:
    """The clinics (MIS domains) a patient may grant to: uid -> name."""
    rows = run_read(
        driver,
        f"MATCH (d:{Label.DOMAIN.value} {{kind: 'MIS'}}) RETURN d.uid AS uid, d.name AS name "
        "ORDER BY d.name, d.uid",
        {},
        database,
    )
    return {str(r["uid"]): str(r["name"] or r["uid"]) for r in rows}


# --- registered apps -------------------------------------------------------------------------


def write_app(
    driver: neo4j.Driver, app: Mapping[str, Any], *, database: str | None = None
) -> dict[str, Any]:
    rows = run_write(
        driver,
        f"""
        CREATE (a:{Label.APP.value})
        SET a = $props, a.createdAt = $now, a.status = 'active'
        RETURN properties(a) AS app
        """,
        {"props": dict(app), "now": _now()},
        database,
    )
    return plain(rows[0]["app"])


def app(
    driver: neo4j.Driver, client_id: str, *, database: str | None = None
) -> dict[str, Any] | None:
    rows = run_read(
        driver,
        f"MATCH (a:{Label.APP.value} {{uid: $uid}}) RETURN properties(a) AS app",
        {"uid": client_id},
        database,
    )
    return plain(rows[0]["app"]) if rows else None


def apps(driver: neo4j.Driver, *, database: str | None = None) -> list[dict[str, Any]]:
    rows = run_read(
        driver,
        f"MATCH (a:{Label.APP.value}) RETURN properties(a) AS app ORDER BY a.name, a.uid",
        {},
        database,
    )
    return [plain(r["app"]) for r in rows]


def set_app_status(
    driver: neo4j.Driver, client_id: str, status: str, *, database: str | None = None
) -> dict[str, Any] | None:
    rows = run_write(
        driver,
        f"""
        MATCH (a:{Label.APP.value} {{uid: $uid}}) SET a.status = $status
        RETURN properties(a) AS app
        """,
        {"uid": client_id, "status": status},
        database,
    )
    return plain(rows[0]["app"]) if rows else None


def write_auth_code(
    driver: neo4j.Driver, code_hash: str, props: Mapping[str, Any], *, database: str | None = None
) -> None:
    run_write(
        driver,
        f"CREATE (c:{Label.AUTH_CODE.value}) SET c = $props, c.uid = $uid, c.used = false",
        {"uid": code_hash, "props": dict(props)},
        database,
    )


def take_auth_code(
    driver: neo4j.Driver, code_hash: str, *, database: str | None = None
) -> dict[str, Any] | None:
    """Mark a code used and return it; ``None`` when unknown or already used (one use only)."""
    rows = run_write(
        driver,
        f"""
        MATCH (c:{Label.AUTH_CODE.value} {{uid: $uid}})
        WITH c, c.used AS used
        SET c.used = true
        RETURN properties(c) AS code, used
        """,
        {"uid": code_hash},
        database,
    )
    if not rows or rows[0]["used"]:
        return None
    return plain(rows[0]["code"])


# --- audit -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Writer:
    """Who acts, as the audit trail names them: a request's principal or a system job.

    ``purpose`` is the audit vocabulary's (``access/consent.Purpose`` values); ``request``
    groups the events of one API request (its reads and what it publishes).
    """

    actor: str
    role: str
    purpose: str = "operations"
    organisation: str | None = None
    app: str | None = None
    request: str | None = None

    def event(
        self,
        person: str | None,
        action: str,
        what: str,
        *,
        outcome: str = "allowed",
        basis: str | None = None,
        reason: str | None = None,
        purpose: str | None = None,
        break_glass: bool = False,
        at: datetime | None = None,
        request: str | None = None,
    ) -> dict[str, Any]:
        """One event row for :func:`append_audit` (the one place its fields are spelled)."""
        return {
            "at": at or _now(),
            "actor": self.actor,
            "role": self.role,
            "organisation": self.organisation,
            "app": self.app,
            "person": person,
            "action": action,
            "what": what,
            "purpose": purpose or self.purpose,
            "outcome": outcome,
            "basis": basis,
            "reason": reason,
            "breakGlass": break_glass,
            "request": self.request or request,
        }


AUDIT_FIELDS = (
    ".uid, .seq, .at, .actor, .role, .organisation, .app, .person, .action, .what, .purpose, "
    ".outcome, .reason, .basis, .breakGlass, .request, .hash, .prev"
)
_HEAD = Label.AUDIT_HEAD.value


def _event_hash(prev: str, event: Mapping[str, Any]) -> str:
    body = json.dumps(
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in sorted(event.items())},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256((prev + body).encode()).hexdigest()


def append_audit(
    driver: neo4j.Driver, events: Sequence[Mapping[str, Any]], *, database: str | None = None
) -> int:
    """Append events in one transaction, chained after the current head; returns how many."""
    if not events:
        return 0

    def work(tx: neo4j.ManagedTransaction) -> int:
        head = tx.run(
            f"MERGE (h:{_HEAD} {{uid: 'audit'}}) ON CREATE SET h.seq = 0, h.hash = '' "
            "SET h._lock = true RETURN h.seq AS seq, h.hash AS hash"
        ).single()
        assert head is not None
        seq, prev = int(head["seq"]), str(head["hash"])
        rows = []
        for event in events:
            seq += 1
            row = {k: v for k, v in event.items() if v is not None}
            row.update(seq=seq, uid=f"audit:{seq}", prev=prev)
            row["hash"] = prev = _event_hash(prev, {k: v for k, v in row.items() if k != "hash"})
            rows.append(row)
        tx.run(
            f"UNWIND $rows AS row CREATE (e:{_A}) SET e = row "
            f"WITH count(*) AS n MATCH (h:{_HEAD} {{uid: 'audit'}}) "
            "SET h.seq = $seq, h.hash = $hash REMOVE h._lock",
            rows=rows,
            seq=seq,
            hash=prev,
        ).consume()
        return len(rows)

    with driver.session(database=database) as session:
        return session.execute_write(work)


def audit_events(
    driver: neo4j.Driver,
    *,
    person: str | None = None,
    actor: str | None = None,
    outcome: str | None = None,
    before: int | None = None,
    limit: int = 100,
    database: str | None = None,
) -> list[dict[str, Any]]:
    """Events newest first (``before``: a ``seq`` cursor)."""
    rows = run_read(
        driver,
        f"""
        MATCH (e:{_A})
        WHERE ($person IS NULL OR e.person = $person) AND ($actor IS NULL OR e.actor = $actor)
          AND ($outcome IS NULL OR e.outcome = $outcome) AND ($before IS NULL OR e.seq < $before)
        RETURN e {{ {AUDIT_FIELDS} }} AS event
        ORDER BY e.seq DESC LIMIT $limit
        """,
        {"person": person, "actor": actor, "outcome": outcome, "before": before, "limit": limit},
        database,
    )
    return [plain(r["event"]) for r in rows]


def verify_audit_chain(
    driver: neo4j.Driver, *, database: str | None = None, batch: int = 5000
) -> tuple[int, list[str]]:
    """Recompute every hash in order; (events checked, problems found)."""
    problems: list[str] = []
    prev, expected, after, checked = "", 1, 0, 0
    while True:
        rows = run_read(
            driver,
            f"MATCH (e:{_A}) WHERE e.seq > $after RETURN properties(e) AS e "
            "ORDER BY e.seq LIMIT $batch",
            {"after": after, "batch": batch},
            database,
        )
        if not rows:
            break
        for r in rows:
            event = dict(r["e"])
            seq = int(event["seq"])
            if seq != expected:
                problems.append(f"events {expected}..{seq - 1} are missing")
            if event.get("prev") != prev:
                problems.append(f"event {seq}: previous hash does not match")
            body = {k: native(v) for k, v in event.items() if k != "hash"}
            if _event_hash(str(event.get("prev", "")), body) != event.get("hash"):
                problems.append(f"event {seq}: content changed after it was written")
            prev, expected, after = str(event.get("hash")), seq + 1, seq
            checked += 1
    head = run_read(driver, f"MATCH (h:{_HEAD} {{uid: 'audit'}}) RETURN h.seq AS seq", {}, database)
    if head and int(head[0]["seq"]) > after:
        problems.append(f"events {after + 1}..{head[0]['seq']} are missing")
    return checked, problems


def demo_identities(
    driver: neo4j.Driver, *, patients: int = 6, clinics: int = 4, database: str | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Persons with a portal account first (then any), and clinics with the most records.

    For the embedded demo's "sign in as" list only.
    """
    people = run_read(
        driver,
        f"""
        MATCH (p:{_P})
        OPTIONAL MATCH (p)<-[:RECORD_OF]-(a:Patient)-[:IN_DOMAIN]->(:Domain {{kind: 'PORTAL'}})
        WITH p, collect(a.uid)[0] AS account
        RETURN p.uid AS uid, p.name AS name, account
        ORDER BY account IS NULL, p.name, p.uid LIMIT $n
        """,
        {"n": patients},
        database,
    )
    domains = run_read(
        driver,
        f"""
        MATCH (d:{Label.DOMAIN.value} {{kind: 'MIS'}})<-[:IN_DOMAIN]-(r:Patient)
        RETURN d.uid AS uid, d.name AS name, count(r) AS n
        ORDER BY n DESC, d.uid LIMIT $n
        """,
        {"n": clinics},
        database,
    )
    return [dict(r) for r in people], [dict(r) for r in domains]
