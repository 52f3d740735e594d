"""Trend statistics against hand-computed values and the standard library's ``statistics``."""

from __future__ import annotations

import math
import statistics

import pytest

from shadow.model import Point
from shadow.trends import DAY_S, WINDOWS, summarize

UNTIL = 1_800_000_000  # an arbitrary epoch second


def _p(
    t: int, value: float, count: int = 1, low: float | None = None, high: float | None = None
) -> Point:
    return Point(t, value, "iot:test", "series:test", count=count, low=low, high=high)


def test_slope_of_an_exact_line_in_units_per_day() -> None:
    # weight = 70 + 0.25 kg/day, one point a day for 20 days, given unsorted
    pts = [_p(UNTIL - (20 - d) * DAY_S, 70 + 0.25 * d) for d in range(20)]
    s = summarize("weight", list(reversed(pts)), until=UNTIL, window_s=WINDOWS["30d"])
    assert s.points == 20
    assert s.n == 20
    assert s.slope_per_day == pytest.approx(0.25, abs=1e-12)
    assert s.first == pts[0]
    assert s.last == pts[-1]
    # 0.25 kg/day over a 30-day window is 7.5 kg: far above the 0.5 kg tolerance
    assert s.direction == "rising"


def test_stddev_and_cv_match_statistics_pstdev() -> None:
    values = [72.0, 80.0, 65.0, 91.0, 77.0, 70.0]
    pts = [_p(UNTIL - 3600 * (i + 1), v) for i, v in enumerate(values)]
    s = summarize("heart_rate", pts, until=UNTIL, window_s=WINDOWS["24h"])
    assert s.mean == pytest.approx(statistics.fmean(values))
    assert s.stddev == pytest.approx(statistics.pstdev(values))
    assert s.cv == pytest.approx(statistics.pstdev(values) / statistics.fmean(values))
    assert (s.minimum, s.maximum) == (65.0, 91.0)


def test_points_are_weighted_by_their_reading_count() -> None:
    # an hourly device mean of 3 readings (range 58-64) and a single clinic pulse of 90
    pts = [_p(UNTIL - 7200, 60.0, count=3, low=58.0, high=64.0), _p(UNTIL - 3600, 90.0)]
    s = summarize("heart_rate", pts, until=UNTIL, window_s=WINDOWS["24h"])
    expanded = [60.0, 60.0, 60.0, 90.0]
    assert s.n == 4
    assert s.points == 2
    assert s.mean == pytest.approx(statistics.fmean(expanded))
    assert s.stddev == pytest.approx(statistics.pstdev(expanded))
    # the range reaches into the aggregated point's low/high
    assert (s.minimum, s.maximum) == (58.0, 90.0)
    # weighted least squares: the 3-reading point pulls the fit; with two distinct times the
    # line still passes through both means, so the slope is (90 - 60) per hour
    assert s.slope_per_day == pytest.approx(30.0 * 24)


def test_weighted_slope_differs_from_unweighted() -> None:
    pts = [_p(UNTIL - 3 * 3600, 10.0), _p(UNTIL - 2 * 3600, 20.0, count=10), _p(UNTIL - 3600, 12.0)]
    s = summarize("glucose", pts, until=UNTIL, window_s=DAY_S)
    ts = [-3.0, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0, -1.0]
    vs = [10.0] + [20.0] * 10 + [12.0]
    expected_per_hour = statistics.linear_regression(ts, vs).slope
    assert s.slope_per_day == pytest.approx(expected_per_hour * 24)


def test_baseline_delta_and_z() -> None:
    baseline_values = [120.0, 124.0, 128.0, 116.0]
    baseline = [_p(UNTIL - DAY_S - 3600 * (i + 1), v) for i, v in enumerate(baseline_values)]
    window = [_p(UNTIL - 3600, 140.0), _p(UNTIL - 7200, 136.0)]
    s = summarize("bp_systolic", baseline + window, until=UNTIL, window_s=DAY_S)
    assert s.baseline_n == 4
    assert s.baseline_mean == pytest.approx(122.0)
    assert s.delta_from_baseline == pytest.approx(138.0 - 122.0)
    assert s.z_from_baseline == pytest.approx(16.0 / statistics.pstdev(baseline_values))


def test_z_needs_three_baseline_readings_and_some_spread() -> None:
    two = [_p(UNTIL - 2 * DAY_S, 120.0), _p(UNTIL - 3 * DAY_S, 124.0)]
    flat = [_p(UNTIL - (d + 2) * DAY_S, 120.0) for d in range(3)]
    now = [_p(UNTIL - 3600, 130.0)]
    few = summarize("bp_systolic", two + now, until=UNTIL, window_s=DAY_S)
    assert few.delta_from_baseline == pytest.approx(8.0)
    assert few.z_from_baseline is None
    same = summarize("bp_systolic", flat + now, until=UNTIL, window_s=DAY_S)
    assert same.delta_from_baseline == pytest.approx(10.0)
    assert same.z_from_baseline is None


