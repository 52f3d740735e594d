"""The shadow of one person from pooled data (shadow/engine.py): vitals with derived values,
scores with their inputs, data requests only where completing a score matters."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shadow.engine import (
    CONDITION_GROUPS,
    SMOKING_STATUS,
    CodedValue,
    DomainRef,
    PersonData,
    compute,
    needs,
    vitals,
)
from shadow.model import Point
from shadow.population import stratify, tier_of

NOW = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
DAY = 86_400
GROUPS = {name: frozenset(codes) for name, codes in CONDITION_GROUPS.items()}
DOMAINS = [
    DomainRef("mis:clinic", "Clinic", "MIS", "mis:clinic/Patient/1"),
    DomainRef("portal:myhealth", "Portal", "PORTAL", "portal:myhealth/Patient/1"),
    DomainRef("iot:acme", "Acme", "IOT_CLOUD", "iot:acme/Patient/1"),
]


def _p(t: int, value: float, source: str = "mis:clinic") -> Point:
    return Point(t, value, source, f"{source}/Observation/{t}")


def _person(**points: list[Point]) -> PersonData:
    return PersonData(
        person="person:1",
        as_of=NOW,
        birth_date=date(1971, 1, 1),  # 55 on the evaluation day
        sex="male",
        domains=list(DOMAINS),
        points=points,
    )


def test_latest_value_wins_across_domains_with_its_source() -> None:
    data = _person(weight=[_p(NOW - 30 * DAY, 82.0), _p(NOW - DAY, 80.5, "iot:acme")])
    [w] = [v for v in vitals(data) if v.metric == "weight"]
    assert (w.value, w.source, w.derived) == (80.5, "iot:acme", False)


def test_bmi_derived_from_newer_height_and_weight_with_its_inputs() -> None:
    # a clinic BMI from last year, a scale weight yesterday: the derived BMI is newer and wins
    data = _person(
        bmi=[_p(NOW - 365 * DAY, 27.0)],
        height=[_p(NOW - 365 * DAY, 180.0)],
        weight=[_p(NOW - DAY, 81.0, "iot:acme")],
    )
    [bmi] = [v for v in vitals(data) if v.metric == "bmi"]
    assert bmi.derived
    assert bmi.source == "medshadow"
    assert bmi.value == pytest.approx(81.0 / 1.8**2, abs=0.01)
    assert [name for name, _ in bmi.inputs] == ["weight", "height"]
    assert "iot:acme" in bmi.inputs[0][1]


def test_direct_bmi_kept_when_newer_than_its_inputs() -> None:
    data = _person(
        bmi=[_p(NOW - DAY, 24.0)], height=[_p(NOW - 9 * DAY, 180.0)], weight=[_p(NOW - 9 * DAY, 70)]
    )
    [bmi] = [v for v in vitals(data) if v.metric == "bmi"]
    assert (bmi.value, bmi.derived) == (24.0, False)


def test_egfr_derived_from_creatinine_age_and_sex() -> None:
    # CKD-EPI 2021 (Inker et al., NEJM 2021): male, 55 y, creatinine 1.0 mg/dL -> 88 mL/min/1.73m2
    data = _person(creatinine=[_p(NOW - 5 * DAY, 1.0)])
    [egfr] = [v for v in vitals(data) if v.metric == "egfr"]
    assert egfr.derived
    assert egfr.value == pytest.approx(88, abs=1)


def test_mean_arterial_pressure_only_from_a_pair_measured_together() -> None:
    together = _person(bp_systolic=[_p(NOW - 60, 120)], bp_diastolic=[_p(NOW - 60, 80)])
    apart = _person(bp_systolic=[_p(NOW - 60, 120)], bp_diastolic=[_p(NOW - 9 * DAY, 80)])
    assert any(v.metric == "mean_arterial_pressure" for v in vitals(together))
    assert not any(v.metric == "mean_arterial_pressure" for v in vitals(apart))


def test_pce_from_pooled_data_names_its_inputs_and_assumptions() -> None:
    data = _person(
        total_cholesterol=[_p(NOW - 90 * DAY, 213)],
        hdl_cholesterol=[_p(NOW - 90 * DAY, 50)],
        bp_systolic=[_p(NOW - 10 * DAY, 120)],
    )
    data.coded[SMOKING_STATUS] = CodedValue(
        "266919005", "Never smoked", NOW - DAY, "mis:clinic", "o"
    )
    shadow = compute(data, GROUPS)
    [pce] = [s for s in shadow.scores if s.name == "ASCVD10"]
    assert pce.complete
    assert pce.value is not None
    assert pce.inputs_used["smoker"] is False
    assert pce.inputs_used["diabetes"] is False
    assert any("race" in n for n in pce.notes)
    # race is asked for, because the white equations were assumed
    [race] = [n for n in shadow.needs if n.need == "race"]
    assert race.domains[0] == "mis:clinic"


def test_missing_inputs_become_requests_to_the_right_domains() -> None:
    data = _person(bp_systolic=[_p(NOW - 10 * DAY, 120)])
    by_need = {n.need: n for n in compute(data, GROUPS).needs}
    # lab values from the clinic; questionnaire items from the patient's portal
    assert by_need["total_cholesterol"].domains == ("mis:clinic",)
    assert by_need["physically_active"].domains == ("portal:myhealth",)
    assert any("FINDRISC" in r for r in by_need["waist"].reasons)
    assert by_need["history_high_glucose"].tried[-1].startswith("derivation")
    # NEWS2 is not completed for someone not being monitored (no vital sign in the last day)
    assert "consciousness" not in by_need


def test_domains_that_already_measure_the_person_are_asked_first() -> None:
    # the operational data store's registry: the second clinic has written observations for
    # this person, the first only demographics
    data = _person(bp_systolic=[_p(NOW - 10 * DAY, 120)])
    data.domains = [
        DomainRef("mis:a", "A", "MIS", "mis:a/Patient/1", ("Patient",)),
        DomainRef("mis:b", "B", "MIS", "mis:b/Patient/1", ("Observation", "Patient")),
    ]
    by_need = {n.need: n for n in compute(data, GROUPS).needs}
    assert by_need["total_cholesterol"].domains == ("mis:b", "mis:a")


def test_news2_inputs_asked_only_while_monitored() -> None:
    monitored = _person(spo2=[_p(NOW - 600, 95, "iot:acme")], heart_rate=[_p(NOW - 600, 80)])
    asked = {n.need for n in compute(monitored, GROUPS).needs}
    assert {"consciousness", "respiration_rate", "temperature"} <= asked


def test_no_requests_for_the_deceased_or_out_of_range_scores() -> None:
    dead = _person()
    dead.deceased = True
    assert needs(dead, compute(dead, GROUPS).scores, GROUPS) == []
    young = _person()
    young.birth_date = date(2000, 1, 1)  # 26: outside the pooled cohort equations' 40-79
    reasons = {r for n in compute(young, GROUPS).needs for r in n.reasons}
    assert not any("ASCVD10" in r for r in reasons)


def test_findrisc_not_requested_for_known_diabetes() -> None:
    data = _person()
    data.conditions = frozenset({"http://snomed.info/sct|44054006"})
    reasons = {r for n in compute(data, GROUPS).needs for r in n.reasons}
    assert not any("FINDRISC" in r for r in reasons)


def test_population_tiers_name_their_reasons() -> None:
    assert tier_of({"ASCVD10": 21.0}, {}) == ("high", ["ASCVD 10-year risk 21.0 %"])
    assert tier_of({"FINDRISC": 13.0}, {"medium": 1})[0] == "moderate"
    assert tier_of({"ASCVD10": 3.0}, {}) == ("low", [])
    assert tier_of({}, {}) == ("unknown", ["no complete score"])
    rows = stratify(
        [
            {"person": "a", "scores": [], "alerts": [], "gaps": 1, "requests": 2},
            {"person": "b", "scores": [{"name": "ASCVD10", "value": 25.0}], "alerts": ["low"],
             "gaps": 0, "requests": 0},
        ]
    )  # fmt: skip
    assert [(r.person, r.tier) for r in rows] == [("b", "high"), ("a", "unknown")]
