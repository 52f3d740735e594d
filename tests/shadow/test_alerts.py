"""Alert rules as data: every shipped rule fires on a crafted snapshot and stays silent just
inside its published bound.

Sources of the bounds: NEWS2 — Royal College of Physicians, NEWS2 report 2017, chart 1 (scoring)
and chart 2 (thresholds and triggers); hypoglycaemia — ADA Standards of Care in Diabetes 2025,
section 6; severe hypertension — 2017 ACC/AHA high blood pressure guideline section 11.2 and
2018 ESC/ESH grade 3; heart-failure weight gain — 2021 ESC heart failure guideline, self-care
advice (more than 2 kg in 3 days).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from shadow.alerts import (
    AlertRule,
    AlertRuleError,
    News2Rule,
    SilentRule,
    ThresholdRule,
    TrendRule,
    default_rules,
    evaluate,
    load_rules,
    lookback_s,
    rule_metrics,
)
from shadow.model import AlertCandidate, PersonSnapshot, Point, SeriesActivity

T0 = 1_800_000_000  # the newest reading's epoch second in most snapshots
MIN = 60
HOUR = 3600
DAY = 86_400
HF = "http://snomed.info/sct|84114007"


def _p(t: int, value: float, count: int = 1) -> Point:
    return Point(t=t, value=value, source="iot:test", record="series:test", count=count)


def _snap(
    metrics: dict[str, list[Point]] | None = None,
    series: list[SeriesActivity] | None = None,
    conditions: frozenset[str] = frozenset(),
) -> PersonSnapshot:
    return PersonSnapshot("person:1", metrics or {}, series or [], conditions)


def _rule(rule_id: str) -> AlertRule:
    return next(r for r in default_rules() if r.id == rule_id)


def _fire(
    rule_id: str,
    snapshot: PersonSnapshot,
    *,
    now: int = T0,
    expanded: Mapping[str, frozenset[str]] | None = None,
) -> list[AlertCandidate]:
    return evaluate([_rule(rule_id)], snapshot, now=now, expanded=expanded)


def _series(metric: str, values: Sequence[float], *, every_s: int, end: int = T0) -> list[Point]:
    """Readings ``every_s`` apart, the last at ``end``."""
    n = len(values)
    return [_p(end - (n - 1 - i) * every_s, v) for i, v in enumerate(values)]


def test_shipped_rules_load_with_references() -> None:
    rules = default_rules()
    assert [r.id for r in rules] == [
        "news2",
        "hypoglycaemia-level-2",
        "hypoglycaemia-level-1",
        "severe-hypertension",
        "tachycardia",
        "spo2-falling",
        "heart-failure-weight-gain",
        "device-silent-continuous",
        "device-silent-spot",
    ]
    assert all(r.reference.strip() for r in rules)
    hf = _rule("heart-failure-weight-gain")
    assert set(hf.population) == {
        HF,
        "http://snomed.info/sct|88805009",
        "http://hl7.org/fhir/sid/icd-10|I50",
    }


# ---------------------------------------------------------------------------------------------
# NEWS2 (RCP 2017 chart 2: >= 7 emergency, 5-6 urgent, single parameter 3 urgent ward-based)


def test_news2_partial_sum_with_missing_parameters_is_critical() -> None:
    # RR 25 -> 3, SpO2 91 -> 3, pulse 135 -> 3 (RCP 2017 chart 1): 9 without BP or temperature
    snap = _snap(
        {
            "respiration_rate": [_p(T0 - 5 * MIN, 25)],
            "spo2": [_p(T0 - 2 * MIN, 91)],
            "heart_rate": [_p(T0, 135)],
        }
    )
    [alert] = _fire("news2", snap)
    assert alert.severity == "critical"
    assert alert.at == T0
    assert alert.key == ""
    assert alert.evidence["score"] == 9.0
    assert alert.evidence["respiration_rate"] == 3.0
    assert alert.evidence["spo2"] == 3.0
    assert alert.evidence["heart_rate"] == 3.0
    assert alert.evidence["missing"] == (
        "bp_systolic,body_temperature,consciousness,supplemental_oxygen"
    )
    assert "25 /min: 3" in alert.message
    assert "missing: bp_systolic, body_temperature" in alert.message
    assert "Royal College of Physicians" in alert.reference


@pytest.mark.parametrize(
    ("vitals", "score", "severity"),
    [
        # RR 21 (2) + pulse 111 (2) = 4, no single 3: no trigger
        ({"respiration_rate": 21, "heart_rate": 111}, 4, None),
        # + temperature 38.1 (1) = 5: urgent response
        ({"respiration_rate": 21, "heart_rate": 111, "body_temperature": 38.1}, 5, "high"),
        # + temperature 39.1 (2) = 6: still urgent
        ({"respiration_rate": 21, "heart_rate": 111, "body_temperature": 39.1}, 6, "high"),
        # + systolic 110 (1) = 7: emergency response
        (
            {
                "respiration_rate": 21,
                "heart_rate": 111,
                "body_temperature": 39.1,
                "bp_systolic": 110,
            },
            7,
            "critical",
        ),
        # systolic 90 scores 3 alone: urgent ward-based response
        ({"bp_systolic": 90}, 3, "medium"),
        # systolic 91 scores 2: no trigger
        ({"bp_systolic": 91}, 2, None),
        # a single 3 inside an aggregate of 5 takes the aggregate's higher severity
        ({"bp_systolic": 90, "heart_rate": 111}, 5, "high"),
    ],
)
def test_news2_triggers_at_the_rcp_thresholds(
    vitals: dict[str, float], score: int, severity: str | None
) -> None:
    snap = _snap({m: [_p(T0, v)] for m, v in vitals.items()})
    alerts = _fire("news2", snap)
    if severity is None:
        assert alerts == []
    else:
        [alert] = alerts
        assert (alert.severity, alert.evidence["score"]) == (severity, float(score))


def test_news2_uses_only_parameters_of_the_latest_vital_set() -> None:
    rule = _rule("news2")
    assert isinstance(rule, News2Rule)
    assert rule.max_age_minutes == 60
    base = {"respiration_rate": [_p(T0, 25)], "spo2": [_p(T0, 91)]}  # 6: high
    # a pulse of 135 (3) exactly 60 minutes before the newest vital point still counts -> 9
    at_edge = _snap({**base, "heart_rate": [_p(T0 - 60 * MIN, 135)]})
    [alert] = _fire("news2", at_edge)
    assert (alert.severity, alert.evidence["score"]) == ("critical", 9.0)
    # one second older, it is not part of this vital set and is reported missing
    stale = _snap({**base, "heart_rate": [_p(T0 - 60 * MIN - 1, 135)]})
    [alert] = _fire("news2", stale)
    assert (alert.severity, alert.evidence["score"]) == ("high", 6.0)
    assert str(alert.evidence["missing"]).startswith("bp_systolic,heart_rate")
    # the newest point of a parameter wins over an older abnormal one
    recovered = _snap({"heart_rate": [_p(T0 - 10 * MIN, 135), _p(T0, 80)]})
    assert _fire("news2", recovered) == []


def test_news2_without_vitals_raises_nothing() -> None:
    assert _fire("news2", _snap({"glucose": [_p(T0, 40)]})) == []


# ---------------------------------------------------------------------------------------------
# Threshold rules


@pytest.mark.parametrize(
    ("rule_id", "metric", "fires", "quiet"),
    [
        # ADA Standards of Care 2025 section 6: level 2 hypoglycaemia < 54 mg/dL
        ("hypoglycaemia-level-2", "glucose", 53.9, 54.0),
        # ADA Standards of Care 2025 section 6: level 1 hypoglycaemia < 70 mg/dL
        ("hypoglycaemia-level-1", "glucose", 69.9, 70.0),
        # ACC/AHA 2017 s. 11.2 (> 180) / ESC/ESH 2018 grade 3 (>= 180): 180 fires
        ("severe-hypertension", "bp_systolic", 180.0, 179.0),
        # RCP NEWS2 2017 chart 1: a pulse of 131 or more is the top band
        ("tachycardia", "heart_rate", 131.0, 130.0),
    ],
)
def test_threshold_rules_fire_at_the_published_bound(
    rule_id: str, metric: str, fires: float, quiet: float
) -> None:
    rule = _rule(rule_id)
    assert isinstance(rule, ThresholdRule)
    needed = rule.sustained.readings
    every = rule.sustained.within_minutes * MIN // needed
    [alert] = _fire(rule_id, _snap({metric: _series(metric, [fires] * needed, every_s=every)}))
    assert alert.severity == rule.severity
    assert alert.at == T0
    assert alert.evidence["readings"] == float(needed)
    assert alert.evidence["worst"] == fires
    assert _fire(rule_id, _snap({metric: _series(metric, [quiet] * needed, every_s=every)})) == []


def test_threshold_severities_and_sustained_settings() -> None:
    expected = {
        "hypoglycaemia-level-2": ("high", 2, 20),
        "hypoglycaemia-level-1": ("medium", 2, 20),
        "severe-hypertension": ("high", 2, 30),
        "tachycardia": ("medium", 3, 10),
    }
    for rule_id, (severity, readings, minutes) in expected.items():
        rule = _rule(rule_id)
        assert isinstance(rule, ThresholdRule)
        assert (rule.severity, rule.sustained.readings, rule.sustained.within_minutes) == (
            severity,
            readings,
            minutes,
        )


def test_a_single_artefact_does_not_fire_a_sustained_rule() -> None:
    # one CGM compression low among normal readings
    glucose = _series("glucose", [110, 38, 112, 115], every_s=5 * MIN)
    assert _fire("hypoglycaemia-level-2", _snap({"glucose": glucose})) == []
    # two tachycardic readings of the three required
    pulse = _series("heart_rate", [140, 80, 142], every_s=3 * MIN)
    assert _fire("tachycardia", _snap({"heart_rate": pulse})) == []


def test_sustained_readings_must_fall_within_the_window_before_the_newest_point() -> None:
    # two lows 21 minutes apart: the first is outside the 20-minute window of the newest
    apart = _snap({"glucose": [_p(T0 - 21 * MIN, 45), _p(T0, 45)]})
    assert _fire("hypoglycaemia-level-2", apart) == []
    # 20 minutes apart exactly: both count, and the worst value is reported
    within = _snap({"glucose": [_p(T0 - 20 * MIN, 45), _p(T0 - 10 * MIN, 50), _p(T0, 120)]})
    [alert] = _fire("hypoglycaemia-level-2", within)
    assert alert.at == T0 - 10 * MIN  # the newest point that fired it
    assert alert.evidence["worst"] == 45.0
    assert alert.evidence["latest"] == 50.0
    assert "glucose < 54 mg/dL on 2 readings" in alert.message


# ---------------------------------------------------------------------------------------------
# Trend rules


def _spo2(earlier: float, recent: float) -> list[Point]:
    """Hourly SpO2 over 24 h: ``recent`` in the last 8 h (both ends included), ``earlier`` before."""
    return [_p(T0 - h * HOUR, recent if h <= 8 else earlier) for h in range(24, -1, -1)]


def test_spo2_falling_by_three_points_in_a_day() -> None:
    rule = _rule("spo2-falling")
    assert isinstance(rule, TrendRule)
    assert rule.recent_s == 8 * HOUR
    [alert] = _fire("spo2-falling", _snap({"spo2": _spo2(97, 94)}))
    assert alert.severity == "medium"
    assert alert.at == T0
    assert alert.evidence["change"] == pytest.approx(3.0)
    assert "fell by 3 %" in alert.message
    assert _fire("spo2-falling", _snap({"spo2": _spo2(97, 94.1)})) == []
    # a rise is not a fall
    assert _fire("spo2-falling", _snap({"spo2": _spo2(94, 97)})) == []


def test_spo2_trend_needs_readings_before_the_recent_part() -> None:
    only_recent = [_p(T0 - h * HOUR, 90) for h in range(7, -1, -1)]
    assert _fire("spo2-falling", _snap({"spo2": only_recent})) == []


def test_means_are_weighted_by_reading_count() -> None:
    # earlier part: one aggregated point of 10 readings at 97 and a single 91 -> mean 96.45;
    # recent part: an hour's aggregate of 6 readings (the rule wants 6 on each side)
    spo2 = [_p(T0 - 20 * HOUR, 97, count=10), _p(T0 - 12 * HOUR, 91), _p(T0, 93.45, count=6)]
    [alert] = _fire("spo2-falling", _snap({"spo2": spo2}))
    assert alert.evidence["before"] == pytest.approx((970 + 91) / 11)
    assert alert.evidence["change"] == pytest.approx((970 + 91) / 11 - 93.45)


def _weights(first: float, last: float, *, span_s: int = 72 * HOUR) -> list[Point]:
    return [_p(T0 - span_s, first), _p(T0 - span_s // 2, (first + last) / 2), _p(T0, last)]


def test_heart_failure_weight_gain_needs_the_condition() -> None:
    # ESC 2021 heart failure guideline, self-care advice: more than 2 kg in 3 days
    gain = {"weight": _weights(80.0, 82.0)}
    assert _fire("heart-failure-weight-gain", _snap(gain)) == []
    [alert] = _fire("heart-failure-weight-gain", _snap(gain, conditions=frozenset({HF})))
    assert alert.severity == "high"
    assert alert.evidence["change"] == pytest.approx(2.0)
    assert alert.evidence["before"] == 80.0
    assert "80 kg -> 82 kg" in alert.message
    under = {"weight": _weights(80.0, 81.9)}
    assert _fire("heart-failure-weight-gain", _snap(under, conditions=frozenset({HF}))) == []


def test_heart_failure_weight_window_is_72_hours_inclusive() -> None:
    hf = frozenset({HF})
    too_slow = {"weight": [_p(T0 - 72 * HOUR - 1, 80.0), _p(T0 - 36 * HOUR, 81.0), _p(T0, 82.0)]}
    assert _fire("heart-failure-weight-gain", _snap(too_slow, conditions=hf)) == []
    single = {"weight": [_p(T0 - 80 * HOUR, 70.0), _p(T0, 82.0)]}
    assert _fire("heart-failure-weight-gain", _snap(single, conditions=hf)) == []


def test_population_matches_an_expanded_descendant_code() -> None:
    left_hf = "http://snomed.info/sct|85232009"  # left heart failure, IS_A heart failure
    snap = _snap({"weight": _weights(80.0, 83.0)}, conditions=frozenset({left_hf}))
    assert _fire("heart-failure-weight-gain", snap) == []
    expanded = {"heart-failure-weight-gain": frozenset({HF, left_hf})}
    [alert] = _fire("heart-failure-weight-gain", snap, expanded=expanded)
    assert alert.rule == "heart-failure-weight-gain"
    # an ICD-10 coded condition matches the rule's own codes
    icd = _snap(
        {"weight": _weights(80.0, 83.0)},
        conditions=frozenset({"http://hl7.org/fhir/sid/icd-10|I50"}),
    )
    assert len(_fire("heart-failure-weight-gain", icd)) == 1


# ---------------------------------------------------------------------------------------------
# Silent devices


def _activity(series: str, *, interval_s: int, last_t: int, count: int = 100) -> SeriesActivity:
    first_t = last_t - interval_s * (count - 1)
    return SeriesActivity(
        series, "heart_rate", f"device:{series}", "iot:test", first_t, last_t, count
    )


def test_one_alert_per_device_not_per_series() -> None:
    # a cuff reports systolic and diastolic together: when it falls silent, one alert names both
    systolic = _activity("cuff", interval_s=12 * HOUR, last_t=T0 - 80 * HOUR)
    diastolic = SeriesActivity(
        "cuff-dia", "bp_diastolic", "device:cuff", "iot:test", systolic.first_t, systolic.last_t,
        systolic.count,
    )  # fmt: skip
    [alert] = _fire("device-silent-spot", _snap(series=[systolic, diastolic]))
    assert alert.key == "device:cuff"
    assert alert.evidence["metrics"] == "bp_diastolic, heart_rate"


def test_stale_evidence_raises_nothing() -> None:
    # a clinic visit's vital set months ago is history, not an early warning (fresh_hours 24)
    rule = _rule("news2")
    pts = {"spo2": [Point(T0 - 90 * 86_400, 85.0, "mis:x", "o1")]}
    assert evaluate([rule], _snap(metrics=pts), now=T0) == []
    assert [a.rule for a in evaluate([rule], _snap(metrics=pts), now=T0 - 89 * 86_400)] == ["news2"]


def test_continuous_device_silent_for_two_hours() -> None:
    rule = _rule("device-silent-continuous")
    assert isinstance(rule, SilentRule)
    # a reading a minute: 6 intervals is 6 minutes, the 2 h floor applies
    quiet = _activity("hr-watch", interval_s=60, last_t=T0 - 2 * HOUR - 1)
    [alert] = _fire("device-silent-continuous", _snap(series=[quiet]))
    assert (alert.key, alert.at, alert.severity) == ("device:hr-watch", T0, "low")
    assert alert.evidence["device"] == "device:hr-watch"
    on_time = _activity("hr-watch", interval_s=60, last_t=T0 - 2 * HOUR)
    assert _fire("device-silent-continuous", _snap(series=[on_time])) == []
    # the spot rule does not watch a continuous device
    assert _fire("device-silent-spot", _snap(series=[quiet])) == []


def test_spot_device_silent_for_six_intervals_or_48_hours() -> None:
    # a cuff used twice a day: 6 x 12 h = 72 h is above the 48 h floor
    cuff = _activity("cuff", interval_s=12 * HOUR, last_t=T0 - 72 * HOUR - 1)
    [alert] = _fire("device-silent-spot", _snap(series=[cuff]))
    assert alert.key == "device:cuff"
    assert alert.evidence["typical_interval_minutes"] == pytest.approx(720.0)
    assert (
        _fire(
            "device-silent-spot",
            _snap(series=[_activity("cuff", interval_s=12 * HOUR, last_t=T0 - 72 * HOUR)]),
        )
        == []
    )
    # a meter used hourly: 6 h is below the floor, so 48 h applies
    meter = _activity("meter", interval_s=HOUR, last_t=T0 - 47 * HOUR)
    assert _fire("device-silent-spot", _snap(series=[meter])) == []
    meter = _activity("meter", interval_s=HOUR, last_t=T0 - 49 * HOUR)
    assert len(_fire("device-silent-spot", _snap(series=[meter]))) == 1
    # exactly 15 minutes is a spot device, not a continuous one
    boundary = _activity("q15", interval_s=15 * MIN, last_t=T0 - 3 * DAY)
    assert len(_fire("device-silent-spot", _snap(series=[boundary]))) == 1
    assert _fire("device-silent-continuous", _snap(series=[boundary])) == []


def test_inactive_or_single_reading_series_are_not_watched() -> None:
    rule = _rule("device-silent-continuous")
    assert isinstance(rule, SilentRule)
    assert rule.active_days == 14
    gone = _activity("old-watch", interval_s=60, last_t=T0 - 14 * DAY - 1)
    assert _fire("device-silent-continuous", _snap(series=[gone])) == []
    last_day = _activity("old-watch", interval_s=60, last_t=T0 - 14 * DAY)
    assert len(_fire("device-silent-continuous", _snap(series=[last_day]))) == 1
    once = SeriesActivity(
        "once", "weight", "device:scale", "iot:test", T0 - 5 * DAY, T0 - 5 * DAY, 1
    )
    assert _fire("device-silent-spot", _snap(series=[once])) == []


def test_output_is_ordered_by_rule_then_key() -> None:
    snap = _snap(
        {"heart_rate": _series("heart_rate", [140, 141, 142], every_s=2 * MIN, end=T0 - 3 * HOUR)},
        series=[
            _activity("b-watch", interval_s=60, last_t=T0 - 3 * HOUR),
            _activity("a-watch", interval_s=60, last_t=T0 - 3 * HOUR),
        ],
    )
    alerts = evaluate(default_rules(), snap, now=T0)
    assert [(a.rule, a.key) for a in alerts] == [
        ("news2", ""),
        ("tachycardia", ""),
        ("device-silent-continuous", "device:a-watch"),
        ("device-silent-continuous", "device:b-watch"),
    ]
    assert alerts == evaluate(default_rules(), snap, now=T0)


# ---------------------------------------------------------------------------------------------
# Loading and what a caller must fetch


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
- id: ok
  kind: threshold
  title: ok
  metric: glucose
  below: 54
  severity: high
  reference: ADA 2025
"""


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "- {id: odd, kind: magic, title: t, reference: r}",
            "does not match any of the expected tags",
        ),
        (
            "- {id: both, kind: threshold, title: t, metric: glucose, below: 54, above: 250, severity: high, reference: r}",
            "exactly one of below and above",
        ),
        (
            "- {id: neither, kind: threshold, title: t, metric: glucose, severity: high, reference: r}",
            "exactly one of below and above",
        ),
        (
            "- {id: sugar, kind: threshold, title: t, metric: blood_sugar, below: 54, severity: high, reference: r}",
            "unknown metric 'blood_sugar'",
        ),
        (
            "- {id: extra, kind: threshold, title: t, metric: glucose, below: 54, severity: high, reference: r, colour: red}",
            "Extra inputs are not permitted",
        ),
        (
            "- {id: loud, kind: threshold, title: t, metric: glucose, below: 54, severity: urgent, reference: r}",
            "severity",
        ),
        (
            "- {id: short, kind: trend, title: t, metric: spo2, direction: falling, change: 3, window_hours: 4, recent_hours: 4, severity: low, reference: r}",
            "recent_hours .* must be shorter",
        ),
        (
            "- {id: tiny, kind: trend, title: t, metric: spo2, direction: falling, change: 3, window_hours: 1, severity: low, reference: r}",
            "recent_hours .* must be shorter",
        ),
        (
            "- {id: empty, kind: news2, title: t, reference: r}",
            "needs thresholds or single_parameter_3",
        ),
        (
            "- {id: pop, kind: threshold, title: t, metric: glucose, below: 54, severity: high, reference: r, population: [I50]}",
            "is not 'system|code'",
        ),
    ],
)
def test_bad_rules_are_named(tmp_path: Path, rule: str, message: str) -> None:
    path = _write(tmp_path, GOOD + rule + "\n")
    name = rule.split("id: ")[1].split(",")[0]
    with pytest.raises(AlertRuleError, match=f"rule {name}: .*{message}") as e:
        load_rules(path)
    assert str(path) in str(e.value)
    assert "rule ok" not in str(e.value)


