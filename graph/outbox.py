"""The operational data store's change feed: an outbox of ``ChangeEvent`` nodes in the graph.

A load or a mutation that changed Patient records calls :func:`emit_changes` with
``{record uid: {data kinds}}``. In **one** write transaction it resolves each record's Person,
writes one ``ChangeEvent`` per (person, domain) and a pending ``WebhookDelivery`` for every
active ``Webhook`` whose domain holds a record of that person. The graph is the source of truth:
any process (the CLI loader, the web server) may write events, and the dispatcher
(``app/notify.py``) reads them back by cursor.

Ordering
    Every event gets ``seq``, an integer taken from the single ``ChangeFeed`` node. The
    increment (``SET f.seq = f.seq + $n``) takes that node's write lock, and Neo4j holds write
    locks until commit, so a second writer cannot number its events before the first has
    committed: **sequence order is commit order**. Numbers are also dense: a rolled-back
    transaction rolls its increment back too. So a reader that has seen everything up to
    cursor ``c`` and now sees ``c+2`` but not ``c+1`` knows ``c+1`` is committing right now
    (read-committed isolation may show the later commit first within one scan) and waits for it
    instead of skipping it (:func:`contiguous`). A wall-clock or uuid ordering would let a
    slow transaction commit an *earlier* key after a reader had moved past it. The lock is held
    only for the short create statement at the end of the transaction, after the reads.

Records not yet linked to a Person (the master patient index links them later) are not lost:
their event is keyed by the record (``personUid`` null, ``unlinked`` true) and delivered to
webhooks of the record's own domain; :func:`attach_persons` later attaches the Person (and the
deliveries to the other domains holding that person's records) once the link exists.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import neo4j

from graph.connection import native
from ontology.model import Label, RelType

log = logging.getLogger(__name__)

#: uid of the one ChangeFeed node (the outbox head).
FEED_UID = "outbox"

PENDING = "pending"  # not tried yet
FAILED = "failed"  # tried, will be retried at nextAttemptAt
DELIVERED = "delivered"  # the receiver answered 2xx; never sent again
WITHHELD = "withheld"  # the person's consent does not cover the webhook's organisation
DELIVERY_STATUSES = (PENDING, FAILED, DELIVERED, WITHHELD)
OPEN_STATUSES = (PENDING, FAILED)

#: How many attempt lines a delivery keeps in ``history`` (the newest).
HISTORY_KEPT = 20

_E = Label.CHANGE_EVENT.value
_F = Label.CHANGE_FEED.value
_W = Label.WEBHOOK.value
_D = Label.WEBHOOK_DELIVERY.value
_P = Label.PERSON.value
_R = Label.PATIENT.value
_DOM = Label.DOMAIN.value
_RECORD_OF = RelType.RECORD_OF.value
_IN_DOMAIN = RelType.IN_DOMAIN.value
_CHANGED = RelType.CHANGED.value
_WATCHES = RelType.WATCHES.value
_DELIVERS = RelType.DELIVERS.value
_VIA = RelType.VIA.value


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class ChangeEventRow:
    uid: str
    seq: int
    at: datetime
    person_uid: str | None
    domain: str
    records: tuple[str, ...]
    kinds: tuple[str, ...]
    source: str

    @property
    def cursor(self) -> str:
        """Opaque to clients; today the decimal sequence number."""
        return str(self.seq)

    def payload(self) -> dict[str, Any]:
        """The JSON body of a webhook delivery (and what subscriptions show)."""
        return {
            "id": self.uid,
            "cursor": self.cursor,
            "personId": self.person_uid,
            "domain": self.domain,
            "kinds": list(self.kinds),
            "records": list(self.records),
            "at": self.at.isoformat(),
            "source": self.source,
        }

    @classmethod
    def from_node(cls, e: Mapping[str, Any]) -> ChangeEventRow:
        return cls(
            uid=e["uid"],
            seq=int(e["seq"]),
            at=native(e["at"]),
            person_uid=e.get("personUid"),
            domain=e["domain"],
            records=tuple(e.get("records") or ()),
            kinds=tuple(e.get("kinds") or ()),
            source=e["source"],
        )


@dataclass(frozen=True, slots=True)
class WebhookRow:
    uid: str
    url: str
    domain: str
    active: bool
    created_at: datetime
    secret: str  # needed by the sender; the API returns it only once, at registration

    @classmethod
    def from_record(cls, w: Mapping[str, Any], domain: str) -> WebhookRow:
        return cls(
            uid=w["uid"],
            url=w["url"],
            domain=domain,
            active=bool(w["active"]),
            created_at=native(w["createdAt"]),
            secret=w["secret"],
        )


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    uid: str
    webhook_uid: str
    event: ChangeEventRow
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    history: tuple[str, ...]

    @classmethod
    def from_record(cls, d: Mapping[str, Any], e: Mapping[str, Any]) -> DeliveryRow:
        code = d.get("lastStatusCode")
        return cls(
            uid=d["uid"],
            webhook_uid=d["webhookUid"],
            event=ChangeEventRow.from_node(e),
            status=d["status"],
            attempts=int(d.get("attempts") or 0),
            created_at=native(d["createdAt"]),
            next_attempt_at=native(d.get("nextAttemptAt")),
            delivered_at=native(d.get("deliveredAt")),
            last_error=d.get("lastError"),
            last_status_code=int(code) if code is not None else None,
            history=tuple(d.get("history") or ()),
        )


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- Cypher

#: Each changed record: is it in the graph, its Person (if linked), its domain.
RESOLVE_RECORDS = f"""
UNWIND $records AS rid
OPTIONAL MATCH (r:`{_R}` {{uid: rid}})
OPTIONAL MATCH (r)-[:`{_RECORD_OF}`]->(p:`{_P}`)
OPTIONAL MATCH (r)-[:`{_IN_DOMAIN}`]->(d:`{_DOM}`)
RETURN rid, r IS NOT NULL AS found, p.uid AS person, coalesce(d.uid, r.sourceDomain) AS domain
"""

#: Active webhooks of every domain that holds a record of each person.
WEBHOOKS_FOR_PERSONS = f"""
UNWIND $persons AS pid
MATCH (:`{_P}` {{uid: pid}})<-[:`{_RECORD_OF}`]-(:`{_R}`)-[:`{_IN_DOMAIN}`]->(d:`{_DOM}`)
MATCH (w:`{_W}` {{active: true}})-[:`{_WATCHES}`]->(d)
RETURN pid, collect(DISTINCT w.uid) AS webhooks
"""

#: Active webhooks watching given domains (events of records not linked yet).
WEBHOOKS_FOR_DOMAINS = f"""
UNWIND $domains AS did
MATCH (w:`{_W}` {{active: true}})-[:`{_WATCHES}`]->(:`{_DOM}` {{uid: did}})
RETURN did, collect(w.uid) AS webhooks
"""

#: Hand out ``$n`` sequence numbers. The direct read-modify-write makes Cypher lock the node
#: before reading ``f.seq``; the lock is held until commit (see the module docstring).
ALLOCATE_SEQ = f"""
MERGE (f:`{_F}` {{uid: $feed}}) ON CREATE SET f.seq = 0
SET f.seq = f.seq + $n
RETURN f.seq - $n AS base
"""

FEED_HEAD = f"MATCH (f:`{_F}` {{uid: $feed}}) RETURN f.seq AS seq"

CREATE_EVENTS = f"""
UNWIND $events AS ev
CREATE (e:`{_E}` {{uid: ev.uid, seq: ev.seq, at: $at, domain: ev.domain, records: ev.records,
                   kinds: ev.kinds, source: $source}})
