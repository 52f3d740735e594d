"""Validated clinical scores (issue 5 §2) as pure functions of typed inputs.

Each returns a :class:`~shadow.model.ScoreResult` naming the published version it implements
and its reference; a score lacking an input has ``value=None`` and lists what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shadow.model import Input, Quantity, ScoreResult, Sex, now_utc
from shadow.units import convert

Consciousness = Literal["A", "C", "V", "P", "U"]

# --------------------------------------------------------------------------------------------
# NEWS2

NEWS2_VERSION = "NEWS2 RCP 2017"
NEWS2_REFERENCE = (
    "Royal College of Physicians. National Early Warning Score (NEWS) 2: Standardising the "
    "assessment of acute-illness severity in the NHS. Updated report of a working party. "
    "London: RCP, 2017."
)


def _band(value: float, bands: tuple[tuple[float, int], ...], above: int) -> int:
    """Points for ``value``: the first ``(upper_inclusive, points)`` band it falls in."""
    for upper, points in bands:
        if value <= upper:
            return points
    return above


def news2_respiration(rate: float) -> int:
    return _band(rate, ((8, 3), (11, 1), (20, 0), (24, 2)), 3)


def news2_spo2_scale1(spo2: float) -> int:
    return _band(spo2, ((91, 3), (93, 2), (95, 1)), 0)


def news2_spo2_scale2(spo2: float, on_oxygen: bool) -> int:
    """SpO2 scale 2, for a prescribed target of 88-92 % (hypercapnic respiratory failure):
    93 % and above scores only on oxygen."""
    if spo2 <= 92:
        return _band(spo2, ((83, 3), (85, 2), (87, 1)), 0)
    return _band(spo2, ((94, 1), (96, 2)), 3) if on_oxygen else 0


def news2_systolic(sbp: float) -> int:
    return _band(sbp, ((90, 3), (100, 2), (110, 1), (219, 0)), 3)


def news2_pulse(pulse: float) -> int:
    return _band(pulse, ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2)), 3)


def news2_consciousness(acvpu: Consciousness) -> int:
    return 0 if acvpu == "A" else 3


def news2_temperature(celsius: float) -> int:
    return _band(celsius, ((35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1)), 2)


def news2(
    *,
    respiration_rate: Quantity | None,
    spo2: Quantity | None,
    on_oxygen: bool | None,
    systolic: Quantity | None,
    pulse: Quantity | None,
    consciousness: Consciousness | None,
    temperature: Quantity | None,
    spo2_scale: Literal[1, 2] = 1,
    at: datetime | None = None,
) -> ScoreResult:
    """NEWS2 aggregate and clinical risk (RCP 2017): low 0-4, low-medium when any single
    parameter scores 3, medium 5-6, high 7 or more. ``spo2_scale=2`` only for patients with a
    prescribed 88-92 % target, as the RCP chart requires."""
    inputs: dict[str, object] = {
        "respiration_rate": respiration_rate,
        "spo2": spo2,
        "on_oxygen": on_oxygen,
        "systolic": systolic,
        "pulse": pulse,
        "consciousness": consciousness,
        "temperature": temperature,
    }
    missing = [name for name, value in inputs.items() if value is None]
    used: dict[str, Input] = {}
    parts: dict[str, int] = {}
    if respiration_rate is not None:
        q = convert(respiration_rate, "/min")
        used["respiration_rate"], parts["respiration_rate"] = q, news2_respiration(q.value)
    if on_oxygen is not None:
        used["on_oxygen"], parts["on_oxygen"] = on_oxygen, 2 if on_oxygen else 0
    if spo2 is not None and (on_oxygen is not None or spo2_scale == 1):
        q = convert(spo2, "%")
        used["spo2"] = q
        used["spo2_scale"] = str(spo2_scale)
        parts["spo2"] = (
            news2_spo2_scale1(q.value)
            if spo2_scale == 1
            else news2_spo2_scale2(q.value, bool(on_oxygen))
        )
    if systolic is not None:
        q = convert(systolic, "mm[Hg]")
        used["systolic"], parts["systolic"] = q, news2_systolic(q.value)
    if pulse is not None:
        q = convert(pulse, "/min")
        used["pulse"], parts["pulse"] = q, news2_pulse(q.value)
    if consciousness is not None:
        used["consciousness"] = consciousness
        parts["consciousness"] = news2_consciousness(consciousness)
    if temperature is not None:
        q = convert(temperature, "Cel")
        used["temperature"], parts["temperature"] = q, news2_temperature(q.value)
    notes = [f"{name}: {points}" for name, points in parts.items()]
    value: float | None = None
    category: str | None = None
    if not missing:
        total = sum(parts.values())
        value = float(total)
        category = news2_risk(total, red=any(p == 3 for p in parts.values()))
    return ScoreResult(
        name="NEWS2",
        version=NEWS2_VERSION,
        value=value,
        category=category,
        inputs_used=used,
        inputs_missing=missing,
        computed_at=at or now_utc(),
        reference=NEWS2_REFERENCE,
        notes=notes,
    )


def news2_risk(total: int, *, red: bool) -> str:
    """The RCP 2017 clinical-risk band of an aggregate (``red``: a single parameter scored 3)."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    return "low-medium" if red else "low"


