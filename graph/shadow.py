"""Cypher of the digital shadow (``shadow/``): what it reads of a person, what it writes back.

Reads are batched over persons (``UNWIND $persons``) so a full recomputation of 10,000 persons
is a few hundred round trips, not tens of thousands:

* :data:`PERSONS`: demographics and the domains holding each person's records;
* :data:`OBSERVATIONS`: numeric LOINC-coded facts of the shadow's metrics from every domain
  (clinic, portal), the newest ``$perCode`` per code;
* :data:`SERIES`: each device reading series with its activity (first/last reading, count);
* :func:`device_points`: a series' hourly buckets as aggregate points, and the raw readings of
  its last ``raw_s`` seconds (alert rules that need several readings within minutes);
* :data:`CONDITIONS`, :data:`MEDICATIONS`, :data:`CODED_VALUES`: active conditions, active
  prescriptions, coded answers (smoking status).

Writes, each in one transaction per batch: ``RiskAssessment`` per (person, score),
``DataRequest`` per (person, need), ``Alert`` per firing episode, all ``-[:FOR_PERSON]->``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import neo4j

from graph.connection import run_read
from graph.readings import BUCKET_SECONDS
from ontology.model import Label, RelType

_P, _R, _CON, _DOM = (
    Label.PERSON.value,
    Label.PATIENT.value,
    Label.CONCEPT.value,
    Label.DOMAIN.value,
)
_OBS, _COND, _MED = Label.OBSERVATION.value, Label.CONDITION.value, Label.MEDICATION_REQUEST.value
_S, _B, _DEV = Label.READING_SERIES.value, Label.READING_BUCKET.value, Label.DEVICE.value
_RA, _DR, _AL = Label.RISK_ASSESSMENT.value, Label.DATA_REQUEST.value, Label.ALERT.value
_RECORD_OF, _ABOUT, _CODED, _IN_DOMAIN = (
    RelType.RECORD_OF.value,
    RelType.ABOUT.value,
    RelType.CODED_AS.value,
    RelType.IN_DOMAIN.value,
)
_IS_A, _FOR, _MEASURED = RelType.IS_A.value, RelType.FOR_PERSON.value, RelType.MEASURED_BY.value

OPEN_ALERT_STATES = ("open", "acknowledged")

# --------------------------------------------------------------------------- reads

DESCENDANTS = f"""
MATCH (root:`{_CON}`) WHERE root.uid IN $roots
MATCH (root)<-[:`{_IS_A}`*0..]-(k:`{_CON}`)
RETURN collect(DISTINCT k.uid) AS uids
"""

ALL_PERSONS = f"MATCH (p:`{_P}`) RETURN p.uid AS uid ORDER BY uid"

PERSONS_WITH_DEVICES = f"""
MATCH (s:`{_S}`)-[:`{_ABOUT}`]->(:`{_R}`)-[:`{_RECORD_OF}`]->(p:`{_P}`)
RETURN DISTINCT p.uid AS uid ORDER BY uid
"""

PERSONS = f"""
UNWIND $persons AS pid
MATCH (p:`{_P}` {{uid: pid}})
RETURN pid, p.birthDate AS birthDate, p.gender AS gender, p.name AS name,
  [(p)<-[:`{_RECORD_OF}`]-(r:`{_R}`)-[:`{_IN_DOMAIN}`]->(d:`{_DOM}`) |
     {{record: r.uid, domain: d.uid, name: d.name, kind: d.kind, deceased: r.deceased,
       kinds: coalesce(r.updatedKinds, [])}}]
    AS records