SET e.personUid = ev.person, e.unlinked = CASE WHEN ev.person IS NULL THEN true END
WITH e, ev
CALL (e, ev) {{
  MATCH (p:`{_P}` {{uid: ev.person}})
  CREATE (e)-[:`{_CHANGED}`]->(p)
}}
CALL (e, ev) {{
  UNWIND ev.webhooks AS wid
  MATCH (w:`{_W}` {{uid: wid}})
  CREATE (dl:`{_D}` {{uid: e.uid + '|' + wid, webhookUid: wid, seq: e.seq, status: $pending,
                      attempts: 0, createdAt: $at, nextAttemptAt: $at}})
  CREATE (dl)-[:`{_DELIVERS}`]->(e)
  CREATE (dl)-[:`{_VIA}`]->(w)
}}
RETURN count(e) AS n
"""

EVENTS_AFTER = f"""
MATCH (e:`{_E}`) WHERE e.seq > $after
  AND ($person IS NULL OR e.personUid = $person) AND ($domain IS NULL OR e.domain = $domain)
RETURN e {{ .* }} AS e ORDER BY e.seq LIMIT $limit
"""

#: Events of records whose Person the MPI has linked since: attach it and add the deliveries
#: to the webhooks of every other domain holding the person's records (MERGE: never twice).
ATTACH_PERSONS = f"""
MATCH (e:`{_E}` {{unlinked: true}})
WITH e LIMIT $limit
MATCH (r:`{_R}`)-[:`{_RECORD_OF}`]->(p:`{_P}`) WHERE r.uid IN e.records
WITH e, head(collect(DISTINCT p)) AS p
SET e.personUid = p.uid
REMOVE e.unlinked
MERGE (e)-[:`{_CHANGED}`]->(p)
WITH e, p
CALL (e, p) {{
  MATCH (p)<-[:`{_RECORD_OF}`]-(:`{_R}`)-[:`{_IN_DOMAIN}`]->(d:`{_DOM}`)
  MATCH (w:`{_W}` {{active: true}})-[:`{_WATCHES}`]->(d)
  WITH DISTINCT e, w
  MERGE (dl:`{_D}` {{uid: e.uid + '|' + w.uid}})
  ON CREATE SET dl.webhookUid = w.uid, dl.seq = e.seq, dl.status = $pending, dl.attempts = 0,
                dl.createdAt = $now, dl.nextAttemptAt = $now
  MERGE (dl)-[:`{_DELIVERS}`]->(e)
  MERGE (dl)-[:`{_VIA}`]->(w)
}}
RETURN count(e) AS n
"""

REGISTER_WEBHOOK = f"""
MATCH (d:`{_DOM}` {{uid: $domain}})
CREATE (w:`{_W}` {{uid: $uid, url: $url, secret: $secret, active: true, createdAt: $now}})
CREATE (w)-[:`{_WATCHES}`]->(d)
RETURN w {{ .* }} AS w, d.uid AS domain
"""

DEACTIVATE_WEBHOOK = f"""
MATCH (w:`{_W}` {{uid: $uid}})-[:`{_WATCHES}`]->(d:`{_DOM}`)
SET w.active = false, w.deactivatedAt = coalesce(w.deactivatedAt, $now)
RETURN w {{ .* }} AS w, d.uid AS domain
"""

WEBHOOK_BY_UID = f"""
MATCH (w:`{_W}` {{uid: $uid}})-[:`{_WATCHES}`]->(d:`{_DOM}`)
RETURN w {{ .* }} AS w, d.uid AS domain
"""

#: Active webhooks whose oldest open delivery is due: only the head counts, so a failing
#: delivery holds back the later ones of its webhook (the receiver sees events in order).
WEBHOOKS_DUE = f"""
MATCH (dl:`{_D}`) WHERE dl.status IN $open
WITH dl.webhookUid AS wid, min(dl.seq) AS headSeq
MATCH (head:`{_D}` {{webhookUid: wid, seq: headSeq}})
WHERE head.nextAttemptAt <= $now
MATCH (w:`{_W}` {{uid: wid, active: true}})-[:`{_WATCHES}`]->(d:`{_DOM}`)
RETURN w {{ .* }} AS w, d.uid AS domain ORDER BY headSeq
"""

#: One sender per webhook across processes (replicas of the web app): take or renew the lease
#: unless another owner holds an unexpired one. ``w.leaseOwner`` is read in a direct
#: read-modify-write, so Cypher locks the node first and two claims cannot both win.
CLAIM_WEBHOOK = f"""
MATCH (w:`{_W}` {{uid: $uid}})
SET w.leaseOwner = CASE
      WHEN w.leaseOwner IS NULL OR w.leaseOwner = $owner OR w.leaseUntil < $now THEN $owner
      ELSE w.leaseOwner END