# --------------------------------------------------------------------------------------------
# Pooled cohort equations (10-year hard ASCVD risk)

PCE_VERSION = "ACC/AHA Pooled Cohort Equations 2013"
PCE_REFERENCE = (
    "Goff DC Jr et al. 2013 ACC/AHA guideline on the assessment of cardiovascular risk. "
    "Circulation 2014;129(25 Suppl 2):S49-73, Table A and the Full Work Group Report supplement."
)


@dataclass(frozen=True, slots=True)
class _PceCoefficients:
    ln_age: float
    ln_age_sq: float
    ln_tc: float
    ln_age_ln_tc: float
    ln_hdl: float
    ln_age_ln_hdl: float
    ln_treated_sbp: float
    ln_age_ln_treated_sbp: float
    ln_untreated_sbp: float
    ln_age_ln_untreated_sbp: float
    smoker: float
    ln_age_smoker: float
    diabetes: float
    baseline_survival: float
    mean_sum: float


# Goff et al. 2013, Table A (equation parameters of the pooled cohort equations).
_PCE: dict[tuple[Sex, str], _PceCoefficients] = {
    ("female", "white"): _PceCoefficients(
        -29.799,
        4.884,
        13.540,
        -3.114,
        -13.578,
        3.149,
        2.019,
        0.0,
        1.957,
        0.0,
        7.574,
        -1.665,
        0.661,
        0.9665,
        -29.18,
    ),
    ("female", "african_american"): _PceCoefficients(
        17.114,
        0.0,
        0.940,
        0.0,
        -18.920,
        4.475,
        29.291,
        -6.432,
        27.820,
        -6.087,
        0.691,
        0.0,
        0.874,
        0.9533,
        86.61,
    ),
    ("male", "white"): _PceCoefficients(
        12.344,
        0.0,
        11.853,
        -2.664,
        -7.990,
        1.769,
        1.797,
        0.0,
        1.764,
        0.0,
        7.837,
        -1.795,
        0.658,
        0.9144,
        61.18,
    ),
    ("male", "african_american"): _PceCoefficients(
        2.469,
        0.0,
        0.302,
        0.0,
        -0.307,
        0.0,
        1.916,
        0.0,
        1.809,
        0.0,
        0.549,
        0.0,
        0.645,
        0.8954,
        19.54,
    ),
}

PceRace = Literal["white", "african_american", "other"]


def pce_category(risk_percent: float) -> str:
    """Risk category of the 2018/2019 ACC/AHA guidelines: low <5 %, borderline 5-<7.5 %,
    intermediate 7.5-<20 %, high >=20 %."""
    if risk_percent < 5:
        return "low"
    if risk_percent < 7.5:
        return "borderline"
    if risk_percent < 20:
        return "intermediate"
    return "high"


