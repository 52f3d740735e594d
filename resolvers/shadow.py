"""GraphQL of the digital shadow: ``Patient.shadow { vitals trends scores careGaps dataRequests
alerts }``, alert acknowledgement, live alerts, data requests per domain and the population
view. Every read goes through :class:`access.shadow.ShadowAccess`."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

import strawberry

from access.changes import ChangeAccess
from access.policy import AccessDeniedError
from access.shadow import ShadowAccess
from resolvers.context import Info, in_thread
from shadow.metrics import METRICS
from shadow.model import SEVERITIES
from shadow.population import summarize as summarize_population
from shadow.service import ALERT_KIND
from shadow.times import native
from shadow.trends import TrendSummary


def _shadow(info: Info) -> ShadowAccess:
    ctx = info.context
    if ctx.shadow is None:
        raise ValueError("the digital shadow is not configured in this process")
    return ShadowAccess(ctx.access, ctx.shadow, clock=ctx.shadow_clock, feed=ctx.feed)


def _at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# --------------------------------------------------------------------------- types


@strawberry.type(description="Recommended care the graph shows has not happened (a rule's gap).")
class CareGap:
    rule: str = strawberry.field(description="Id of the rule in shadow/data/care_gaps.yaml.")
    title: str
    status: str = strawberry.field(description="open | closed")
    due_date: date | None
    last_done: date | None = strawberry.field(description="The last required fact, if any.")
    reference: str = strawberry.field(description="The guideline the rule follows.")
    raised_at: datetime | None
    closed_at: datetime | None


@strawberry.type(description="A named input of a score or derived value, as it was used.")
class ShadowInput:
    name: str
    value: str
    unit: str | None = None


@strawberry.type(description="The latest value of a metric across all domains, or a derived one.")
class VitalSign:
    metric: str = strawberry.field(description="Key in shadow/metrics.py, e.g. bp_systolic.")
    display: str
    value: float
    unit: str = strawberry.field(description="Canonical UCUM unit of the metric.")
    at: datetime
    source_domain: str = strawberry.field(
        description="Domain uid the value came from ('medshadow' when derived)."
    )
    record: str = strawberry.field(description="The fact or reading series it came from.")
    derived: bool = strawberry.field(description="Computed by medshadow from `inputs`.")
    inputs: list[ShadowInput]
    method: str | None = strawberry.field(description="Equation and reference, when derived.")


@strawberry.type(description="One point of a trend: a fact, or a device period's aggregate.")
class ShadowTrendPoint:
    at: datetime
    value: float = strawberry.field(description="The value, or the period's mean.")
    low: float | None
    high: float | None
    count: int = strawberry.field(description="Readings behind the point (1 for a fact).")
    source_domain: str
    record: str


@strawberry.type(description="A metric over a window, with the person's own baseline.")
class MetricTrend:
    metric: str
    display: str
    unit: str
    window: str
    since: datetime
    until: datetime
    readings: int
    mean: float | None
    min: float | None
    max: float | None
    stddev: float | None
    cv: float | None = strawberry.field(description="Coefficient of variation (stddev / mean).")
    slope_per_day: float | None
    direction: str | None = strawberry.field(description="rising | falling | stable")
    baseline_mean: float | None = strawberry.field(
        description="Mean of the person's own values in the baseline period before the window."
    )
    baseline_readings: int
    delta_from_baseline: float | None
    z_from_baseline: float | None
    sources: list[str] = strawberry.field(description="Domains that contributed points.")
    points: list[ShadowTrendPoint]


@strawberry.type(description="A validated score, stored with what went in and what was missing.")
class RiskScore:
    name: str = strawberry.field(description="NEWS2 | ASCVD10 | FINDRISC")
    version: str
    value: float | None = strawberry.field(description="Null when an input is missing.")
    category: str | None
    unit: str | None
    complete: bool
    inputs: list[ShadowInput]
    inputs_missing: list[str]
    reference: str
    notes: list[str]
    computed_at: datetime


@strawberry.type(description="Data the shadow lacks, asked of the domains that could hold it.")
class DataRequest:
    id: strawberry.ID
    person_id: strawberry.ID
    need: str
    display: str
    reasons: list[str] = strawberry.field(description="The scores and rules that need it.")
    domains: list[str] = strawberry.field(description="Domain uids asked, most likely first.")
    tried: list[str] = strawberry.field(
        description="Alternatives tried first (other sources, derivations)."
    )
    status: str = strawberry.field(description="open | closed")
    opened_at: datetime | None
    closed_at: datetime | None
    satisfied_by: str | None = strawberry.field(description="What closed it.")


@strawberry.type(description="One line of an alert's audit trail.")
class AlertAuditEntry:
    at: datetime
    actor: str
    action: str = strawberry.field(description="opened | escalated | acknowledged | resolved")
    severity: str | None
    note: str


@strawberry.type(description="An early-warning alert from the person's data.")
class Alert:
    id: strawberry.ID
    person_id: strawberry.ID
    rule: str = strawberry.field(description="Id of the rule in shadow/data/alert_rules.yaml.")
    key: str
    severity: str = strawberry.field(description="low | medium | high | critical")
    state: str = strawberry.field(description="open | acknowledged | resolved")
    title: str
    message: str
    reference: str
    at: datetime | None = strawberry.field(description="Time of the evidence that fired it.")
    opened_at: datetime | None
    last_seen_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    occurrences: int
    evidence: list[ShadowInput]
    trail: list[AlertAuditEntry]


def _text(value: Any) -> str:
    """Numbers as people write them: 3 not 3.0, 0.1235 not 0.123456789."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def _inputs(values: dict[str, Any]) -> list[ShadowInput]:
    out = []
    for name, v in values.items():
        if isinstance(v, dict) and "value" in v:
            out.append(ShadowInput(name=name, value=_text(v["value"]), unit=v.get("unit")))
        else:
            out.append(ShadowInput(name=name, value=_text(v)))
    return out