SET w.leaseUntil = CASE WHEN w.leaseOwner = $owner THEN $until ELSE w.leaseUntil END
RETURN w.leaseOwner = $owner AS mine
"""

#: A webhook's open deliveries, oldest event first.
OPEN_DELIVERIES = f"""
MATCH (dl:`{_D}`) WHERE dl.webhookUid = $webhook AND dl.status IN $open
WITH dl ORDER BY dl.seq LIMIT $limit
MATCH (dl)-[:`{_DELIVERS}`]->(e:`{_E}`)
RETURN dl {{ .* }} AS d, e {{ .* }} AS e ORDER BY dl.seq
"""

#: Only an open delivery can become delivered: a repeated mark changes nothing.
MARK_DELIVERED = f"""
MATCH (dl:`{_D}` {{uid: $uid}}) WHERE dl.status <> $delivered
SET dl.status = $delivered, dl.attempts = dl.attempts + 1, dl.deliveredAt = $now,
    dl.lastStatusCode = $code, dl.nextAttemptAt = null,
    dl.history = (coalesce(dl.history, []) + $entry)[-$kept..]
RETURN dl.attempts AS attempts
"""

MARK_WITHHELD = f"""
MATCH (dl:`{_D}` {{uid: $uid}}) WHERE dl.status IN $open
SET dl.status = $withheld, dl.nextAttemptAt = null,
    dl.history = (coalesce(dl.history, []) + $entry)[-$kept..]