"""

# Times come back as epoch seconds: the driver's conversion of a date-time into a Python
# datetime costs ~120 us a row, most of a batch's read time. The facts hang off each of the
# person's records. ``any(c IN $codes WHERE c = k.uid)`` rather
# than ``k.uid IN $codes`` on purpose: the latter lets the planner start from the concepts'
# index and expand every fact of those codes, of everyone (1.1M rows for 53 persons of the
# demo, 10x slower); the former can only be checked after expanding from the record.
OBSERVATIONS = f"""
UNWIND $persons AS pid
MATCH (:`{_P}` {{uid: pid}})<-[:`{_RECORD_OF}`]-(r:`{_R}`)
CALL (r) {{
  MATCH (r)<-[:`{_ABOUT}`]-(o:`{_OBS}`)-[:`{_CODED}`]->(k:`{_CON}`)
  WHERE o.value IS NOT NULL AND o.date <= $asOf AND any(c IN $codes WHERE c = k.uid)
  RETURN o, k.uid AS code
}}
WITH pid, code, o ORDER BY o.date DESC
WITH pid, code, collect(o)[..$perCode] AS os
UNWIND os AS o
RETURN pid, code, o.value AS value, o.unit AS unit, o.date.epochSeconds AS t,
       o.sourceDomain AS source,
       o.uid AS record
"""

CODED_VALUES = f"""
UNWIND $persons AS pid
MATCH (:`{_P}` {{uid: pid}})<-[:`{_RECORD_OF}`]-(r:`{_R}`)
CALL (r) {{
  MATCH (r)<-[:`{_ABOUT}`]-(o:`{_OBS}`)-[:`{_CODED}`]->(k:`{_CON}`)
  WHERE o.valueCode IS NOT NULL AND o.date <= $asOf AND any(c IN $codes WHERE c = k.uid)
  RETURN o, k.uid AS code
}}
WITH pid, code, o ORDER BY o.date DESC
WITH pid, code, head(collect(o)) AS o
RETURN pid, code, o.valueCode AS value, o.valueString AS display, o.date.epochSeconds AS t,
       o.sourceDomain AS source, o.uid AS record
"""

CONDITIONS = f"""
UNWIND $persons AS pid
MATCH (:`{_P}` {{uid: pid}})<-[:`{_RECORD_OF}`]-(r:`{_R}`)
CALL (r) {{
  MATCH (r)<-[:`{_ABOUT}`]-(c:`{_COND}`)-[:`{_CODED}`]->(k:`{_CON}`)
  WHERE (c.date IS NULL OR c.date <= $asOf) AND (c.end IS NULL OR c.end > $asOf)
  RETURN k.uid AS code
}}
RETURN pid, collect(DISTINCT code) AS codes
"""

MEDICATIONS = f"""
UNWIND $persons AS pid
MATCH (:`{_P}` {{uid: pid}})<-[:`{_RECORD_OF}`]-(r:`{_R}`)
CALL (r) {{
  MATCH (r)<-[:`{_ABOUT}`]-(m:`{_MED}`)-[:`{_CODED}`]->(k:`{_CON}`)
  WHERE m.status = 'active' AND (m.date IS NULL OR m.date <= $asOf)
  RETURN coalesce(k.display, k.uid) AS name
}}
RETURN pid, collect(DISTINCT name) AS names
"""

SERIES = f"""
UNWIND $persons AS pid
MATCH (:`{_P}` {{uid: pid}})<-[:`{_RECORD_OF}`]-(:`{_R}`)<-[:`{_ABOUT}`]-(s:`{_S}`)
WHERE s.code IN $codes AND s.firstT <= $asOfT
RETURN pid, s.uid AS series, s.code AS code, s.unit AS unit, s.sourceDomain AS source,
       s.firstT AS firstT, s.lastT AS lastT, s.count AS count, s.lastValue AS lastValue,
       [(s)-[:`{_MEASURED}`]->(d:`{_DEV}`) | d.uid][0] AS device