def alert_of(row: dict[str, Any]) -> Alert:
    trail = []
    for line in row.get("trail") or []:
        e = json.loads(line)
        trail.append(
            AlertAuditEntry(
                at=datetime.fromisoformat(e["at"]),
                actor=e["actor"],
                action=e["action"],
                severity=e.get("severity"),
                note=e.get("note") or "",
            )
        )
    return Alert(
        id=strawberry.ID(row["uid"]),
        person_id=strawberry.ID(row["person"]),
        rule=row["rule"],
        key=row.get("key") or "",
        severity=row["severity"],
        state=row["state"],
        title=row.get("title") or row["rule"],
        message=row.get("message") or "",
        reference=row.get("reference") or "",
        at=native(row.get("at")),
        opened_at=native(row.get("openedAt")),
        last_seen_at=native(row.get("lastSeenAt")),
        acknowledged_at=native(row.get("acknowledgedAt")),
        resolved_at=native(row.get("resolvedAt")),
        occurrences=int(row.get("occurrences") or 1),
        evidence=_inputs(json.loads(row.get("evidence") or "{}")),
        trail=trail,
    )


def request_of(row: dict[str, Any]) -> DataRequest:
    return DataRequest(
        id=strawberry.ID(row["uid"]),
        person_id=strawberry.ID(row["person"]),
        need=row["need"],
        display=row.get("display") or row["need"],
        reasons=list(row.get("reasons") or []),
        domains=list(row.get("domains") or []),
        tried=list(row.get("tried") or []),
        status=row["status"],
        opened_at=native(row.get("openedAt")),
        closed_at=native(row.get("closedAt")),
        satisfied_by=row.get("satisfiedBy"),
    )


def _trend(s: TrendSummary, points: list[Any], window: str) -> MetricTrend:
    m = METRICS[s.metric]
    return MetricTrend(
        metric=s.metric,
        display=m.display,
        unit=m.unit,
        window=window,
        since=_at(s.since),
        until=_at(s.until),
        readings=s.n,
        mean=s.mean,
        min=s.minimum,
        max=s.maximum,
        stddev=s.stddev,
        cv=s.cv,
        slope_per_day=s.slope_per_day,
        direction=s.direction,
        baseline_mean=s.baseline_mean,
        baseline_readings=s.baseline_n,
        delta_from_baseline=s.delta_from_baseline,
        z_from_baseline=s.z_from_baseline,
        sources=sorted({p.source for p in points}),
        points=[
            ShadowTrendPoint(
                at=_at(p.t),
                value=p.value,
                low=p.low,
                high=p.high,
                count=p.count,
                source_domain=p.source,
                record=p.record,
            )
            for p in points
        ],
    )


@strawberry.enum(description="Trend windows: the last 24 hours, 30 days or year.")
class TrendWindow(Enum):
    HOURS_24 = "24h"
    DAYS_30 = "30d"
    YEAR = "1y"


#: Metrics a trends query shows when it names none: the vital signs and the key labs.
DEFAULT_TREND_METRICS = (
    "heart_rate",
    "bp_systolic",
    "bp_diastolic",
    "spo2",
    "body_temperature",
    "respiration_rate",
    "weight",
    "glucose",
    "hba1c",
)