RETURN dl.uid AS uid
"""

MARK_FAILED = f"""
MATCH (dl:`{_D}` {{uid: $uid}}) WHERE dl.status <> $delivered
SET dl.status = $failed, dl.attempts = dl.attempts + 1, dl.nextAttemptAt = $next,
    dl.lastError = $error, dl.lastStatusCode = $code,
    dl.history = (coalesce(dl.history, []) + $entry)[-$kept..]
RETURN dl.attempts AS attempts
"""

DELIVERY_LOG = f"""
MATCH (dl:`{_D}`) WHERE dl.webhookUid = $webhook
  AND ($status IS NULL OR dl.status = $status) AND dl.seq > $after
WITH dl ORDER BY dl.seq LIMIT $limit
MATCH (dl)-[:`{_DELIVERS}`]->(e:`{_E}`)
RETURN dl {{ .* }} AS d, e {{ .* }} AS e ORDER BY dl.seq
"""


# --------------------------------------------------------------------------- writing events


@dataclass(frozen=True, slots=True)
class _Group:
    person: str | None
    domain: str
    records: tuple[str, ...]
    kinds: tuple[str, ...]


def emit_changes(
    driver: neo4j.Driver,
    changes: Mapping[str, Iterable[str]],
    *,
    source: str,
    database: str | None = None,
) -> list[ChangeEventRow]:
    """Record that Patient records changed: one ChangeEvent per (person, domain), one pending
    WebhookDelivery per interested active webhook, all in one transaction.

    ``changes`` maps Patient record uids (``<domain uid>/Patient/<local id>``) to the data kinds
    that changed (``{"Observation", "ReadingSeries"}``); ``source`` names the load or mutation.
    Records not linked to a Person yet get an event of their own (``person_uid`` None, logged);
    records not in the graph at all still get one, their domain taken from the uid.
    Returns the events written, in sequence order.

    Sequence numbers are taken last in the transaction, under the ``ChangeFeed`` node's write
    lock held until commit: a concurrent writer waits for this commit before numbering its own
    events, so numbers commit in increasing order and without gaps. A reader that briefly sees
    a gap waits at it (:func:`contiguous`) instead of moving past an event still committing.
    """
    wanted = {str(rid): sorted({str(k) for k in kinds}) for rid, kinds in changes.items()}
    if not wanted:
        return []
    if not source:
        raise ValueError("emit_changes needs a source (the load or mutation that changed data)")
    with driver.session(database=database) as session:
        return session.execute_write(_emit, wanted, source)


def _emit(
    tx: neo4j.ManagedTransaction, changes: Mapping[str, Sequence[str]], source: str
) -> list[ChangeEventRow]:
    resolved = tx.run(RESOLVE_RECORDS, records=sorted(changes)).data()
    groups: dict[tuple[str, str], tuple[list[str], set[str]]] = {}
    missing: list[str] = []
    unlinked: list[str] = []
    for row in resolved:
        rid: str = row["rid"]
        domain = row["domain"] or _domain_of(rid)
        if not row["found"]:
            missing.append(rid)
        person = row["person"]
        if person is None:
            unlinked.append(rid)
        key = (person or f"record:{rid}", domain)
        records, kinds = groups.setdefault(key, ([], set()))
        records.append(rid)
        kinds.update(changes[rid])
    if missing:
        log.warning("change feed: %d record(s) not in the graph, e.g. %s", len(missing), missing[0])
    if unlinked:
        log.info("change feed: %d record(s) not linked to a person yet", len(unlinked))

    items = [
        _Group(
            person=None if key[0].startswith("record:") else key[0],
            domain=key[1],
            records=tuple(sorted(recs)),
            kinds=tuple(sorted(kinds)),
        )
        for key, (recs, kinds) in sorted(groups.items())
    ]
    persons = sorted({g.person for g in items if g.person is not None})
    domains = sorted({g.domain for g in items if g.person is None})
    by_person = {
        r["pid"]: r["webhooks"] for r in tx.run(WEBHOOKS_FOR_PERSONS, persons=persons).data()
    }
    by_domain = {
        r["did"]: r["webhooks"] for r in tx.run(WEBHOOKS_FOR_DOMAINS, domains=domains).data()
    }

    # Last, so the feed's lock is held only while the events are created.
    record = tx.run(ALLOCATE_SEQ, feed=FEED_UID, n=len(items)).single(strict=True)
    base = int(record["base"])
    at = _now()
    rows: list[dict[str, Any]] = []
    events: list[ChangeEventRow] = []
    for i, g in enumerate(items, start=1):
        uid = f"change:{uuid.uuid4().hex}"
        webhooks = by_person.get(g.person, []) if g.person else by_domain.get(g.domain, [])
        rows.append(
            {
                "uid": uid,
                "seq": base + i,
                "person": g.person,
                "domain": g.domain,
                "records": list(g.records),
                "kinds": list(g.kinds),
                "webhooks": sorted(webhooks),
            }
        )
        events.append(
            ChangeEventRow(uid, base + i, at, g.person, g.domain, g.records, g.kinds, source)
        )
    tx.run(CREATE_EVENTS, events=rows, at=at, source=source, pending=PENDING).consume()
    return events


def _domain_of(record_uid: str) -> str:
    """``<domain uid>/Patient/<local id>`` -> domain uid (the identity contract)."""
    head, sep, _ = record_uid.partition("/Patient/")
    return head if sep else "unknown"


def attach_persons(driver: neo4j.Driver, *, limit: int = 1000, database: str | None = None) -> int:
    """Attach Persons to events of records the MPI has linked since; returns how many."""
    records, _, _ = driver.execute_query(
        ATTACH_PERSONS, limit=limit, now=_now(), pending=PENDING, database_=database
    )
    return int(records[0]["n"]) if records else 0


# --------------------------------------------------------------------------- reading events


def feed_head(driver: neo4j.Driver, *, database: str | None = None) -> int:
    """The last sequence number handed out (0 on a fresh database)."""
    records, _, _ = driver.execute_query(
        FEED_HEAD, feed=FEED_UID, routing_=neo4j.RoutingControl.READ, database_=database
    )
    return int(records[0]["seq"]) if records else 0


def events_after(
    driver: neo4j.Driver,
    after: int,
    *,
    limit: int = 500,
    person: str | None = None,
    domain: str | None = None,
    database: str | None = None,
) -> list[ChangeEventRow]:
    """Events with ``seq > after`` in sequence order (subscriptions, catch-up, polling)."""
    records, _, _ = driver.execute_query(
        EVENTS_AFTER,
        after=after,
        limit=limit,
        person=person,
        domain=domain,
        routing_=neo4j.RoutingControl.READ,
        database_=database,
    )
    return [ChangeEventRow.from_node(r["e"]) for r in records]


def contiguous(events: Sequence[ChangeEventRow], after: int) -> list[ChangeEventRow]:
    """The gap-free run of ``events`` that follows ``after`` (unfiltered reads only).

    Sequence numbers are dense, so a gap is a transaction still committing: stop before it.
    """
    run: list[ChangeEventRow] = []
    expected = after + 1
    for event in events:
        if event.seq != expected:
            break
        run.append(event)
        expected += 1
    return run


# --------------------------------------------------------------------------- webhooks


def register_webhook(
    driver: neo4j.Driver, domain: str, url: str, secret: str, *, database: str | None = None
) -> WebhookRow | None:
    """Create an active webhook watching ``domain``; None when the domain does not exist."""
    records, _, _ = driver.execute_query(
        REGISTER_WEBHOOK,
        domain=domain,
        uid=f"webhook:{uuid.uuid4().hex}",
        url=url,
        secret=secret,
        now=_now(),
        database_=database,
    )
    return WebhookRow.from_record(records[0]["w"], records[0]["domain"]) if records else None


def deactivate_webhook(
    driver: neo4j.Driver, uid: str, *, database: str | None = None
) -> WebhookRow | None:
    """Stop new deliveries to the webhook (its log stays); None when it does not exist."""
    records, _, _ = driver.execute_query(
        DEACTIVATE_WEBHOOK, uid=uid, now=_now(), database_=database
    )
    return WebhookRow.from_record(records[0]["w"], records[0]["domain"]) if records else None


def get_webhook(
    driver: neo4j.Driver, uid: str, *, database: str | None = None
) -> WebhookRow | None:
    records, _, _ = driver.execute_query(
        WEBHOOK_BY_UID, uid=uid, routing_=neo4j.RoutingControl.READ, database_=database
    )
    return WebhookRow.from_record(records[0]["w"], records[0]["domain"]) if records else None


def webhooks_due(
    driver: neo4j.Driver, *, now: datetime | None = None, database: str | None = None
) -> list[WebhookRow]:
    """Active webhooks whose oldest open delivery is due now."""
    records, _, _ = driver.execute_query(
        WEBHOOKS_DUE,
        open=list(OPEN_STATUSES),
        now=now or _now(),
        routing_=neo4j.RoutingControl.READ,
        database_=database,
    )
    return [WebhookRow.from_record(r["w"], r["domain"]) for r in records]


def claim_webhook(
    driver: neo4j.Driver,
    uid: str,
    owner: str,
    *,
    lease_s: float,
    now: datetime | None = None,
    database: str | None = None,
) -> bool:
    """Take or renew the right to send the webhook's deliveries for ``lease_s`` seconds;
    False while another owner holds it (so two dispatchers never send the same delivery)."""
    at = now or _now()
    records, _, _ = driver.execute_query(
        CLAIM_WEBHOOK,
        uid=uid,
        owner=owner,
        now=at,
        until=at + timedelta(seconds=lease_s),
        database_=database,
    )
    return bool(records and records[0]["mine"])


def open_deliveries(
    driver: neo4j.Driver, webhook: str, *, limit: int = 100, database: str | None = None
) -> list[DeliveryRow]:
    """A webhook's pending and failed deliveries in event order (the sender's queue)."""
    records, _, _ = driver.execute_query(
        OPEN_DELIVERIES,
        webhook=webhook,
        open=list(OPEN_STATUSES),
        limit=limit,
        routing_=neo4j.RoutingControl.READ,
        database_=database,
    )
    return [DeliveryRow.from_record(r["d"], r["e"]) for r in records]


def mark_delivered(
    driver: neo4j.Driver,
    uid: str,
    *,
    status_code: int,
    now: datetime | None = None,
    database: str | None = None,
) -> bool:
    """Record a 2xx answer; False when the delivery was already delivered (nothing changes)."""
    at = now or _now()
    records, _, _ = driver.execute_query(
        MARK_DELIVERED,
        uid=uid,
        code=status_code,
        now=at,
        entry=f"{at.isoformat()} {status_code}",
        delivered=DELIVERED,
        kept=HISTORY_KEPT,
        database_=database,
    )
    return bool(records)


def mark_withheld(
    driver: neo4j.Driver, uid: str, *, now: datetime | None = None, database: str | None = None
) -> bool:
    """Close an open delivery unsent: the person's consent does not cover its receiver."""
    at = now or _now()
    records, _, _ = driver.execute_query(
        MARK_WITHHELD,
        uid=uid,
        open=list(OPEN_STATUSES),
        withheld=WITHHELD,
        entry=f"{at.isoformat()} withheld by consent",
        kept=HISTORY_KEPT,
        database_=database,
    )
    return bool(records)


