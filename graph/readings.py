"""Device readings in the graph: one series node per (record, device, metric), hourly buckets.

Months of minute-level data as one node per reading would be ~260k nodes per metric per
patient in six months, and a trend would aggregate all of them. Instead:

* ``(:ReadingSeries)`` per (Patient record, device, metric), uid
  ``<domain>/Series/<device>/<metric>``: metric, code, unit, provenance, first/last time, last
  value, count; ``ABOUT`` the record, ``MEASURED_BY`` the Device, ``CODED_AS`` the LOINC Concept.
* ``(:ReadingBucket)`` per series and **hour**, uid ``<series uid>/<hour start epoch>``: the
  readings as parallel arrays ``t`` (epoch seconds, sorted) and ``v`` plus ``count, min, max,
  sum, sumSq``, ``IN_SERIES`` the series, and ``series``/``start`` properties under one composite
  index (graph/schema.py), so a time range of one series is an index range scan.

Why one hour: it is the finest trend granularity offered, so hour, day and week trends are exact
sums over whole buckets and never touch the arrays (a 6-month daily trend reads ~4.4k small
aggregate rows instead of ~260k readings). At minute resolution a bucket holds 60 readings
(~1 KB of arrays), small enough that a late or corrected reading rewrites little, large enough
that a day of minute data is 24 nodes rather than 1,440. Spot readings (a few a day) leave
buckets with one or two entries, which costs one small node per reading at worst - the same as
the naive model and never worse.

Writes are idempotent: a reading is identified by (series, second); re-ingesting it with the
same value changes nothing (and reports no change), with a new value replaces the old one. Each
batch runs in one write transaction that first takes the write locks on its series and buckets
(``MERGE ... SET``), then reads, merges in Python and writes back, so concurrent batches for the
same hour serialise instead of losing readings.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import neo4j

from ontology.model import Label, RelType

BUCKET_SECONDS = 3600
#: Seconds per trend period; weeks start on Monday 00:00 UTC (1970-01-05 is a Monday).
PERIOD_SECONDS = {"HOUR": 3600, "DAY": 86_400, "WEEK": 7 * 86_400}
PERIOD_ORIGIN = {"HOUR": 0, "DAY": 0, "WEEK": 4 * 86_400}


class MetricInfo(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def display(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def system(self) -> str: ...


class ReadingRow(Protocol):
    """What the writer needs of a reading (``loaders.readings.Reading`` is one)."""

    @property
    def device_id(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def metric(self) -> MetricInfo: ...
    @property
    def time(self) -> int: ...
    @property
    def value(self) -> float: ...
    @property
    def domain(self) -> str: ...
    @property
    def record_uid(self) -> str: ...
    @property
    def device_uid(self) -> str: ...
    @property
    def series_uid(self) -> str: ...


@dataclass(slots=True)
class ReadingWriteResult:
    accepted: int = 0  # readings written or confirmed (unchanged)
    inserted: int = 0
    replaced: int = 0
    unchanged: int = 0
    buckets_written: int = 0
    #: indexes (into the input) of readings whose Patient record does not exist
    orphans: list[int] = field(default_factory=list)
    #: indexes of readings from a device whose series belongs to another Patient record
    conflicts: list[int] = field(default_factory=list)
    #: Patient record uid -> kinds of data that changed (for the change feed)
    changes: dict[str, set[str]] = field(default_factory=dict)

    def add(self, other: ReadingWriteResult, offset: int = 0) -> None:
        self.accepted += other.accepted
        self.inserted += other.inserted
        self.replaced += other.replaced
        self.unchanged += other.unchanged
        self.buckets_written += other.buckets_written
        self.orphans.extend(i + offset for i in other.orphans)
        self.conflicts.extend(i + offset for i in other.conflicts)
        for uid, kinds in other.changes.items():
            self.changes.setdefault(uid, set()).update(kinds)


# -- Cypher ------------------------------------------------------------------------------------

_S, _B, _P = Label.READING_SERIES.value, Label.READING_BUCKET.value, Label.PATIENT.value
_DEV, _CON, _DOM = Label.DEVICE.value, Label.CONCEPT.value, Label.DOMAIN.value
_ABOUT, _CODED = RelType.ABOUT.value, RelType.CODED_AS.value
_MEASURED, _IN_SERIES = RelType.MEASURED_BY.value, RelType.IN_SERIES.value

EXISTING_RECORDS = f"UNWIND $uids AS uid MATCH (r:`{_P}` {{uid: uid}}) RETURN r.uid AS uid"

# Locks each series (SET on every row) and returns its running state. A series belongs to the
# record that created it (``record``); a device's readings under another account are refused.
LOCK_SERIES = f"""
UNWIND $rows AS row
MATCH (r:`{_P}` {{uid: row.record}})
MERGE (s:`{_S}` {{uid: row.uid}})
ON CREATE SET s += row.props, s.count = 0, s.record = row.record
SET s.metric = row.props.metric
FOREACH (_ IN CASE WHEN s.record = row.record THEN [1] ELSE [] END |
  MERGE (d:`{_DEV}` {{uid: row.device}})
  ON CREATE SET d += row.deviceProps
  MERGE (d)-[:`{_ABOUT}`]->(r)
  MERGE (s)-[:`{_MEASURED}`]->(d)
  MERGE (s)-[:`{_ABOUT}`]->(r)
  MERGE (c:`{_CON}` {{uid: row.concept}})
  ON CREATE SET c += row.conceptProps
  MERGE (s)-[k:`{_CODED}`]->(c)
  SET k.rank = 0
)
RETURN s.uid AS uid, s.record AS owner, s.count AS count, s.firstT AS firstT,
       s.lastT AS lastT, s.lastValue AS lastValue