"""

# Hourly buckets in [lo, hi) of each series as aggregate points.
BUCKET_POINTS = f"""
UNWIND $series AS sid
MATCH (b:`{_B}`) WHERE b.series = sid AND b.start >= $lo AND b.start < $hi
RETURN sid, b.start AS t, b.count AS n, b.sum AS sum, b.min AS min, b.max AS max
"""

# Raw readings of each series at or after row.since (and at or before $until).
RAW_POINTS = f"""
UNWIND $rows AS row
MATCH (b:`{_B}`) WHERE b.series = row.sid AND b.start >= row.lo AND b.start <= $until
UNWIND range(0, size(b.t) - 1) AS i
WITH row, b.t[i] AS t, b.v[i] AS v
WHERE t >= row.since AND t <= $until
RETURN row.sid AS sid, t, v
"""

# Aggregates per period, for trends (graph/readings.py TREND, per series).
SERIES_TREND = f"""
UNWIND $series AS sid
MATCH (b:`{_B}`) WHERE b.series = sid AND b.start >= $lo AND b.start < $hi
WITH sid, b.start - ((b.start - $origin) % $width) AS period, b
RETURN sid, period, sum(b.count) AS n, min(b.min) AS min, max(b.max) AS max, sum(b.sum) AS sum
ORDER BY sid, period
"""


def descendants(
    driver: neo4j.Driver, roots: Iterable[str], *, database: str | None = None
) -> frozenset[str]:
    """The concept uids under (and including) ``roots`` by IS_A; roots not in the graph are
    kept as they are (a code system may not be loaded)."""
    roots = sorted(set(roots))
    if not roots:
        return frozenset()
    rows = run_read(driver, DESCENDANTS, {"roots": roots}, database)
    return frozenset(rows[0]["uids"] if rows else ()) | frozenset(roots)


def read_rows(
    driver: neo4j.Driver, query: str, params: Mapping[str, Any], *, database: str | None = None
) -> list[dict[str, Any]]:
    return [dict(r) for r in run_read(driver, query, params, database)]


def device_points(
    driver: neo4j.Driver,
    series_last: Mapping[str, int],
    *,
    since: int,
    raw_s: int,
    until: int,
    database: str | None = None,
) -> dict[str, tuple[list[dict[str, Any]], list[tuple[int, float]]]]:
    """Per series: hourly aggregate rows for buckets in [since, last reading - raw_s) and the
    raw readings (t, v) of its last ``raw_s`` seconds (up to ``until``)."""
    out: dict[str, tuple[list[dict[str, Any]], list[tuple[int, float]]]] = {
        sid: ([], []) for sid in series_last
    }
    if not series_last:
        return out
    raw_from = {sid: min(last, until) - raw_s for sid, last in series_last.items()}
    # Aggregates stop at the hour the raw part starts in; the raw part covers from there on.
    cut = {sid: t - t % BUCKET_SECONDS for sid, t in raw_from.items()}
    lo = since - since % BUCKET_SECONDS
    for row in run_read(
        driver,
        BUCKET_POINTS,
        {"series": sorted(series_last), "lo": lo, "hi": max(cut.values())},
        database,
    ):
        if int(row["t"]) < cut[row["sid"]]:
            out[row["sid"]][0].append(dict(row))
    rows = [{"sid": sid, "lo": cut[sid], "since": cut[sid]} for sid in sorted(series_last)]
    for row in run_read(driver, RAW_POINTS, {"rows": rows, "until": until}, database):
        out[row["sid"]][1].append((int(row["t"]), float(row["v"])))
    return out


# --------------------------------------------------------------------------- writes


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


STORE_SCORES = f"""
UNWIND $rows AS row
MATCH (p:`{_P}` {{uid: row.person}})
MERGE (a:`{_RA}` {{uid: row.uid}})
SET a += row.props
MERGE (a)-[:`{_FOR}`]->(p)
"""

PERSON_SCORES = f"""
MATCH (a:`{_RA}`)-[:`{_FOR}`]->(:`{_P}` {{uid: $person}})
RETURN a {{ .* }} AS a ORDER BY a.name
"""


def store_scores(
    driver: neo4j.Driver, rows: Sequence[dict[str, Any]], *, database: str | None = None
) -> None:
    """``rows``: {person, name, version, value, category, inputsUsed (dict), inputsMissing,
    reference, notes, computedAt, derived}; one RiskAssessment per (person, score name)."""
    payload = [
        {
            "uid": f"risk:{r['name']}|{r['person']}",
            "person": r["person"],
            "props": {
                **{k: v for k, v in r.items() if k not in ("person", "inputsUsed")},
                "inputsUsed": _json(r["inputsUsed"]),
            },
        }
        for r in rows
    ]
    if payload:
        driver.execute_query(STORE_SCORES, {"rows": payload}, database_=database)


def person_scores(
    driver: neo4j.Driver, person: str, *, database: str | None = None
) -> list[dict[str, Any]]:
    rows = run_read(driver, PERSON_SCORES, {"person": person}, database)
    out = []
    for r in rows:
        a = dict(r["a"])
        a["inputsUsed"] = json.loads(a.get("inputsUsed") or "{}")
        out.append(a)
    return out


OPEN_REQUESTS = f"""
MATCH (q:`{_DR}` {{status: 'open'}})-[:`{_FOR}`]->(p:`{_P}`) WHERE p.uid IN $persons
RETURN q.uid AS uid, p.uid AS person, q.need AS need
"""

UPSERT_REQUESTS = f"""
UNWIND $rows AS row
MATCH (p:`{_P}` {{uid: row.person}})
MERGE (q:`{_DR}` {{uid: row.uid}})
WITH q, p, row, q.status = 'open' AS wasOpen
SET q += row.props, q.status = 'open', q.closedAt = null, q.satisfiedBy = null,
    q.openedAt = CASE WHEN wasOpen THEN q.openedAt ELSE $now END