@strawberry.type(description="What medshadow derives about one person: its digital shadow.")
class PatientShadow:
    person_id: strawberry.Private[str]

    @strawberry.field(
        description="The latest value of each metric across every domain (clinic, portal, "
        "devices) in its canonical unit, with its source; BMI, eGFR (CKD-EPI 2021) and mean "
        "arterial pressure derived from their inputs when no domain sent a newer one."
    )
    async def vitals(self, info: Info) -> list[VitalSign]:
        rows = await in_thread(_shadow(info).vitals, self.person_id)
        return [
            VitalSign(
                metric=v.metric,
                display=v.display,
                value=v.value,
                unit=v.unit,
                at=_at(v.t),
                source_domain=v.source,
                record=v.record,
                derived=v.derived,
                inputs=[ShadowInput(name=n, value=d) for n, d in v.inputs],
                method=v.method,
            )
            for v in rows
        ]

    @strawberry.field(
        description="Trends of metrics over a window ending at `until` (default: the shadow's "
        "now): slope, variability and the comparison with the person's own baseline (the four "
        "windows before, at most a year). Device readings come as hourly (24h) or daily "
        "aggregates. Metrics without data in the window are left out."
    )
    async def trends(
        self,
        info: Info,
        metrics: list[str] | None = None,
        window: TrendWindow = TrendWindow.DAYS_30,
        until: datetime | None = None,
    ) -> list[MetricTrend]:
        end = None if until is None else int(until.timestamp())
        wanted = list(metrics) if metrics else list(DEFAULT_TREND_METRICS)
        rows = await in_thread(_shadow(info).trends, self.person_id, wanted, window.value, end)
        return [_trend(s, pts, window.value) for s, pts in rows]

    @strawberry.field(
        description="NEWS2, 10-year ASCVD risk (pooled cohort equations) and FINDRISC as last "
        "computed, with the inputs used, the inputs missing, the model version and the time."
    )
    async def scores(self, info: Info) -> list[RiskScore]:
        rows = await in_thread(_shadow(info).scores, self.person_id)
        return [
            RiskScore(
                name=r["name"],
                version=r["version"],
                value=r.get("value"),
                category=r.get("category"),
                unit="%" if r["name"] == "ASCVD10" else None,
                complete=bool(r.get("complete")),
                inputs=_inputs(r["inputsUsed"]),
                inputs_missing=list(r.get("inputsMissing") or []),
                reference=r["reference"],
                notes=list(r.get("notes") or []),
                computed_at=native(r["computedAt"]),
            )
            for r in rows
        ]

    @strawberry.field(
        description="Care gaps from the last rule evaluation (`medshadow shadow gaps`), open "
        "first; `status` filters (open, closed)."
    )
    async def care_gaps(self, info: Info, status: str | None = None) -> list[CareGap]:
        rows = await in_thread(info.context.access.care_gaps, self.person_id, status)
        return [
            CareGap(
                rule=r["rule"],
                title=r["title"],
                status=r["status"],
                due_date=native(r.get("dueDate")),
                last_done=native(r.get("lastDone")),
                reference=r["reference"],
                raised_at=native(r.get("raisedAt")),
                closed_at=native(r.get("closedAt")),
            )
            for r in rows
        ]

    @strawberry.field(description="What the shadow asks for (open first); `status` filters.")
    async def data_requests(self, info: Info, status: str | None = None) -> list[DataRequest]:
        rows = await in_thread(_shadow(info).data_requests, self.person_id, status)
        return [request_of(r) for r in rows]

    @strawberry.field(
        description="Alerts, newest first; `states` filters (open, acknowledged, ...)."
    )
    async def alerts(self, info: Info, states: list[str] | None = None) -> list[Alert]:
        rows = await in_thread(_shadow(info).alerts, self.person_id, states)
        return [alert_of(r) for r in rows]


# --------------------------------------------------------------------------- population


@strawberry.type
class TierCount:
    tier: str
    count: int


@strawberry.type
class SeverityCount:
    severity: str
    count: int


@strawberry.type(description="One patient of an organisation, placed in a risk tier.")
class PopulationPatient:
    person_id: strawberry.ID
    name: str | None
    birth_date: str | None
    gender: str | None
    tier: str = strawberry.field(description="high | moderate | low | unknown")
    reasons: list[str]
    ascvd10: float | None
    findrisc: float | None
    news2: float | None
    open_alerts: int
    open_gaps: int
    open_requests: int


@strawberry.type(description="An organisation's patients stratified by risk, for planning.")
class PopulationView:
    domain: str
    persons: int
    tiers: list[TierCount]
    open_alerts: list[SeverityCount]
    open_gaps: int
    open_requests: int
    patients: list[PopulationPatient]