def pooled_cohort_equations(
    *,
    age_years: float | None,
    sex: Sex | None,
    race: PceRace | None,
    total_cholesterol: Quantity | None,
    hdl_cholesterol: Quantity | None,
    systolic: Quantity | None,
    treated_hypertension: bool | None,
    smoker: bool | None,
    diabetes: bool | None,
    at: datetime | None = None,
) -> ScoreResult:
    """10-year risk (%) of a first hard ASCVD event by the sex- and race-specific pooled cohort
    equations: 1 - S10 ^ exp(sum - mean). ``race="other"`` uses the white equations, as the
    guideline recommends; the result notes it. Validated for ages 40-79: outside that range
    the value is withheld with a note."""
    inputs: dict[str, object] = {
        "age": age_years,
        "sex": sex,
        "race": race,
        "total_cholesterol": total_cholesterol,
        "hdl_cholesterol": hdl_cholesterol,
        "systolic": systolic,
        "treated_hypertension": treated_hypertension,
        "smoker": smoker,
        "diabetes": diabetes,
    }
    missing = [name for name, value in inputs.items() if value is None]
    used: dict[str, Input] = {}
    notes: list[str] = []
    if age_years is not None:
        used["age"] = Quantity(age_years, "a")
    for name, flag in (("sex", sex), ("race", race)):
        if flag is not None:
            used[name] = flag
    tc = hdl = sbp = None
    if total_cholesterol is not None:
        used["total_cholesterol"] = tc = convert(total_cholesterol, "mg/dL", analyte="cholesterol")
    if hdl_cholesterol is not None:
        used["hdl_cholesterol"] = hdl = convert(hdl_cholesterol, "mg/dL", analyte="cholesterol")
    if systolic is not None:
        used["systolic"] = sbp = convert(systolic, "mm[Hg]")
    for name, b in (
        ("treated_hypertension", treated_hypertension),
        ("smoker", smoker),
        ("diabetes", diabetes),
    ):
        if b is not None:
            used[name] = b
    value: float | None = None
    if (
        missing
        or age_years is None
        or sex is None
        or race is None
        or tc is None
        or hdl is None
        or sbp is None
    ):
        pass  # value withheld; inputs_missing says why
    elif not 40 <= age_years <= 79:
        notes.append(f"age {age_years:g} is outside the equations' validated range 40-79")
    else:
        if race == "other":
            notes.append("white equations used for race 'other' (guideline advice)")
        value = 100 * _pce_risk(
            _PCE[(sex, "african_american" if race == "african_american" else "white")],
            age_years,
            tc.value,
            hdl.value,
            sbp.value,
            bool(treated_hypertension),
            bool(smoker),
            bool(diabetes),
        )
    return ScoreResult(
        name="ASCVD10",
        version=PCE_VERSION,
        value=value,
        category=None if value is None else pce_category(value),
        inputs_used=used,
        inputs_missing=missing,
        computed_at=at or now_utc(),
        reference=PCE_REFERENCE,
        notes=notes,
        unit="%",
    )


def _pce_risk(
    c: _PceCoefficients,
    age: float,
    tc: float,
    hdl: float,
    sbp: float,
    treated: bool,
    smoker: bool,
    diabetes: bool,
) -> float:
    ln_age, ln_tc, ln_hdl, ln_sbp = math.log(age), math.log(tc), math.log(hdl), math.log(sbp)
    if treated:
        sbp_term = c.ln_treated_sbp * ln_sbp + c.ln_age_ln_treated_sbp * ln_age * ln_sbp
    else:
        sbp_term = c.ln_untreated_sbp * ln_sbp + c.ln_age_ln_untreated_sbp * ln_age * ln_sbp
    total = (
        c.ln_age * ln_age
        + c.ln_age_sq * ln_age**2
        + c.ln_tc * ln_tc
        + c.ln_age_ln_tc * ln_age * ln_tc
        + c.ln_hdl * ln_hdl
        + c.ln_age_ln_hdl * ln_age * ln_hdl
        + sbp_term
        + (c.smoker + c.ln_age_smoker * ln_age) * smoker
        + c.diabetes * diabetes
    )
    return 1 - float(c.baseline_survival ** math.exp(total - c.mean_sum))