MERGE (q)-[:`{_FOR}`]->(p)
RETURN q.uid AS uid, wasOpen
"""

CLOSE_REQUESTS = f"""
UNWIND $rows AS row
MATCH (q:`{_DR}` {{uid: row.uid, status: 'open'}})
SET q.status = 'closed', q.closedAt = $now, q.satisfiedBy = row.satisfiedBy
"""

PERSON_REQUESTS = f"""
MATCH (q:`{_DR}`)-[:`{_FOR}`]->(p:`{_P}` {{uid: $person}})
WHERE $status IS NULL OR q.status = $status
RETURN q {{ .*, person: p.uid }} AS q ORDER BY q.status DESC, q.need
"""

DOMAIN_REQUESTS = f"""
MATCH (q:`{_DR}`)-[:`{_FOR}`]->(p:`{_P}`)
WHERE $domain IN q.domains AND ($status IS NULL OR q.status = $status)
RETURN q {{ .*, person: p.uid }} AS q ORDER BY q.openedAt DESC, q.uid LIMIT $limit
"""


@dataclass(slots=True)
class RequestChanges:
    opened: list[dict[str, Any]]  # the rows newly opened (or reopened)
    closed: list[dict[str, Any]]  # {uid, person, need, satisfiedBy}


def sync_requests(
    driver: neo4j.Driver,
    persons: Sequence[str],
    wanted: Sequence[dict[str, Any]],
    satisfied_by: Mapping[tuple[str, str], str],
    *,
    database: str | None = None,
) -> RequestChanges:
    """Make the open DataRequests of ``persons`` exactly ``wanted`` ({person, need, props}):
    open new ones, refresh kept ones, close the rest (``satisfied_by[(person, need)]`` says
    what closed it, e.g. the domain the data came from). One transaction."""
    now = datetime.now(UTC)
    rows = [
        {"uid": f"request:{w['need']}|{w['person']}", "person": w["person"], "props": w["props"]}
        for w in wanted
    ]
    keep = {r["uid"] for r in rows}

    def work(tx: neo4j.ManagedTransaction) -> RequestChanges:
        existing = tx.run(OPEN_REQUESTS, persons=list(persons)).data()
        closing = [
            {
                "uid": e["uid"],
                "person": e["person"],
                "need": e["need"],
                "satisfiedBy": satisfied_by.get((e["person"], e["need"]), "no longer needed"),
            }
            for e in existing
            if e["uid"] not in keep
        ]
        written = tx.run(UPSERT_REQUESTS, rows=rows, now=now).data()
        fresh = {w["uid"] for w in written if not w["wasOpen"]}
        if closing:
            tx.run(CLOSE_REQUESTS, rows=closing, now=now).consume()
        return RequestChanges([r for r in rows if r["uid"] in fresh], closing)

    with driver.session(database=database) as session:
        return session.execute_write(work)


def person_requests(
    driver: neo4j.Driver, person: str, *, status: str | None = None, database: str | None = None
) -> list[dict[str, Any]]:
    rows = run_read(driver, PERSON_REQUESTS, {"person": person, "status": status}, database)
    return [dict(r["q"]) for r in rows]


def domain_requests(
    driver: neo4j.Driver,
    domain: str,
    *,
    status: str | None = None,
    limit: int = 100,
    database: str | None = None,
) -> list[dict[str, Any]]:
    params = {"domain": domain, "status": status, "limit": limit}
    return [dict(r["q"]) for r in run_read(driver, DOMAIN_REQUESTS, params, database)]


# -- alerts ---------------------------------------------------------------------------------

OPEN_ALERTS = f"""
MATCH (a:`{_AL}`)-[:`{_FOR}`]->(p:`{_P}`)
WHERE p.uid IN $persons AND a.state IN $open
RETURN a.uid AS uid, p.uid AS person, a.rule AS rule, a.key AS key, a.severity AS severity,
       a.state AS state