def test_duplicate_ids_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(AlertRuleError, match="rule ok: id used twice"):
        load_rules(_write(tmp_path, GOOD + GOOD))
    with pytest.raises(AlertRuleError, match="expected a list of rules"):
        load_rules(_write(tmp_path, "id: ok\n"))
    with pytest.raises(AlertRuleError, match="cannot read the rules"):
        load_rules(tmp_path / "missing.yaml")
    [rule] = load_rules(_write(tmp_path, GOOD))
    assert isinstance(rule, ThresholdRule)
    assert rule.sustained.readings == 1


def test_lookback_and_metrics_of_the_shipped_rules() -> None:
    rules = default_rules()
    assert lookback_s(rules) == 72 * HOUR  # the heart-failure weight window
    assert lookback_s([_rule("news2")]) == 60 * MIN
    assert lookback_s([_rule("tachycardia"), _rule("severe-hypertension")]) == 30 * MIN
    assert lookback_s([_rule("device-silent-spot")]) == 0
    assert rule_metrics(rules) == {
        "respiration_rate",
        "spo2",
        "bp_systolic",
        "heart_rate",
        "body_temperature",
        "glucose",
        "weight",
    }
    assert rule_metrics([_rule("hypoglycaemia-level-1")]) == {"glucose"}
    assert rule_metrics([_rule("device-silent-spot")]) == set()