def test_default_baseline_is_four_windows_capped_at_a_year() -> None:
    inside = _p(UNTIL - DAY_S - 4 * DAY_S, 80.0)  # exactly 4 windows before `since`
    outside = _p(UNTIL - DAY_S - 4 * DAY_S - 1, 90.0)
    s = summarize("weight", [inside, outside, _p(UNTIL - 1, 81.0)], until=UNTIL, window_s=DAY_S)
    assert (s.baseline_n, s.baseline_mean) == (1, 80.0)
    year = WINDOWS["1y"]
    old = _p(UNTIL - year - year - 1, 70.0)  # beyond a year before `since`
    kept = _p(UNTIL - year - year, 75.0)
    y = summarize("weight", [old, kept, _p(UNTIL - 1, 81.0)], until=UNTIL, window_s=year)
    assert (y.baseline_n, y.baseline_mean) == (1, 75.0)
    explicit = summarize(
        "weight", [inside, outside, _p(UNTIL - 1, 81.0)], until=UNTIL, window_s=DAY_S, baseline_s=0
    )
    assert explicit.baseline_n == 0
    assert explicit.baseline_mean is None
    assert explicit.delta_from_baseline is None


def test_window_is_since_inclusive_until_exclusive() -> None:
    since = UNTIL - DAY_S
    pts = [_p(since - 1, 1.0), _p(since, 2.0), _p(UNTIL - 1, 3.0), _p(UNTIL, 4.0)]
    s = summarize("glucose", pts, until=UNTIL, window_s=DAY_S)
    assert (s.since, s.until, s.window_s) == (since, UNTIL, DAY_S)
    assert s.points == 2
    assert [s.first, s.last] == [pts[1], pts[2]]
    # the point one second before `since` is the baseline, the one at `until` is ignored
    assert s.baseline_mean == 1.0


def test_empty_window() -> None:
    s = summarize("spo2", [_p(UNTIL - 2 * DAY_S, 97.0)], until=UNTIL, window_s=DAY_S)
    assert (s.n, s.points, s.first, s.last) == (0, 0, None, None)
    assert [s.mean, s.stddev, s.cv, s.minimum, s.maximum] == [None] * 5
    assert (s.slope_per_day, s.direction) == (None, None)
    assert s.baseline_mean == 97.0
    assert s.delta_from_baseline is None


def test_one_point_or_one_instant_has_no_slope_or_cv() -> None:
    one = summarize("spo2", [_p(UNTIL - 60, 97.0)], until=UNTIL, window_s=DAY_S)
    assert one.stddev == 0.0
    assert one.cv is None
    assert one.slope_per_day is None
    assert one.direction is None
    same_t = summarize(
        "spo2", [_p(UNTIL - 60, 97.0), _p(UNTIL - 60, 95.0)], until=UNTIL, window_s=DAY_S
    )
    assert same_t.slope_per_day is None
    assert same_t.cv == pytest.approx(1.0 / 96.0)


def test_cv_is_none_for_a_zero_mean() -> None:
    s = summarize(
        "weight", [_p(UNTIL - 7200, -1.0), _p(UNTIL - 3600, 1.0)], until=UNTIL, window_s=DAY_S
    )
    assert s.mean == 0.0
    assert s.cv is None


@pytest.mark.parametrize(
    ("kg_per_day", "expected"),
    [(0.0, "stable"), (0.016, "stable"), (-0.016, "stable"), (0.017, "rising"), (-0.02, "falling")],
)
def test_direction_uses_the_metric_tolerance(kg_per_day: float, expected: str) -> None:
    # weight tolerance 0.5 kg over a 30-day window: 0.016 kg/day is 0.48 kg, 0.017 is 0.51 kg
    pts = [_p(UNTIL - (30 - d) * DAY_S, 80 + kg_per_day * d) for d in range(30)]
    s = summarize("weight", pts, until=UNTIL, window_s=WINDOWS["30d"])
    assert s.direction == expected


def test_direction_with_an_explicit_tolerance_and_the_relative_default() -> None:
    pts = [_p(UNTIL - (30 - d) * DAY_S, 100 + 0.05 * d) for d in range(30)]  # +1.5 over 30 d
    assert summarize("weight", pts, until=UNTIL, window_s=WINDOWS["30d"]).direction == "rising"
    loose = summarize("weight", pts, until=UNTIL, window_s=WINDOWS["30d"], tolerance=2.0)
    assert loose.direction == "stable"
    # no per-metric tolerance for creatinine: 2 % of a ~100 mean is ~2, 1.5 is stable
    assert summarize("creatinine", pts, until=UNTIL, window_s=WINDOWS["30d"]).direction == "stable"
    steep = [_p(p.t, 100 + 0.1 * i) for i, p in enumerate(pts)]  # +3 over 30 d
    assert (
        summarize("creatinine", steep, until=UNTIL, window_s=WINDOWS["30d"]).direction == "rising"
    )


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="window_s"):
        summarize("weight", [], until=UNTIL, window_s=0)
    with pytest.raises(ValueError, match="baseline_s"):
        summarize("weight", [], until=UNTIL, window_s=DAY_S, baseline_s=-1)


def test_fsum_keeps_precision_on_large_epochs() -> None:
    # points a second apart at a large epoch: centring the times keeps the slope exact
    pts = [_p(UNTIL - 10 + i, 5.0 + i / DAY_S) for i in range(10)]
    s = summarize("glucose", pts, until=UNTIL, window_s=DAY_S)
    assert s.slope_per_day is not None
    assert math.isclose(s.slope_per_day, 1.0, rel_tol=1e-6)
