"""Typed records of the digital-shadow calculators: quantities, input readings, score results.

A calculator never guesses: when an input is missing its result has ``value=None`` and
``inputs_missing`` names what it needs, so the shadow can ask a domain for it (issue 5 §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal


@dataclass(frozen=True, slots=True)
class Quantity:
    """A measured value in a UCUM unit (``kg``, ``mg/dL``, ``Cel``, ``mm[Hg]``...)."""

    value: float
    unit: str


Input = Quantity | str | bool
Sex = Literal["female", "male"]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """A score or derived value with its provenance: what went in, what was missing, which
    published version of the model was applied, and when."""

    name: str
    version: str
    value: float | None
    category: str | None
    inputs_used: dict[str, Input]
    inputs_missing: list[str]
    computed_at: datetime
    reference: str
    notes: list[str] = field(default_factory=list)
    derived: bool = False
    unit: str | None = None

    @property
    def complete(self) -> bool:
        return self.value is not None


def now_utc() -> datetime:
    return datetime.now(UTC)


# -- the shadow's view of one person (issue 5 §1, §5) ------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    """One value of a metric in the metric's canonical unit (``shadow/metrics.py``).

    ``t`` is epoch seconds (UTC). A point from a device series may stand for ``count``
    readings aggregated into one period (then ``value`` is their mean, ``low``/``high`` their
    range); a point from a clinic or portal observation is one fact (``count == 1``)."""

    t: int
    value: float
    source: str  # domain uid: "mis:...", "portal:...", "iot:..."
    record: str  # the fact's uid, or the reading series' uid
    count: int = 1
    low: float | None = None
    high: float | None = None
    derived: bool = False


@dataclass(frozen=True, slots=True)
class SeriesActivity:
    """When a device's series last reported, and how often it usually does."""

    series: str  # reading series uid
    metric: str  # canonical metric key (shadow/metrics.py)
    device: str  # device uid
    source: str  # domain uid
    first_t: int
    last_t: int
    count: int

    @property
    def typical_interval_s(self) -> float:
        """Mean seconds between readings over the series' life (0 for fewer than 2)."""
        return (self.last_t - self.first_t) / (self.count - 1) if self.count > 1 else 0.0


@dataclass(frozen=True, slots=True)
class PersonSnapshot:
    """What alert rules see of one person: recent points per metric (ascending by ``t``), the
    activity of each device series, and the concept uids (``system|code``) of active
    conditions."""

    person: str
    metrics: dict[str, list[Point]]
    series: list[SeriesActivity]
    conditions: frozenset[str]


Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class AlertCandidate:
    """An alert rule firing for a person. ``key`` separates independent alerts of one rule
    (e.g. the silent device's series uid; "" when there is one per person)."""

    rule: str
    key: str
    severity: Severity
    title: str
    message: str
    at: int  # epoch seconds of the evidence that fired it
    evidence: dict[str, float | str]
    reference: str