def test_level_2_hypoglycaemia_is_not_also_announced_as_level_1() -> None:
    # ADA Standards of Care 2025, section 6: 50 mg/dL is level 2 (< 54), which also lies below
    # the level 1 bound (< 70); one event raises one alert, the more severe
    low = {"glucose": _series("glucose", [50, 48], every_s=5 * MIN)}
    fired = [a.rule for a in evaluate(default_rules(), _snap(low), now=T0)]
    assert "hypoglycaemia-level-2" in fired
    assert "hypoglycaemia-level-1" not in fired
    mild = {"glucose": _series("glucose", [64, 62], every_s=5 * MIN)}
    assert "hypoglycaemia-level-1" in [
        a.rule for a in evaluate(default_rules(), _snap(mild), now=T0)
    ]


def test_a_falling_mean_needs_dense_data() -> None:
    # two spot readings on each side of the split are not a trend of means (min_readings 6)
    rule = _rule("spo2-falling")
    sparse = {
        "spo2": [
            Point(T0 - 20 * HOUR, 97, "iot:t", "s"),
            Point(T0 - 12 * HOUR, 96, "iot:t", "s"),
            Point(T0 - 2 * HOUR, 92, "iot:t", "s"),
            Point(T0, 91, "iot:t", "s"),
        ]
    }
    assert evaluate([rule], _snap(sparse), now=T0) == []
    dense = {"spo2": _series("spo2", [97] * 16 + [92] * 8, every_s=HOUR)}
    assert [a.rule for a in evaluate([rule], _snap(dense), now=T0)] == ["spo2-falling"]
