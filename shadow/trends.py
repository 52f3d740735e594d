"""Trend statistics of one metric over a window (issue 5 §5), as pure functions of points.

A point may stand for several readings (a device period: ``value`` is their mean, ``count``
how many), so every statistic weighs a point by its ``count``: an hourly heart-rate mean of 60
readings counts sixty times as much as one clinic pulse. The spread inside an aggregated
point is not known, so ``stddev`` is the spread of the means (a lower bound of the readings').
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from shadow.model import Point

DAY_S = 86_400
Direction = Literal["rising", "falling", "stable"]

WINDOWS: dict[str, int] = {"24h": DAY_S, "30d": 30 * DAY_S, "1y": 365 * DAY_S}

#: A baseline reaches back four windows by default, but never more than a year: older values
#: describe a different person (other treatment, other age).
BASELINE_WINDOWS = 4
MAX_BASELINE_S = 365 * DAY_S

#: The change over a window (metric units) below which a trend is "stable": about the size of
#: a measurement's own error or of the day-to-day variation, so that noise is not called a trend.
#: Home scales and fluid/meal shifts move weight by ~0.5 kg; validated cuffs may err by up to
#: 5 mmHg on average (ISO 81060-2); pulse varies by ~5/min at rest; pulse oximeters are
#: accurate to ~2 % and round to 1 %; meters may err by 15 mg/dL below 100 mg/dL (ISO
#: 15197:2013), 10 mg/dL is the smallest change worth naming; body temperature swings ~0.3-0.5
#: Cel over a day. Other metrics: 2 % of the window's mean (``RELATIVE_TOLERANCE``).
TOLERANCE: dict[str, float] = {
    "weight": 0.5,
    "bp_systolic": 5.0,
    "bp_diastolic": 5.0,
    "heart_rate": 5.0,
    "respiration_rate": 2.0,
    "spo2": 1.0,
    "glucose": 10.0,
    "body_temperature": 0.3,
}
RELATIVE_TOLERANCE = 0.02


@dataclass(frozen=True, slots=True)
class TrendSummary:
    """Statistics of one metric in ``[since, until)`` and against the person's own baseline."""

    metric: str
    window_s: int
    since: int
    until: int
    n: int  # readings covered (sum of Point.count)
    points: int
    first: Point | None
    last: Point | None
    mean: float | None
    minimum: float | None
    maximum: float | None
    stddev: float | None
    cv: float | None
    slope_per_day: float | None
    baseline_mean: float | None
    baseline_n: int
    delta_from_baseline: float | None
    z_from_baseline: float | None
    direction: Direction | None


def _weighted_mean(points: Sequence[Point]) -> float | None:
    n = sum(p.count for p in points)
    return math.fsum(p.value * p.count for p in points) / n if n else None


def _weighted_sd(points: Sequence[Point], mean: float) -> float:
    """Population standard deviation over readings (a point counts ``count`` times)."""
    n = sum(p.count for p in points)
    return math.sqrt(math.fsum(p.count * (p.value - mean) ** 2 for p in points) / n)


def _slope_per_day(points: Sequence[Point]) -> float | None:
    """Weighted least-squares slope; times are centred first so epoch seconds lose no
    precision in the squares."""
    if len(points) < 2:
        return None
    n = sum(p.count for p in points)
    t_mean = math.fsum(p.t * p.count for p in points) / n
    v_mean = math.fsum(p.value * p.count for p in points) / n
    sxx = math.fsum(p.count * (p.t - t_mean) ** 2 for p in points)
    if sxx == 0:
        return None
    sxy = math.fsum(p.count * (p.t - t_mean) * (p.value - v_mean) for p in points)
    return sxy / sxx * DAY_S


def _direction(
    metric: str, slope_per_day: float | None, window_s: int, mean: float, tolerance: float | None
) -> Direction | None:
    if slope_per_day is None:
        return None
    if tolerance is None:
        tolerance = TOLERANCE.get(metric, RELATIVE_TOLERANCE * abs(mean))
    change = slope_per_day * window_s / DAY_S
    if abs(change) < tolerance:
        return "stable"
    return "rising" if change > 0 else "falling"


def summarize(
    metric: str,
    points: Sequence[Point],
    *,
    until: int,
    window_s: int,
    baseline_s: int | None = None,
    tolerance: float | None = None,
) -> TrendSummary:
    """Summarise ``metric`` over ``[until - window_s, until)`` and compare it with the
    ``baseline_s`` seconds before (default four windows, at most a year). ``points`` may be
    unsorted and reach beyond both; ``tolerance`` overrides :data:`TOLERANCE` for the
    direction."""
    if window_s <= 0:
        raise ValueError(f"{metric}: window_s must be positive, not {window_s}")
    if baseline_s is None:
        baseline_s = min(window_s * BASELINE_WINDOWS, MAX_BASELINE_S)
    if baseline_s < 0:
        raise ValueError(f"{metric}: baseline_s must not be negative, not {baseline_s}")
    since = until - window_s
    ordered = sorted(points, key=lambda p: p.t)
    window = [p for p in ordered if since <= p.t < until]
    baseline = [p for p in ordered if since - baseline_s <= p.t < since]

    n = sum(p.count for p in window)
    mean = _weighted_mean(window)
    stddev = cv = slope = None
    minimum = maximum = None
    direction: Direction | None = None
    if mean is not None:
        stddev = _weighted_sd(window, mean)
        cv = stddev / abs(mean) if n >= 2 and mean != 0 else None
        minimum = min(p.value if p.low is None else p.low for p in window)
        maximum = max(p.value if p.high is None else p.high for p in window)
        slope = _slope_per_day(window)
        direction = _direction(metric, slope, window_s, mean, tolerance)

    baseline_n = sum(p.count for p in baseline)
    baseline_mean = _weighted_mean(baseline)
    delta = z = None
    if mean is not None and baseline_mean is not None:
        delta = mean - baseline_mean
        baseline_sd = _weighted_sd(baseline, baseline_mean)
        if baseline_n >= 3 and baseline_sd > 0:
            z = delta / baseline_sd

    return TrendSummary(
        metric=metric,
        window_s=window_s,
        since=since,
        until=until,
        n=n,
        points=len(window),
        first=window[0] if window else None,
        last=window[-1] if window else None,
        mean=mean,
        minimum=minimum,
        maximum=maximum,
        stddev=stddev,
        cv=cv,
        slope_per_day=slope,
        baseline_mean=baseline_mean,
        baseline_n=baseline_n,
        delta_from_baseline=delta,
        z_from_baseline=z,
        direction=direction,
    )
