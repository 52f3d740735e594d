"""Risk stratification of an organisation's patients for planning (issue 5 §5).

A person's tier is the worst of what the shadow knows about them, and the reasons say which:

* ``high``: an open critical or high alert, a 10-year ASCVD risk of 20 % or more (ACC/AHA
  2013 "high"), a FINDRISC of 15 or more ("high": 1 in 3 develops type 2 diabetes in 10
  years), or a complete NEWS2 of 5 or more;
* ``moderate``: an open medium alert, ASCVD 7.5-20 % ("intermediate"), FINDRISC 12-14;
* ``low``: at least one complete score and none of the above;
* ``unknown``: no complete score and no open alert - the shadow cannot place the person, and
  its data requests say what it lacks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TIERS = ("high", "moderate", "low", "unknown")


@dataclass(frozen=True, slots=True)
class PopulationRow:
    person: str
    name: str | None
    birth_date: str | None
    gender: str | None
    tier: str
    reasons: tuple[str, ...]
    scores: dict[str, float]
    alerts: dict[str, int]  # open alerts by severity
    gaps: int
    requests: int


@dataclass(slots=True)
class PopulationSummary:
    persons: int = 0
    tiers: Counter[str] = field(default_factory=Counter)
    open_alerts: Counter[str] = field(default_factory=Counter)
    open_gaps: int = 0
    open_requests: int = 0


def tier_of(scores: Mapping[str, float], alerts: Mapping[str, int]) -> tuple[str, list[str]]:
    high: list[str] = []
    moderate: list[str] = []
    for severity in ("critical", "high"):
        if alerts.get(severity):
            high.append(f"{alerts[severity]} open {severity} alert(s)")
    if alerts.get("medium"):
        moderate.append(f"{alerts['medium']} open medium alert(s)")
    ascvd, findrisc, news2 = scores.get("ASCVD10"), scores.get("FINDRISC"), scores.get("NEWS2")
    if ascvd is not None:
        if ascvd >= 20:
            high.append(f"ASCVD 10-year risk {ascvd:.1f} %")
        elif ascvd >= 7.5:
            moderate.append(f"ASCVD 10-year risk {ascvd:.1f} %")
    if findrisc is not None:
        if findrisc >= 15:
            high.append(f"FINDRISC {findrisc:g}")
        elif findrisc >= 12:
            moderate.append(f"FINDRISC {findrisc:g}")
    if news2 is not None and news2 >= 5:
        high.append(f"NEWS2 {news2:g}")
    if high:
        return "high", high + moderate
    if moderate:
        return "moderate", moderate
    return ("low", []) if scores else ("unknown", ["no complete score"])


def stratify(rows: Iterable[Mapping[str, Any]]) -> list[PopulationRow]:
    """Rows of ``graph.shadow.population`` -> tiered rows, highest tier first."""
    out = []
    for r in rows:
        scores = {
            s["name"]: float(s["value"]) for s in r["scores"] or [] if s.get("value") is not None
        }
        alerts = dict(Counter(r["alerts"] or []))
        tier, reasons = tier_of(scores, alerts)
        birth = r.get("birthDate")
        out.append(
            PopulationRow(
                person=r["person"],
                name=r.get("name"),
                birth_date=None if birth is None else str(birth),
                gender=r.get("gender"),
                tier=tier,
                reasons=tuple(reasons),
                scores=scores,
                alerts=alerts,
                gaps=int(r.get("gaps") or 0),
                requests=int(r.get("requests") or 0),
            )
        )
    return sorted(out, key=lambda row: (TIERS.index(row.tier), -sum(row.alerts.values()),
                                        -row.gaps, row.person))  # fmt: skip


def summarize(rows: Iterable[PopulationRow]) -> PopulationSummary:
    s = PopulationSummary()
    for r in rows:
        s.persons += 1
        s.tiers[r.tier] += 1
        s.open_alerts.update(r.alerts)
        s.open_gaps += r.gaps
        s.open_requests += r.requests
    return s