"""

CREATE_ALERTS = f"""
UNWIND $rows AS row
MATCH (p:`{_P}` {{uid: row.person}})
CREATE (a:`{_AL}` {{uid: row.uid}})
SET a += row.props, a.state = 'open', a.openedAt = $now, a.lastSeenAt = $now,
    a.updatedAt = $now, a.occurrences = 1, a.trail = [row.entry]
CREATE (a)-[:`{_FOR}`]->(p)
"""

# A re-evaluation on the same evidence (same reading time) is not another occurrence.
UPDATE_ALERTS = f"""
UNWIND $rows AS row
MATCH (a:`{_AL}` {{uid: row.uid}})
WITH a, row, a.at = row.props.at AS same
SET a += row.props,
    a.lastSeenAt = CASE WHEN same THEN a.lastSeenAt ELSE $now END,
    a.updatedAt = CASE WHEN same AND row.entry IS NULL THEN a.updatedAt ELSE $now END,
    a.occurrences = a.occurrences + CASE WHEN same THEN 0 ELSE 1 END,
    a.trail = CASE WHEN row.entry IS NULL THEN a.trail ELSE a.trail + row.entry END
"""

RESOLVE_ALERTS = f"""
UNWIND $rows AS row
MATCH (a:`{_AL}` {{uid: row.uid}}) WHERE a.state IN $open
SET a.state = 'resolved', a.resolvedAt = $now, a.updatedAt = $now, a.trail = a.trail + row.entry
"""

SET_ALERT_STATE = f"""
MATCH (a:`{_AL}` {{uid: $uid}})-[:`{_FOR}`]->(p:`{_P}`)
WHERE a.state IN $from
SET a.state = $to, a.trail = a.trail + $entry, a.updatedAt = $now,
    a.acknowledgedAt = CASE WHEN $to = 'acknowledged' THEN $now ELSE a.acknowledgedAt END,
    a.resolvedAt = CASE WHEN $to = 'resolved' THEN $now ELSE a.resolvedAt END
