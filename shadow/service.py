"""Computing and storing the digital shadow: graph reads -> ``shadow/engine.py`` -> graph writes.

:class:`ShadowService` reads a batch of persons at once (``graph/shadow.py``), computes each
person's vitals, scores, data requests and alerts, and writes them back in a few
transactions. The same path serves a full recomputation (CLI, demo, benchmark) and the live
one (``app/shadow_watch.py``: the persons whose data the change feed reports as changed).

What is new is announced on the change feed (``graph/outbox.py``): an opened or escalated alert
as kind ``Alert`` on the record whose data fired it, an opened data request as kind
``DataRequest`` on the person's record in each domain asked, so subscriptions and webhooks of
those domains hear of it.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, cast

from graph import outbox
from graph import shadow as q
from graph.connection import Driver
from graph.readings import trend_params
from shadow import alerts as alert_rules
from shadow.engine import (
    CONDITION_GROUPS,
    INPUT_METRIC,
    SMOKING_STATUS,
    CodedValue,
    DomainRef,
    PersonData,
    Shadow,
    compute,
    score_row,
)
from shadow.metrics import METRICS, metric_of_code
from shadow.model import AlertCandidate, PersonSnapshot, Point, Quantity, SeriesActivity, Sex
from shadow.times import day_of
from shadow.units import UnitError, convert

#: Newest observations read per code and person (scores use the latest; trends read more).
PER_CODE = 50
#: Raw device readings kept at full resolution (the rest are hourly aggregates).
RAW_S = 3600
#: Device history read for alert rules when the rules ask for less.
MIN_LOOKBACK_S = 3 * 86_400

ALERT_KIND = "Alert"
REQUEST_KIND = "DataRequest"
#: Kinds of change the shadow itself writes: never a reason to recompute.
OWN_KINDS = frozenset({ALERT_KIND, REQUEST_KIND})


@dataclass(slots=True)
class RecomputeReport:
    persons: int = 0
    scores: int = 0
    complete_scores: int = 0
    requests_opened: int = 0
    requests_closed: int = 0
    alerts_opened: int = 0
    alerts_escalated: int = 0
    alerts_repeated: int = 0
    alerts_resolved: int = 0
    events: int = 0
    seconds: float = 0.0
    unit_errors: Counter[str] = field(default_factory=Counter)
    severities: Counter[str] = field(default_factory=Counter)

    def add_alerts(self, changes: q.AlertChanges) -> None:
        self.alerts_opened += len(changes.opened)
        self.alerts_escalated += len(changes.escalated)
        self.alerts_repeated += changes.repeated
        self.alerts_resolved += len(changes.resolved)
        for row in changes.opened:
            self.severities[row["props"]["severity"]] += 1


class ShadowService:
    """Reads, computes and stores shadows for batches of persons (one per process is fine:
    it caches only the expanded condition code sets)."""

    def __init__(
        self,
        driver: Driver,
        *,
        database: str | None = None,
        rules: Sequence[alert_rules.AlertRule] | None = None,
    ) -> None:
        self.driver = driver
        self.database = database
        self.rules = list(rules if rules is not None else alert_rules.default_rules())

    # -- code sets ------------------------------------------------------------------------

    @cached_property
    def groups(self) -> dict[str, frozenset[str]]:
        """Condition group (diabetes, ...) -> its codes with their descendants."""
        return {
            name: q.descendants(self.driver, roots, database=self.database)
            for name, roots in CONDITION_GROUPS.items()
        }

    @cached_property
    def expanded(self) -> dict[str, frozenset[str]]:
        """Alert rule id -> its population codes with their descendants."""
        return {
            r.id: q.descendants(self.driver, r.population, database=self.database)
            for r in self.rules
            if r.population
        }

    @cached_property
    def condition_codes(self) -> frozenset[str]:
        """Every condition code a score or a rule asks about (persons' other conditions are
        not read into the shadow)."""
        return frozenset().union(*self.groups.values(), *self.expanded.values())

    def persons_with_devices(self) -> list[str]:
        """Persons with at least one device reading series (the silent-monitor check)."""
        rows = q.read_rows(self.driver, q.PERSONS_WITH_DEVICES, {}, database=self.database)
        return [r["uid"] for r in rows]

    # -- reading ----------------------------------------------------------------------------

    def read(
        self, persons: Sequence[str], as_of: int, report: RecomputeReport | None = None
    ) -> dict[str, PersonData]:
        """Everything the shadow needs of ``persons`` as of ``as_of`` (epoch seconds)."""
        report = report if report is not None else RecomputeReport()
        at = datetime.fromtimestamp(as_of, UTC)
        db = self.database
        base = {"persons": list(persons), "asOf": at}
        out: dict[str, PersonData] = {}
        for row in q.read_rows(self.driver, q.PERSONS, base, database=db):
            records = row["records"] or []
            out[row["pid"]] = PersonData(
                person=row["pid"],
                as_of=as_of,
                name=row["name"],
                birth_date=day_of(row["birthDate"]),
                sex=cast(Sex, row["gender"]) if row["gender"] in ("female", "male") else None,
                deceased=any(r["deceased"] is not None for r in records),
                domains=[
                    DomainRef(
                        r["domain"],
                        r["name"] or r["domain"],
                        r["kind"] or "",
                        r["record"],
                        tuple(r["kinds"] or ()),
                    )
                    for r in records
                ],
            )
        codes = sorted({u for m in METRICS.values() for u in m.concept_uids})
        points: dict[str, dict[str, list[Point]]] = {p: {} for p in out}
        for row in q.read_rows(
            self.driver, q.OBSERVATIONS, {**base, "codes": codes, "perCode": PER_CODE}, database=db
        ):
            metric = metric_of_code(row["code"])
            if metric is None or row["pid"] not in points:
                continue
            value = _number(row["value"])
            if value is None:
                continue
            try:
                v = convert(Quantity(value, row["unit"] or "1"), metric.unit, metric.analyte).value
            except UnitError as exc:
                report.unit_errors[f"{row['code']}: {exc}"] += 1
                continue
            points[row["pid"]].setdefault(metric.key, []).append(
                Point(int(row["t"]), v, row["source"] or "", row["record"])
            )
        for row in q.read_rows(
            self.driver, q.CODED_VALUES, {**base, "codes": [SMOKING_STATUS]}, database=db
        ):
            if row["pid"] in out:
                out[row["pid"]].coded[row["code"]] = CodedValue(
                    row["value"], row["display"], int(row["t"]), row["source"], row["record"]
                )
        for row in q.read_rows(self.driver, q.CONDITIONS, base, database=db):
            if row["pid"] in out:
                out[row["pid"]].conditions = frozenset(row["codes"]) & self.condition_codes
        for row in q.read_rows(self.driver, q.MEDICATIONS, base, database=db):
            if row["pid"] in out:
                out[row["pid"]].medications = list(row["names"])
        self._read_devices(out, points, as_of, report)
        for pid, data in out.items():
            data.points = {k: sorted(v, key=lambda p: p.t) for k, v in points[pid].items()}
        return out

    def _read_devices(
        self,
        out: dict[str, PersonData],
        points: dict[str, dict[str, list[Point]]],
        as_of: int,
        report: RecomputeReport,
    ) -> None:
        device_codes = sorted({c for m in METRICS.values() for c in m.codes})
        rows = q.read_rows(
            self.driver,
            q.SERIES,
            {"persons": list(out), "codes": device_codes, "asOfT": as_of},
            database=self.database,
        )
        info: dict[str, tuple[str, Any, str, str]] = {}
        last: dict[str, int] = {}
        for row in rows:
            metric = metric_of_code(row["code"])
            if metric is None or row["pid"] not in out:
                continue
            sid = row["series"]
            info[sid] = (row["pid"], metric, row["unit"] or metric.unit, row["source"] or "")
            last[sid] = min(int(row["lastT"]), as_of)
            out[row["pid"]].series.append(
                SeriesActivity(
                    series=sid,
                    metric=metric.key,
                    device=row["device"] or "",
                    source=row["source"] or "",
                    first_t=int(row["firstT"]),
                    last_t=int(row["lastT"]),
                    count=int(row["count"] or 0),
                )
            )
        lookback = max(alert_rules.lookback_s(self.rules), MIN_LOOKBACK_S)
        fetched = q.device_points(
            self.driver,
            last,
            since=as_of - lookback,
            raw_s=RAW_S,
            until=as_of,
            database=self.database,
        )
        for sid, (buckets, raw) in fetched.items():
            pid, metric, unit, source = info[sid]

            def canon(v: float, unit: str = unit, metric: Any = metric) -> float:
                if unit == metric.unit:
                    return v
                return convert(Quantity(v, unit), metric.unit, metric.analyte).value

            try:
                pts = points[pid].setdefault(metric.key, [])
                for b in buckets:
                    n = int(b["n"])
                    if n:
                        pts.append(
                            Point(
                                int(b["t"]),
                                canon(float(b["sum"]) / n),
                                source,
                                sid,
                                count=n,
                                low=canon(float(b["min"])),
                                high=canon(float(b["max"])),
                            )
                        )
                pts.extend(Point(t, canon(v), source, sid) for t, v in raw)
            except UnitError as exc:
                report.unit_errors[f"{sid}: {exc}"] += 1

    # -- computing and storing --------------------------------------------------------------

    def snapshot(self, data: PersonData) -> PersonSnapshot:
        return PersonSnapshot(data.person, data.points, data.series, data.conditions)

    def evaluate(self, data: PersonData) -> tuple[Shadow, list[AlertCandidate]]:
        shadow = compute(data, self.groups)
        fired: list[AlertCandidate] = []
        if not data.deceased:
            fired = alert_rules.evaluate(
                self.rules, self.snapshot(data), now=data.as_of, expanded=self.expanded
            )
        return shadow, fired

    def recompute(
        self,
        persons: Sequence[str],
        *,
        as_of: int | None = None,
        report: RecomputeReport | None = None,
        source: str = "shadow",
    ) -> RecomputeReport:
        """Recompute and store the shadow of ``persons`` (one batch); emit change events for
        new alerts and data requests."""
        report = report if report is not None else RecomputeReport()
        now = int(time.time()) if as_of is None else as_of
        data = self.read(persons, now, report)
        score_rows: list[dict[str, Any]] = []
        wanted: list[dict[str, Any]] = []
        firing: list[dict[str, Any]] = []
        satisfied: dict[tuple[str, str], str] = {}
        record_of: dict[tuple[str, str], str] = {}  # (person, domain uid) -> record uid
        for pid, d in data.items():
            for dom in d.domains:
                record_of[(pid, dom.uid)] = dom.record
            shadow, fired = self.evaluate(d)
            report.persons += 1
            for r in shadow.scores:
                score_rows.append(score_row(pid, r))
                report.scores += 1
                report.complete_scores += r.complete
            for need in shadow.needs:
                wanted.append(
                    {
                        "person": pid,
                        "need": need.need,
                        "props": {
                            "need": need.need,
                            "display": need.display,
                            "reasons": list(need.reasons),
                            "domains": list(need.domains),
                            "tried": list(need.tried),
                        },
                    }
                )
            for name in {*METRICS, *INPUT_METRIC}:
                pts = d.points.get(INPUT_METRIC.get(name, name))
                if pts:
                    satisfied[(pid, name)] = f"{pts[-1].source} at {_iso(pts[-1].t)}"
            for a in fired:
                firing.append(
                    {
                        "person": pid,
                        "rule": a.rule,
                        "key": a.key,
                        "severity": a.severity,
                        "props": {
                            "title": a.title,
                            "message": a.message,
                            "at": datetime.fromtimestamp(a.at, UTC),
                            "evidence": q._json(a.evidence),
                            "reference": a.reference,
                            "record": _evidence_record(d, a),
                        },
                    }
                )
        q.store_scores(self.driver, score_rows, database=self.database)
        requests = q.sync_requests(
            self.driver, list(data), wanted, satisfied, database=self.database
        )
        report.requests_opened += len(requests.opened)
        report.requests_closed += len(requests.closed)
        changes = q.sync_alerts(
            self.driver,
            list(data),
            firing,
            rules=[r.id for r in self.rules],
            database=self.database,
        )
        report.add_alerts(changes)
        events: dict[str, set[str]] = {}
        for row in changes.opened + changes.escalated + changes.resolved:
            props = row.get("props") or {}
            rec = props.get("record") or _first_record(data[row["person"]])
            if rec:
                events.setdefault(rec, set()).add(ALERT_KIND)
        for row in requests.opened:
            for dom in row["props"]["domains"]:
                rec = record_of.get((row["person"], dom))
                if rec:
                    events.setdefault(rec, set()).add(REQUEST_KIND)
        if events:
            report.events += len(
                outbox.emit_changes(
                    self.driver, events, source=f"{source}:alerts", database=self.database
                )
            )
        return report

    def recompute_all(
        self,
        *,
        as_of: int | None = None,
        persons: Sequence[str] | None = None,
        batch_size: int = 250,
        on_batch: Callable[[int], None] | None = None,
    ) -> RecomputeReport:
        """Every living person's shadow (or ``persons``'), in batches."""
        started = time.perf_counter()
        report = RecomputeReport()
        uids = list(persons) if persons is not None else all_persons(self.driver, self.database)
        for i in range(0, len(uids), batch_size):
            chunk = uids[i : i + batch_size]
            self.recompute(chunk, as_of=as_of, report=report, source="shadow:recompute")
            if on_batch:
                on_batch(len(chunk))
        report.seconds = time.perf_counter() - started
        return report


def all_persons(driver: Driver, database: str | None = None) -> list[str]:
    return [r["uid"] for r in q.read_rows(driver, q.ALL_PERSONS, {}, database=database)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _first_record(data: PersonData) -> str | None:
    return data.domains[0].record if data.domains else None


def _evidence_record(data: PersonData, alert: AlertCandidate) -> str | None:
    """The person's record in the domain whose data fired the alert (for the change event)."""
    source = str(alert.evidence.get("source", ""))
    rec = next((d.record for d in data.domains if d.uid == source), None)
    return rec or _first_record(data)