@strawberry.type
class ShadowQuery:
    @strawberry.field(
        description="The patients of one organisation (a domain uid such as "
        "`mis:primary_care-...`) by risk tier (shadow/population.py), with open alerts, care "
        "gaps and data requests; `tier` filters the patient list, `first` caps it."
    )
    async def population(
        self, info: Info, domain: strawberry.ID, tier: str | None = None, first: int = 100
    ) -> PopulationView:
        rows = await in_thread(_shadow(info).population, str(domain))
        s = summarize_population(rows)
        shown = [r for r in rows if tier is None or r.tier == tier][: max(0, min(first, 1000))]
        return PopulationView(
            domain=str(domain),
            persons=s.persons,
            tiers=[
                TierCount(tier=t, count=s.tiers.get(t, 0))
                for t in ("high", "moderate", "low", "unknown")
            ],
            open_alerts=[SeverityCount(severity=k, count=v) for k, v in s.open_alerts.items()],
            open_gaps=s.open_gaps,
            open_requests=s.open_requests,
            patients=[
                PopulationPatient(
                    person_id=strawberry.ID(r.person),
                    name=r.name,
                    birth_date=r.birth_date,
                    gender=r.gender,
                    tier=r.tier,
                    reasons=list(r.reasons),
                    ascvd10=r.scores.get("ASCVD10"),
                    findrisc=r.scores.get("FINDRISC"),
                    news2=r.scores.get("NEWS2"),
                    open_alerts=sum(r.alerts.values()),
                    open_gaps=r.gaps,
                    open_requests=r.requests,
                )
                for r in shown
            ],
        )

    @strawberry.field(
        description="What the shadow asks of one domain (its integration engine polls this, "
        "or listens for `DataRequest` change events); `status` filters (open, closed)."
    )
    async def data_requests(
        self, info: Info, domain: strawberry.ID, status: str | None = "open", first: int = 100
    ) -> list[DataRequest]:
        limit = max(1, min(first, 1000))
        rows = await in_thread(_shadow(info).domain_requests, str(domain), status, limit)
        return [request_of(r) for r in rows]


@strawberry.type
class ShadowMutation:
    @strawberry.mutation(description="Acknowledge an open alert (the trail records who).")
    async def acknowledge_alert(
        self, info: Info, id: strawberry.ID, note: str | None = None
    ) -> Alert:
        row = await in_thread(_shadow(info).set_alert_state, str(id), "acknowledged", note or "")
        return alert_of(row)

    @strawberry.mutation(description="Resolve an open or acknowledged alert.")
    async def resolve_alert(self, info: Info, id: strawberry.ID, note: str | None = None) -> Alert:
        row = await in_thread(_shadow(info).set_alert_state, str(id), "resolved", note or "")
        return alert_of(row)


@strawberry.type
class ShadowSubscription:
    @strawberry.subscription(
        description="Alerts as they open or escalate (and as clinicians acknowledge or "
        "resolve them), of one person or of everyone the caller may read, at or above "
        "`minSeverity`."
    )
    async def alerts(
        self,
        info: Info,
        person_id: strawberry.ID | None = None,
        min_severity: str = "low",
    ) -> AsyncGenerator[Alert, None]:
        if min_severity not in SEVERITIES:
            raise ValueError(f"minSeverity must be one of {', '.join(SEVERITIES)}")
        shadow = _shadow(info)
        feed = ChangeAccess.for_access(info.context.access, feed=info.context.feed)
        stream = feed.subscribe(
            person=str(person_id) if person_id else None, domain=None, after=None
        )
        floor = SEVERITIES.index(min_severity)
        seen: set[tuple[str, str, str]] = set()
        async with aclosing(stream):
            async for event in stream:
                if ALERT_KIND not in event.kinds or event.person_uid is None:
                    continue
                visible = await in_thread(feed.visible, event)  # consent, per event
                if visible is None or ALERT_KIND not in visible.kinds:
                    continue
                since = event.at - timedelta(seconds=5)
                try:
                    rows = await in_thread(shadow.alerts, event.person_uid, None, since)
                except AccessDeniedError:
                    continue
                finally:
                    await in_thread(info.context.access.flush_audit)
                for row in sorted(rows, key=lambda r: str(r.get("updatedAt"))):
                    key = (row["uid"], row["severity"], row["state"])
                    if key in seen or SEVERITIES.index(row["severity"]) < floor:
                        continue
                    seen.add(key)
                    yield alert_of(row)


QUERIES: tuple[type, ...] = (ShadowQuery,)
MUTATIONS: tuple[type, ...] = (ShadowMutation,)
SUBSCRIPTIONS: tuple[type, ...] = (ShadowSubscription,)