RETURN a {{ .*, person: p.uid }} AS a
"""

ALERT_BY_UID = f"""
MATCH (a:`{_AL}` {{uid: $uid}})-[:`{_FOR}`]->(p:`{_P}`)
RETURN a {{ .*, person: p.uid }} AS a
"""

PERSON_ALERTS = f"""
MATCH (a:`{_AL}`)-[:`{_FOR}`]->(p:`{_P}` {{uid: $person}})
WHERE ($states IS NULL OR a.state IN $states) AND ($since IS NULL OR a.updatedAt >= $since)
RETURN a {{ .*, person: p.uid }} AS a
ORDER BY CASE a.state WHEN 'resolved' THEN 1 ELSE 0 END, a.updatedAt DESC LIMIT $limit
"""


def trail_entry(actor: str, action: str, *, severity: str | None = None, note: str = "") -> str:
    """One line of an alert's audit trail (JSON text: Neo4j lists cannot hold maps)."""
    return _json(
        {
            "at": datetime.now(UTC).isoformat(),
            "actor": actor,
            "action": action,
            "severity": severity,
            "note": note,
        }
    )


@dataclass(slots=True)
class AlertChanges:
    opened: list[dict[str, Any]]  # {uid, person, rule, key, severity, record}
    escalated: list[dict[str, Any]]
    repeated: int
    resolved: list[dict[str, Any]]


SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def sync_alerts(
    driver: neo4j.Driver,
    persons: Sequence[str],
    firing: Sequence[dict[str, Any]],
    *,
    rules: Sequence[str],
    database: str | None = None,
) -> AlertChanges:
    """Reconcile the alerts of ``persons`` with what fires now (``firing``: {person, rule, key,
    severity, props}), de-duplicated by (person, rule, key):

    * nothing open for it: a new ``open`` alert (its own uid: a later episode is a new alert);
    * already open or acknowledged: the same alert, ``occurrences`` + 1 and ``lastSeenAt``; a
      higher severity is an escalation (trail entry, pushed again), a lower one is not recorded
      as a de-escalation (the clinician sees the worst of the episode);
    * open before but not firing now (a rule in ``rules`` was evaluated and the condition
      cleared): ``resolved`` by medshadow, with a trail entry.
    """
    now = datetime.now(UTC)
    evaluated = set(rules)

    def work(tx: neo4j.ManagedTransaction) -> AlertChanges:
        existing = {
            (e["person"], e["rule"], e["key"] or ""): e
            for e in tx.run(OPEN_ALERTS, persons=list(persons), open=list(OPEN_ALERT_STATES))
        }
        creates, updates, escalated = [], [], []
        seen: set[tuple[str, str, str]] = set()
        for f in firing:
            k = (f["person"], f["rule"], f.get("key") or "")
            if k in seen:
                continue
            seen.add(k)
            old = existing.get(k)
            props = {**f["props"], "rule": f["rule"], "key": k[2], "severity": f["severity"]}
            if old is None:
                uid = f"alert:{uuid.uuid4().hex}"
                opened = trail_entry("medshadow", "opened", severity=f["severity"])
                creates.append({"uid": uid, "person": f["person"], "props": props, "entry": opened})
                continue
            worse = SEVERITY_RANK[f["severity"]] > SEVERITY_RANK[old["severity"]]
            if not worse:
                props["severity"] = old["severity"]
            entry: str | None = None
            if worse:
                note = f"{old['severity']} -> {f['severity']}"
                entry = trail_entry("medshadow", "escalated", severity=f["severity"], note=note)
            row = {"uid": old["uid"], "person": f["person"], "props": props, "entry": entry}
            updates.append(row)
            if worse:
                escalated.append(row)
        resolving = [
            {
                "uid": e["uid"],
                "person": e["person"],
                "rule": e["rule"],
                "entry": trail_entry("medshadow", "resolved", note="condition cleared"),
            }
            for k, e in existing.items()
            if k not in seen and e["rule"] in evaluated
        ]
        if creates:
            tx.run(CREATE_ALERTS, rows=creates, now=now).consume()
        if updates:
            tx.run(UPDATE_ALERTS, rows=updates, now=now).consume()
        if resolving:
            tx.run(RESOLVE_ALERTS, rows=resolving, now=now, open=list(OPEN_ALERT_STATES)).consume()
        return AlertChanges(creates, escalated, len(updates) - len(escalated), resolving)

    with driver.session(database=database) as session:
        return session.execute_write(work)