def mark_failed(
    driver: neo4j.Driver,
    uid: str,
    *,
    error: str,
    next_attempt_at: datetime,
    status_code: int | None = None,
    now: datetime | None = None,
    database: str | None = None,
) -> bool:
    """Record a failed attempt and when to try again; False when already delivered."""
    at = now or _now()
    records, _, _ = driver.execute_query(
        MARK_FAILED,
        uid=uid,
        error=error,
        code=status_code,
        next=next_attempt_at,
        entry=f"{at.isoformat()} {error}",
        failed=FAILED,
        delivered=DELIVERED,
        kept=HISTORY_KEPT,
        database_=database,
    )
    return bool(records)


def delivery_log(
    driver: neo4j.Driver,
    webhook: str,
    *,
    status: str | None = None,
    after: int = 0,
    limit: int = 50,
    database: str | None = None,
) -> list[DeliveryRow]:
    """A webhook's deliveries (every status unless ``status``) in event order after a cursor."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValueError(
            f"unknown delivery status {status!r}: one of {', '.join(DELIVERY_STATUSES)}"
        )
    records, _, _ = driver.execute_query(
        DELIVERY_LOG,
        webhook=webhook,
        status=status,
        after=after,
        limit=limit,
        routing_=neo4j.RoutingControl.READ,
        database_=database,
    )
    return [DeliveryRow.from_record(r["d"], r["e"]) for r in records]
