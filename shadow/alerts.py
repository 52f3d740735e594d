"""Early-warning alerts (issue 5 §5): rules kept as data (``shadow/data/alert_rules.yaml``),
evaluated as pure functions of one :class:`~shadow.model.PersonSnapshot`.

Four kinds of rule: ``news2`` (a partial NEWS2 of the latest vital set), ``threshold`` (a bound
crossed by several readings), ``trend`` (a change within a window) and ``silent`` (a device
that stopped reporting). Windows are anchored at the newest point of the metric, not at
``now``, so a late upload is judged on its own timeline; the caller bounds staleness by what it
puts in the snapshot (:func:`lookback_s`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

from shadow.metrics import METRICS
from shadow.model import (
    SEVERITIES,
    AlertCandidate,
    PersonSnapshot,
    Point,
    SeriesActivity,
    Severity,
)
from shadow.rulesfile import load_rule_list
from shadow.scores import (
    news2_pulse,
    news2_respiration,
    news2_spo2_scale1,
    news2_systolic,
    news2_temperature,
)
from terminology.sources import system_url

RULES_PATH = Path(__file__).with_name("data") / "alert_rules.yaml"

#: NEWS2 parameters the shadow can know, with their scoring functions (scale 1 for SpO2: scale
#: 2 needs a prescribed 88-92 % target the shadow does not have).
NEWS2_PARAMETERS = {
    "respiration_rate": news2_respiration,
    "spo2": news2_spo2_scale1,
    "bp_systolic": news2_systolic,
    "heart_rate": news2_pulse,
    "body_temperature": news2_temperature,
}
#: NEWS2 parameters never in a snapshot: outside hospital nobody records them.
NEWS2_UNKNOWN = ("consciousness", "supplemental_oxygen")

# Means and bounds computed in floating point are compared with this slack, so that 97 - 94
# stays a fall of 3.
_EPS = 1e-9


class AlertRuleError(ValueError):
    """A rules file that cannot be used; names the file and the rule."""


def _code(value: str) -> str:
    system, sep, code = value.partition("|")
    if not sep or not system or not code:
        raise ValueError(f"{value!r} is not 'system|code'")
    return f"{system_url(system)}|{code}"


def _metric(value: str) -> str:
    if value not in METRICS:
        raise ValueError(f"unknown metric {value!r}; known: {', '.join(sorted(METRICS))}")
    return value


ConceptUid = Annotated[str, AfterValidator(_code)]
MetricKey = Annotated[str, AfterValidator(_metric)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    reference: str = Field(min_length=1)
    #: condition concept uids; the rule applies only to persons with one of them (or, when the
    #: caller expands them, one of their descendants)
    population: tuple[ConceptUid, ...] = ()
    #: evidence older than this before ``now`` raises nothing: a low glucose of last month
    #: or the vital signs of a clinic visit in the summer are history, not an early warning
    fresh_hours: float = Field(default=24.0, gt=0)


class _News2Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    at_least: int = Field(ge=1, le=20)
    severity: Severity


class News2Rule(_Rule):
    kind: Literal["news2"]
    max_age_minutes: int = Field(default=60, ge=1)
    thresholds: tuple[_News2Threshold, ...] = ()
    single_parameter_3: Severity | None = None

    @model_validator(mode="after")
    def _fires_somehow(self) -> News2Rule:
        if not self.thresholds and self.single_parameter_3 is None:
            raise ValueError("needs thresholds or single_parameter_3")
        levels = [t.at_least for t in self.thresholds]
        if len(set(levels)) != len(levels):
            raise ValueError(f"thresholds repeat an at_least value: {levels}")
        return self


class _Sustained(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    readings: int = Field(default=1, ge=1)
    within_minutes: int = Field(default=0, ge=0)


class ThresholdRule(_Rule):
    kind: Literal["threshold"]
    metric: MetricKey
    below: float | None = None
    above: float | None = None
    #: whether a value equal to the bound crosses it
    inclusive: bool = False
    sustained: _Sustained = Field(default_factory=_Sustained)
    severity: Severity

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdRule:
        if (self.below is None) == (self.above is None):
            raise ValueError("needs exactly one of below and above")
        return self

    def crosses(self, value: float) -> bool:
        if self.below is not None:
            return value <= self.below if self.inclusive else value < self.below
        assert self.above is not None
        return value >= self.above if self.inclusive else value > self.above


class TrendRule(_Rule):
    kind: Literal["trend"]
    metric: MetricKey
    direction: Literal["rising", "falling"]
    change: float = Field(gt=0)
    window_hours: float = Field(gt=0)
    #: ``means``: mean of the last ``recent_hours`` against the mean of the earlier part of the
    #: window (dense data); ``endpoints``: the window's oldest point against its newest (sparse)
    compare: Literal["means", "endpoints"] = "means"
    recent_hours: float | None = Field(default=None, gt=0)
    #: ``means`` only: readings each part must hold, so that a mean is a mean (two spot
    #: readings a day are not a trend of means)
    min_readings: int = Field(default=1, ge=1)
    severity: Severity

    @model_validator(mode="after")
    def _recent_inside_window(self) -> TrendRule:
        if self.compare == "means" and self.recent_s >= self.window_hours * 3600:
            raise ValueError(
                "recent_hours (default: a third of the window, at least 1 h) must be "
                "shorter than window_hours"
            )
        return self

    @property
    def recent_s(self) -> float:
        """The recent part of a ``means`` window: a third of it, at least an hour."""
        return (self.recent_hours or max(self.window_hours / 3, 1.0)) * 3600


class SilentRule(_Rule):
    kind: Literal["silent"]
    factor: float = Field(gt=0)
    min_hours: float = Field(ge=0)
    active_days: float = Field(gt=0)
    #: which series the rule watches, by their typical interval: [min, max)
    min_interval_minutes: float | None = Field(default=None, ge=0)
    max_interval_minutes: float | None = Field(default=None, gt=0)
    severity: Severity

    @model_validator(mode="after")
    def _interval_range(self) -> SilentRule:
        low, high = self.min_interval_minutes, self.max_interval_minutes
        if low is not None and high is not None and low >= high:
            raise ValueError("min_interval_minutes must be below max_interval_minutes")
        return self

    def watches(self, interval_s: float) -> bool:
        minutes = interval_s / 60
        low, high = self.min_interval_minutes, self.max_interval_minutes
        return (low is None or minutes >= low) and (high is None or minutes < high)


AlertRule = Annotated[
    News2Rule | ThresholdRule | TrendRule | SilentRule, Field(discriminator="kind")
]
_RULE: TypeAdapter[AlertRule] = TypeAdapter(AlertRule)


def load_rules(path: Path = RULES_PATH) -> list[AlertRule]:
    """Parse and check a rules file; every bad rule is named (by id or position) in one error."""
    return load_rule_list(path, _RULE.validate_python, AlertRuleError, lambda r: r.id)


@cache
def default_rules() -> tuple[AlertRule, ...]:
    return tuple(load_rules())


def rule_metrics(rules: Sequence[AlertRule]) -> set[str]:
    """The metrics whose points the rules read (silent rules read series activity only)."""
    out: set[str] = set()
    for rule in rules:
        if isinstance(rule, News2Rule):
            out.update(NEWS2_PARAMETERS)
        elif isinstance(rule, ThresholdRule | TrendRule):
            out.add(rule.metric)
    return out


def lookback_s(rules: Sequence[AlertRule]) -> int:
    """Seconds of points before a metric's newest point that the rules can read. A caller
    fetching ``[now - lookback_s, now]`` sees the whole window of every current metric; a
    metric gone quiet before that simply raises no point-based alert."""
    spans = [0]
    for rule in rules:
        if isinstance(rule, News2Rule):
            spans.append(rule.max_age_minutes * 60)
        elif isinstance(rule, ThresholdRule):
            spans.append(rule.sustained.within_minutes * 60)
        elif isinstance(rule, TrendRule):
            spans.append(math.ceil(rule.window_hours * 3600))
    return max(spans)


def evaluate(
    rules: Sequence[AlertRule],
    snapshot: PersonSnapshot,
    *,
    now: int,
    expanded: Mapping[str, frozenset[str]] | None = None,
) -> list[AlertCandidate]:
    """The alerts the rules raise for one person, in rule order then key. ``expanded`` maps a
    rule id to its population codes with their descendants (the caller walks IS_A); a rule
    missing from it is matched on its own codes."""
    out: list[AlertCandidate] = []
    # one event, one alert: of the threshold rules crossed the same way on the same metric
    # (level 1 and level 2 hypoglycaemia), only the most severe fires
    worst: dict[tuple[str, bool], Severity] = {}
    for rule in rules:
        if rule.population:
            codes = set(rule.population) | (expanded or {}).get(rule.id, frozenset())
            if codes.isdisjoint(snapshot.conditions):
                continue
        if isinstance(rule, News2Rule):
            found = _news2(rule, snapshot)
        elif isinstance(rule, ThresholdRule):
            found = _threshold(rule, _points(snapshot, rule.metric))
            if found:
                side = (rule.metric, rule.below is not None)
                worst[side] = max(worst.get(side, "low"), rule.severity, key=SEVERITIES.index)
        elif isinstance(rule, TrendRule):
            found = _trend(rule, _points(snapshot, rule.metric))
        else:
            found = _silent(rule, snapshot, now)
        fresh = now - rule.fresh_hours * 3600
        out += sorted((a for a in found if a.at >= fresh), key=lambda a: a.key)
    by_id = {r.id: r for r in rules}
    return [a for a in out if not _outranked(by_id[a.rule], a, worst)]


def _outranked(
    rule: AlertRule, alert: AlertCandidate, worst: Mapping[tuple[str, bool], Severity]
) -> bool:
    if not isinstance(rule, ThresholdRule):
        return False
    top = worst.get((rule.metric, rule.below is not None), alert.severity)
    return SEVERITIES.index(top) > SEVERITIES.index(alert.severity)


def _points(snapshot: PersonSnapshot, metric: str) -> list[Point]:
    return sorted(snapshot.metrics.get(metric, ()), key=lambda p: p.t)


def _fmt(value: float, metric: str) -> str:
    return f"{value:g} {METRICS[metric].unit}"


def _readings(points: Sequence[Point]) -> int:
    return sum(p.count for p in points)


def _weighted_mean(points: Sequence[Point]) -> float:
    return math.fsum(p.value * p.count for p in points) / sum(p.count for p in points)


def _news2(rule: News2Rule, snapshot: PersonSnapshot) -> list[AlertCandidate]:
    """A missing parameter can only add points, so a partial sum that reaches a trigger
    already proves the full score does."""
    latest: dict[str, Point] = {}
    for metric in NEWS2_PARAMETERS:
        pts = _points(snapshot, metric)
        if pts:
            latest[metric] = pts[-1]
    if not latest:
        return []
    newest = max(p.t for p in latest.values())
    oldest_allowed = newest - rule.max_age_minutes * 60
    used = {m: p for m, p in latest.items() if p.t >= oldest_allowed}
    points = {m: NEWS2_PARAMETERS[m](p.value) for m, p in used.items()}
    score = sum(points.values())
    missing = [m for m in NEWS2_PARAMETERS if m not in used] + list(NEWS2_UNKNOWN)

    severities: list[Severity] = [t.severity for t in rule.thresholds if score >= t.at_least]
    if rule.single_parameter_3 is not None and 3 in points.values():
        severities.append(rule.single_parameter_3)
    if not severities:
        return []
    severity = max(severities, key=SEVERITIES.index)
    parts = ", ".join(f"{m} {_fmt(used[m].value, m)}: {points[m]}" for m in points)
    evidence: dict[str, float | str] = {"score": float(score), "missing": ",".join(missing)}
    evidence["source"] = max(used.values(), key=lambda p: p.t).source
    evidence.update({m: float(p) for m, p in points.items()})
    return [
        _candidate(
            rule,
            (
                f"NEWS2 of the parameters known is {score} (a lower bound of the full score): "
                f"{parts}; missing: {', '.join(missing)}"
            ),
            newest,
            evidence,
            severity=severity,
        )
    ]


def _candidate(
    rule: AlertRule,
    message: str,
    at: int,
    evidence: dict[str, float | str],
    *,
    key: str = "",
    severity: Severity | None = None,
) -> AlertCandidate:
    """An alert of ``rule``: its id, title and reference, its severity unless one is given."""
    if severity is None:
        assert not isinstance(rule, News2Rule), "a NEWS2 alert's severity depends on the score"
        severity = rule.severity
    return AlertCandidate(
        rule=rule.id,
        key=key,
        severity=severity,
        title=rule.title,
        message=message,
        at=at,
        evidence=evidence,
        reference=rule.reference,
    )


def _threshold(rule: ThresholdRule, pts: Sequence[Point]) -> list[AlertCandidate]:
    if not pts:
        return []
    start = pts[-1].t - rule.sustained.within_minutes * 60
    crossing = [p for p in pts if p.t >= start and rule.crosses(p.value)]
    if len(crossing) < rule.sustained.readings:
        return []
    below = rule.below is not None
    bound = rule.below if rule.below is not None else rule.above
    assert bound is not None
    worst = min(p.value for p in crossing) if below else max(p.value for p in crossing)
    sign = ("<=" if below else ">=") if rule.inclusive else ("<" if below else ">")
    return [
        _candidate(
            rule,
            (
                f"{rule.metric} {sign} {_fmt(bound, rule.metric)} on {len(crossing)} readings "
                f"within {rule.sustained.within_minutes} min (worst {_fmt(worst, rule.metric)})"
            ),
            crossing[-1].t,
            {
                "metric": rule.metric,
                "bound": bound,
                "readings": float(len(crossing)),
                "worst": worst,
                "latest": crossing[-1].value,
                "source": crossing[-1].source,
            },
        )
    ]


def _trend(rule: TrendRule, pts: Sequence[Point]) -> list[AlertCandidate]:
    if not pts:
        return []
    newest = pts[-1].t
    window = [p for p in pts if p.t >= newest - rule.window_hours * 3600]
    if rule.compare == "endpoints":
        if window[0].t == newest:
            return []
        before, after = window[0].value, window[-1].value
        how = f"{_fmt(before, rule.metric)} -> {_fmt(after, rule.metric)}"
    else:
        split = newest - rule.recent_s
        earlier = [p for p in window if p.t < split]
        recent = [p for p in window if p.t >= split]
        if min(_readings(earlier), _readings(recent)) < rule.min_readings:
            return []
        before, after = _weighted_mean(earlier), _weighted_mean(recent)
        how = (
            f"mean {_fmt(round(after, 2), rule.metric)} over the last "
            f"{rule.recent_s / 3600:g} h against {_fmt(round(before, 2), rule.metric)} before"
        )
    change = after - before if rule.direction == "rising" else before - after
    if change < rule.change - _EPS:
        return []
    verb = "rose" if rule.direction == "rising" else "fell"
    return [
        _candidate(
            rule,
            (
                f"{rule.metric} {verb} by {_fmt(round(change, 2), rule.metric)} within "
                f"{rule.window_hours:g} h: {how}"
            ),
            newest,
            {
                "metric": rule.metric,
                "change": change,
                "before": before,
                "after": after,
                "window_hours": rule.window_hours,
                "source": pts[-1].source,
            },
        )
    ]


def _silent(rule: SilentRule, snapshot: PersonSnapshot, now: int) -> list[AlertCandidate]:
    """One alert per silent device (a cuff's systolic and diastolic series fall silent
    together), judged on its most recent series. A series of a single reading has no usual
    rhythm to miss, so it is never watched."""
    devices: dict[str, list[SeriesActivity]] = {}
    for s in snapshot.series:
        devices.setdefault(s.device or s.series, []).append(s)
    out = []
    for device, series in sorted(devices.items()):
        s = max(series, key=lambda x: (x.last_t, x.count))
        if s.count < 2 or not rule.watches(s.typical_interval_s):
            continue
        quiet = now - s.last_t
        allowed = max(rule.factor * s.typical_interval_s, rule.min_hours * 3600)
        if quiet <= allowed or quiet > rule.active_days * 86_400:
            continue
        metrics = ", ".join(sorted({x.metric for x in series}))
        out.append(
            _candidate(
                rule,
                (
                    f"device {device} ({metrics}) has not reported for {quiet / 3600:.1f} h; "
                    f"it usually reports every {s.typical_interval_s / 60:.1f} min"
                ),
                now,
                {
                    "device": device,
                    "metrics": metrics,
                    "source": s.source,
                    "last_reading": datetime.fromtimestamp(s.last_t, UTC).isoformat(),
                    "silent_hours": quiet / 3600,
                    "typical_interval_minutes": s.typical_interval_s / 60,
                },
                key=device,
            )
        )
    return out