"""

LOCK_BUCKETS = f"""
UNWIND $rows AS row
MERGE (b:`{_B}` {{uid: row.uid}})
ON CREATE SET b.series = row.series, b.start = row.start, b.end = row.start + $width,
              b.sourceDomain = row.domain, b.t = [], b.v = [], b.count = 0
SET b.series = row.series
RETURN b.uid AS uid, b.t AS t, b.v AS v
"""

WRITE_BUCKETS = f"""
UNWIND $rows AS row
MATCH (b:`{_B}` {{uid: row.uid}})
SET b.t = row.t, b.v = row.v, b.count = row.count, b.min = row.min, b.max = row.max,
    b.sum = row.sum, b.sumSq = row.sumSq
WITH b, row WHERE row.created
MATCH (s:`{_S}` {{uid: row.series}})
MERGE (b)-[:`{_IN_SERIES}`]->(s)
"""

WRITE_SERIES = f"""
UNWIND $rows AS row
MATCH (s:`{_S}` {{uid: row.uid}})
SET s.count = row.count, s.firstT = row.firstT, s.lastT = row.lastT,
    s.firstTime = row.firstTime, s.lastTime = row.lastTime, s.date = row.lastTime,
    s.lastValue = row.lastValue
"""

# Reads: series of persons, then buckets per series by the (series, start) index.
_SERIES_FIELDS = """s { .uid, .metric, .code, .display, .unit, .sourceDomain, .sourceRecordId,
  .count, .firstTime, .lastTime, .lastValue, .recordId,
  device: [(s)-[:MEASURED_BY]->(d:Device) | d { .uid, .recordId, .name, .type }][0] }"""

SERIES_OF_PERSONS = f"""
UNWIND $uids AS uid
MATCH (:Person {{uid: uid}})<-[:RECORD_OF]-(r:`{_P}`)<-[:`{_ABOUT}`]-(s:`{_S}`)
WHERE $metric IS NULL OR s.metric = $metric
MATCH (r)-[:IN_DOMAIN]->(dom:`{_DOM}`)
RETURN uid, {_SERIES_FIELDS} AS series, dom {{ .uid, .name, .kind }} AS domain
ORDER BY s.metric, s.uid
"""

SERIES_OF_RECORDS = f"""
UNWIND $uids AS uid
MATCH (r:`{_P}` {{uid: uid}})<-[:`{_ABOUT}`]-(s:`{_S}`)
WHERE $metric IS NULL OR s.metric = $metric
MATCH (r)-[:IN_DOMAIN]->(dom:`{_DOM}`)
RETURN uid, {_SERIES_FIELDS} AS series, dom {{ .uid, .name, .kind }} AS domain
ORDER BY s.metric, s.uid
"""

# Buckets whose hour starts in [lo, hi) for a set of series, aggregated per period. The
# bucket's own start decides its period, so a period's figures are exact sums of whole hours.
TREND = f"""
UNWIND $series AS sid
MATCH (b:`{_B}`) WHERE b.series = sid AND b.start >= $lo AND b.start < $hi
WITH b.start - ((b.start - $origin) % $width) AS period, b
RETURN period, sum(b.count) AS n, min(b.min) AS min, max(b.max) AS max,
       sum(b.sum) AS sum, sum(b.sumSq) AS sumSq