def set_alert_state(
    driver: neo4j.Driver,
    uid: str,
    *,
    to: str,
    actor: str,
    note: str = "",
    database: str | None = None,
) -> dict[str, Any] | None:
    """Acknowledge (from open) or resolve (from open or acknowledged) one alert; None when it
    does not exist or is not in a state that allows it."""
    allowed = {"acknowledged": ["open"], "resolved": list(OPEN_ALERT_STATES)}[to]
    records, _, _ = driver.execute_query(
        SET_ALERT_STATE,
        {
            "uid": uid,
            "from": allowed,
            "to": to,
            "entry": trail_entry(actor, to, note=note),
            "now": datetime.now(UTC),
        },
        database_=database,
    )
    return dict(records[0]["a"]) if records else None


def alert_by_uid(
    driver: neo4j.Driver, uid: str, *, database: str | None = None
) -> dict[str, Any] | None:
    rows = run_read(driver, ALERT_BY_UID, {"uid": uid}, database)
    return dict(rows[0]["a"]) if rows else None


def person_alerts(
    driver: neo4j.Driver,
    person: str,
    *,
    states: Sequence[str] | None = None,
    since: datetime | None = None,
    limit: int = 100,
    database: str | None = None,
) -> list[dict[str, Any]]:
    params = {
        "person": person,
        "states": list(states) if states else None,
        "since": since,
        "limit": limit,
    }
    return [dict(r["a"]) for r in run_read(driver, PERSON_ALERTS, params, database)]


# -- population --------------------------------------------------------------------------

POPULATION = f"""
MATCH (d:`{_DOM}` {{uid: $domain}})<-[:`{_IN_DOMAIN}`]-(:`{_R}`)-[:`{_RECORD_OF}`]->(p:`{_P}`)
WITH DISTINCT d, p
RETURN p.uid AS person, p.name AS name, p.birthDate AS birthDate, p.gender AS gender,
  [(p)<-[:`{_FOR}`]-(a:`{_RA}`) | a {{ .name, .value, .category }}] AS scores,
  [(p)<-[:`{_FOR}`]-(a:`{_AL}`) WHERE a.state IN $open | a.severity] AS alerts,
  size([(p)<-[:`{_FOR}`]-(g:{Label.CARE_GAP.value} {{status: 'open'}}) | g]) AS gaps,
  size([(p)<-[:`{_FOR}`]-(q:`{_DR}` {{status: 'open'}}) | q]) AS requests
ORDER BY person
"""


def population(
    driver: neo4j.Driver, domain: str, *, database: str | None = None
) -> list[dict[str, Any]]:
    """Every person with a record in ``domain``, with their stored scores, open alert
    severities and open gap and request counts."""
    params = {"domain": domain, "open": list(OPEN_ALERT_STATES)}
    return [dict(r) for r in run_read(driver, POPULATION, params, database)]


# -- trends -------------------------------------------------------------------------------

METRIC_HISTORY = f"""
MATCH (:`{_P}` {{uid: $person}})<-[:`{_RECORD_OF}`]-(r:`{_R}`)
CALL (r) {{
  MATCH (r)<-[:`{_ABOUT}`]-(o:`{_OBS}`)-[:`{_CODED}`]->(k:`{_CON}`)
  WHERE o.value IS NOT NULL AND o.date >= $since AND o.date < $until
    AND any(c IN $codes WHERE c = k.uid)
  RETURN o, k.uid AS code
}}
RETURN code, o.value AS value, o.unit AS unit, o.date.epochSeconds AS t,
       o.sourceDomain AS source,
       o.uid AS record
ORDER BY t
"""

PERSON_SERIES = f"""
MATCH (:`{_P}` {{uid: $person}})<-[:`{_RECORD_OF}`]-(:`{_R}`)<-[:`{_ABOUT}`]-(s:`{_S}`)
WHERE s.code IN $codes
RETURN s.uid AS series, s.code AS code, s.unit AS unit, s.sourceDomain AS source
"""