# -- trends (read on demand) -----------------------------------------------------------------

#: Device aggregation per trend window: hourly points for a day, daily for a month or a year.
TREND_PERIOD = {"24h": "HOUR", "30d": "DAY", "1y": "DAY"}


def metric_history(
    driver: Driver,
    person: str,
    metric_keys: Sequence[str],
    *,
    since: int,
    until: int,
    every: str,
    database: str | None = None,
) -> dict[str, list[Point]]:
    """Every point of the metrics of one person in [since, until), from every domain: clinic
    and portal observations one by one, device series as one aggregate point per ``every``
    (HOUR, DAY or WEEK), all in the metric's canonical unit, ascending by time. Three reads
    for all the metrics together. A value in a unit that cannot be converted is left out (the
    recomputation report counts those)."""
    metrics = [METRICS[k] for k in metric_keys]
    lo, hi = datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC)
    out: dict[str, list[Point]] = {m.key: [] for m in metrics}
    codes = [u for m in metrics for u in m.concept_uids]
    params = {"person": person, "codes": codes, "since": lo, "until": hi}
    for row in q.read_rows(driver, q.METRIC_HISTORY, params, database=database):
        metric, value = metric_of_code(row["code"]), _number(row["value"])
        if metric is None or metric.key not in out or value is None:
            continue
        try:
            v = convert(Quantity(value, row["unit"] or "1"), metric.unit, metric.analyte).value
        except UnitError:
            continue
        out[metric.key].append(Point(int(row["t"]), v, row["source"] or "", row["record"]))
    device_codes = [c for m in metrics for c in m.codes]
    series = q.read_rows(
        driver, q.PERSON_SERIES, {"person": person, "codes": device_codes}, database=database
    )
    info: dict[str, tuple[Any, str, str]] = {}
    for s in series:
        metric = metric_of_code(s["code"])
        if metric is not None and metric.key in out:
            info[s["series"]] = (metric, s["unit"] or metric.unit, s["source"] or "")
    if info:
        params = trend_params(sorted(info), since, until, every)
        for row in q.read_rows(driver, q.SERIES_TREND, params, database=database):
            n = int(row["n"])
            metric, unit, source = info[row["sid"]]
            try:
                mean, low, high = (
                    convert(Quantity(float(x), unit), metric.unit, metric.analyte).value
                    for x in (float(row["sum"]) / n, row["min"], row["max"])
                )
            except UnitError:
                continue
            t = int(row["period"])
            if since <= t < until:
                out[metric.key].append(
                    Point(t, mean, source, row["sid"], count=n, low=low, high=high)
                )
    return {k: sorted(v, key=lambda p: (p.t, p.record)) for k, v in out.items()}