ORDER BY period
"""

# Raw readings of a set of series in [since, until), ascending by (time, series), keyset-paged.
WINDOW = f"""
UNWIND $series AS sid
CALL (sid) {{
  MATCH (b:`{_B}`) WHERE b.series = sid AND b.start >= $lo AND b.start < $until
  WITH b ORDER BY b.start
  UNWIND range(0, size(b.t) - 1) AS i
  WITH b.t[i] AS t, b.v[i] AS v
  WHERE t >= $since AND t < $until
    AND ($afterT IS NULL OR t > $afterT OR (t = $afterT AND sid > $afterSeries))
  RETURN t, v LIMIT $limit
}}
RETURN sid AS series, t, v ORDER BY t, series LIMIT $limit
"""

LATEST = f"""
UNWIND $series AS sid
MATCH (s:`{_S}` {{uid: sid}})
RETURN s.uid AS series, s.lastT AS t, s.lastValue AS v
"""


SERIES_COUNT = f"MATCH (s:`{_S}` {{sourceDomain: $domain}}) RETURN count(s) AS n"


def count_series(driver: neo4j.Driver, domain: str, *, database: str | None = None) -> int:
    """How many reading series a domain has in the graph."""
    records, _, _ = driver.execute_query(
        SERIES_COUNT, {"domain": domain}, routing_=neo4j.RoutingControl.READ, database_=database
    )
    return int(records[0]["n"])


# -- writing -----------------------------------------------------------------------------------


def bucket_start(t: int) -> int:
    return t - t % BUCKET_SECONDS


def write_readings(
    driver: neo4j.Driver,
    readings: Sequence[ReadingRow],
    *,
    database: str | None = None,
) -> ReadingWriteResult:
    """Write one batch of readings in one transaction (see the module docstring).

    Readings whose Patient record is not in the graph are not written; their indexes come back
    in ``orphans`` for the caller to reject (load the accounts first). So are readings of a
    device whose series belongs to another record (``conflicts``)."""
    result = ReadingWriteResult()
    if readings:
        with driver.session(database=database) as session:
            session.execute_write(_write_tx, readings, result)
    return result


def _write_tx(
    tx: neo4j.ManagedTransaction, readings: Sequence[ReadingRow], out: ReadingWriteResult
) -> None:
    # The transaction function may be retried: compute into a fresh result, copy at the end.
    result = ReadingWriteResult()
    series_rows: dict[str, dict[str, Any]] = {}
    # series -> bucket start -> time -> value; a later duplicate in the batch wins
    incoming: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    record_of: dict[str, str] = {}
    domain_of: dict[str, str] = {}
    known = {
        rec["uid"]
        for rec in tx.run(EXISTING_RECORDS, uids=sorted({r.record_uid for r in readings}))
    }
    for r in readings:
        sid = r.series_uid
        if sid not in series_rows and r.record_uid in known:
            record_of[sid] = r.record_uid
            domain_of[sid] = r.domain
            m = r.metric
            series_rows[sid] = {
                "uid": sid,
                "record": r.record_uid,
                "device": r.device_uid,
                "concept": f"{m.system}|{m.code}",
                "props": {
                    "metric": m.key,
                    "code": m.code,
                    "display": m.display,
                    "unit": m.unit,
                    "recordId": f"{r.device_id}/{m.key}",
                    "sourceDomain": r.domain,
                    "sourceRecordId": f"{r.device_id}/{m.key}",
                    "resourceType": "ReadingSeries",
                },
                "deviceProps": {
                    "recordId": r.device_id,
                    "sourceDomain": r.domain,
                    "sourceRecordId": r.device_id,
                    "resourceType": "Device",
                    "name": r.device_id,
                },
                "conceptProps": {"system": m.system, "code": m.code, "display": m.display},
            }
    locked = tx.run(LOCK_SERIES, rows=list(series_rows.values()))
    state = {rec["uid"]: dict(rec) for rec in locked}
    for i, r in enumerate(readings):
        if r.record_uid not in known:
            result.orphans.append(i)
        elif state[r.series_uid]["owner"] != r.record_uid:
            result.conflicts.append(i)  # the device (and its series) is another account's
        else:
            incoming[r.series_uid][bucket_start(r.time)][r.time] = r.value
    bucket_rows = [
        {"uid": f"{sid}/{start}", "series": sid, "start": start, "domain": domain_of[sid]}
        for sid, buckets in incoming.items()
        for start in buckets
    ]
    existing = {
        rec["uid"]: (list(rec["t"] or []), list(rec["v"] or []))
        for rec in tx.run(LOCK_BUCKETS, rows=bucket_rows, width=BUCKET_SECONDS)
    }
    writes: list[dict[str, Any]] = []
    for sid, buckets in incoming.items():
        st = state[sid]
        count = int(st["count"] or 0)
        first_t, last_t, last_v = st["firstT"], st["lastT"], st["lastValue"]
        changed = False
        for start, values in buckets.items():
            uid = f"{sid}/{start}"
            old_t, old_v = existing[uid]
            merged = dict(zip(old_t, old_v, strict=True))
            for t, v in values.items():
                old = merged.get(t)
                if old is None:
                    result.inserted += 1
                elif old == v:
                    result.unchanged += 1
                else:
                    result.replaced += 1
                merged[t] = v
            result.accepted += len(values)
            if len(merged) == len(old_t) and all(
                merged[t] == v for t, v in zip(old_t, old_v, strict=True)
            ):
                continue
            changed = True
            ts = sorted(merged)
            vs = [merged[t] for t in ts]
            writes.append(
                {
                    "uid": uid,
                    "series": sid,
                    "created": not old_t,
                    "t": ts,
                    "v": vs,
                    "count": len(ts),
                    "min": min(vs),
                    "max": max(vs),
                    "sum": math.fsum(vs),
                    "sumSq": math.fsum(v * v for v in vs),
                }
            )
            count += len(ts) - len(old_t)
            first_t = ts[0] if first_t is None else min(first_t, ts[0])
            if last_t is None or ts[-1] >= last_t:
                last_t, last_v = ts[-1], vs[-1]
        if changed:
            st.update(count=count, firstT=first_t, lastT=last_t, lastValue=last_v, dirty=True)
            result.changes.setdefault(record_of[sid], set()).add(Label.READING_SERIES.value)
    if writes:
        tx.run(WRITE_BUCKETS, rows=writes).consume()
        result.buckets_written = len(writes)
    dirty = [
        {
            "uid": st["uid"],
            "count": st["count"],
            "firstT": st["firstT"],
            "lastT": st["lastT"],
            "firstTime": _dt(st["firstT"]),
            "lastTime": _dt(st["lastT"]),
            "lastValue": st["lastValue"],
        }
        for st in state.values()
        if st.get("dirty")
    ]
    if dirty:
        tx.run(WRITE_SERIES, rows=dirty).consume()
    out.add(result)


def _dt(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrendPoint:
    start: int
    count: int
    min: float
    max: float
    mean: float
    stddev: float


def trend_bounds(since: int, until: int, every: str) -> tuple[int, int, int, int]:
    """(lo, hi, width, origin): [since, until) widened to whole periods."""
    width, origin = PERIOD_SECONDS[every], PERIOD_ORIGIN[every]
    lo = since - (since - origin) % width
    hi = until + (-(until - origin)) % width
    return lo, hi, width, origin


def trend_points(rows: Iterable[Any]) -> list[TrendPoint]:
    points = []
    for row in rows:
        n = int(row["n"])
        if n == 0:
            continue
        mean = row["sum"] / n
        variance = max(row["sumSq"] / n - mean * mean, 0.0)
        points.append(
            TrendPoint(
                start=int(row["period"]),
                count=n,
                min=float(row["min"]),
                max=float(row["max"]),
                mean=mean,
                stddev=math.sqrt(variance),
            )
        )
    return points


def trend_params(series: Sequence[str], since: int, until: int, every: str) -> dict[str, Any]:
    lo, hi, width, origin = trend_bounds(since, until, every)
    return {"series": list(series), "lo": lo, "hi": hi, "width": width, "origin": origin}


def window_params(
    series: Sequence[str],
    since: int,
    until: int,
    limit: int,
    after: tuple[int, str] | None = None,
) -> dict[str, Any]:
    return {
        "series": list(series),
        "lo": bucket_start(since),
        "since": since,
        "until": until,
        "limit": limit,
        "afterT": after[0] if after else None,
        "afterSeries": after[1] if after else None,
    }


# -- the benchmark's baseline: one node per reading --------------------------------------------

NAIVE_INDEX = (
    "CREATE INDEX observation_series_t IF NOT EXISTS FOR (n:Observation) ON (n.series, n.t)"
)
NAIVE_WRITE = f"""
UNWIND $rows AS row
MERGE (o:`{Label.OBSERVATION.value}` {{uid: row.uid}})
SET o.series = row.series, o.t = row.t, o.value = row.v
"""
NAIVE_TREND = f"""
MATCH (o:`{Label.OBSERVATION.value}`) WHERE o.series = $series AND o.t >= $lo AND o.t < $hi
WITH o.t - ((o.t - $origin) % $width) AS period, o.value AS v
RETURN period, count(v) AS n, min(v) AS min, max(v) AS max, sum(v) AS sum, sum(v * v) AS sumSq
ORDER BY period
"""


def write_readings_naive(
    driver: neo4j.Driver, readings: Sequence[ReadingRow], *, database: str | None = None
) -> int:
    """Baseline for the benchmark only: every reading its own node (MERGE on series+time)."""
    rows = [
        {"uid": f"{r.series_uid}/{r.time}", "series": r.series_uid, "t": r.time, "v": r.value}
        for r in readings
    ]
    driver.execute_query(NAIVE_WRITE, {"rows": rows}, database_=database)
    return len(rows)