# --------------------------------------------------------------------------------------------
# FINDRISC

FINDRISC_VERSION = "FINDRISC 2003"
FINDRISC_REFERENCE = (
    "Lindström J, Tuomilehto J. The Diabetes Risk Score: a practical tool to predict type 2 "
    "diabetes risk. Diabetes Care 2003;26(3):725-31."
)
FamilyHistory = Literal["none", "second_degree", "first_degree"]

#: Bands of the FINDRISC form: total points -> (category, estimated 10-year risk).
FINDRISC_BANDS = (
    (6, "low", "1 in 100"),
    (11, "slightly elevated", "1 in 25"),
    (14, "moderate", "1 in 6"),
    (20, "high", "1 in 3"),
    (26, "very high", "1 in 2"),
)


def findrisc(
    *,
    age_years: float | None,
    sex: Sex | None,
    bmi: Quantity | None,
    waist: Quantity | None,
    physically_active: bool | None,
    daily_fruit_vegetables: bool | None,
    antihypertensive_medication: bool | None,
    history_high_glucose: bool | None,
    family_history: FamilyHistory | None,
    at: datetime | None = None,
) -> ScoreResult:
    """FINDRISC points (0-26) and the form's five risk bands. ``physically_active``: at least
    30 minutes a day; ``family_history``: diabetes in a first-degree (parent, sibling, child)
    or second-degree (grandparent, aunt, uncle, first cousin) relative."""
    inputs: dict[str, object] = {
        "age": age_years,
        "sex": sex,
        "bmi": bmi,
        "waist": waist,
        "physically_active": physically_active,
        "daily_fruit_vegetables": daily_fruit_vegetables,
        "antihypertensive_medication": antihypertensive_medication,
        "history_high_glucose": history_high_glucose,
        "family_history": family_history,
    }
    missing = [name for name, value in inputs.items() if value is None]
    used: dict[str, Input] = {}
    parts: dict[str, int] = {}
    if age_years is not None:
        used["age"] = Quantity(age_years, "a")
        parts["age"] = 0 if age_years < 45 else 2 if age_years < 55 else 3 if age_years < 65 else 4
    if bmi is not None:
        q = convert(bmi, "kg/m2")
        used["bmi"] = q
        parts["bmi"] = 0 if q.value < 25 else 1 if q.value <= 30 else 3
    if sex is not None:
        used["sex"] = sex
    if waist is not None and sex is not None:
        q = convert(waist, "cm")
        used["waist"] = q
        low, high = (94, 102) if sex == "male" else (80, 88)
        parts["waist"] = 0 if q.value < low else 3 if q.value <= high else 4
    for name, flag, points in (
        ("physically_active", physically_active, 2),
        ("daily_fruit_vegetables", daily_fruit_vegetables, 1),
    ):
        if flag is not None:
            used[name], parts[name] = flag, 0 if flag else points
    for name, flag, points in (
        ("antihypertensive_medication", antihypertensive_medication, 2),
        ("history_high_glucose", history_high_glucose, 5),
    ):
        if flag is not None:
            used[name], parts[name] = flag, points if flag else 0
    if family_history is not None:
        used["family_history"] = family_history
        parts["family_history"] = {"none": 0, "second_degree": 3, "first_degree": 5}[family_history]
    value: float | None = None
    category: str | None = None
    notes = [f"{name}: {points}" for name, points in parts.items()]
    if not missing:
        total = sum(parts.values())
        value = float(total)
        category, risk = next((c, r) for upper, c, r in FINDRISC_BANDS if total <= upper)
        notes.append(f"estimated 10-year risk of type 2 diabetes: {risk}")
    return ScoreResult(
        name="FINDRISC",
        version=FINDRISC_VERSION,
        value=value,
        category=category,
        inputs_used=used,
        inputs_missing=missing,
        computed_at=at or now_utc(),
        reference=FINDRISC_REFERENCE,
        notes=notes,
    )
