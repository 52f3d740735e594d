"""Derived values (issue 5 §1): computed from other readings when a direct one is missing,
each marked ``derived=True`` with the inputs it was computed from."""

from __future__ import annotations

from datetime import datetime

from shadow.model import Input, Quantity, ScoreResult, Sex, now_utc
from shadow.units import convert


def _result(
    name: str,
    version: str,
    value: float | None,
    unit: str,
    used: dict[str, Input],
    missing: list[str],
    reference: str,
    at: datetime | None,
    notes: list[str] | None = None,
) -> ScoreResult:
    return ScoreResult(
        name=name,
        version=version,
        value=None if missing else value,
        category=None,
        inputs_used=used,
        inputs_missing=missing,
        computed_at=at or now_utc(),
        reference=reference,
        notes=notes or [],
        derived=True,
        unit=unit,
    )


def _missing(**inputs: object) -> list[str]:
    return [name for name, value in inputs.items() if value is None]


def bmi(
    weight: Quantity | None, height: Quantity | None, *, at: datetime | None = None
) -> ScoreResult:
    """Body-mass index, weight / height², in kg/m2."""
    missing = _missing(weight=weight, height=height)
    used: dict[str, Input] = {}
    value = None
    if weight is not None and height is not None:
        kg, m = convert(weight, "kg"), convert(height, "m")
        used = {"weight": kg, "height": m}
        value = kg.value / m.value**2
    return _result(
        "BMI",
        "WHO BMI",
        value,
        "kg/m2",
        used,
        missing,
        "WHO. Obesity: preventing and managing the global epidemic. TRS 894, 2000.",
        at,
    )


def mean_arterial_pressure(
    systolic: Quantity | None, diastolic: Quantity | None, *, at: datetime | None = None
) -> ScoreResult:
    """Mean arterial pressure estimated as DBP + (SBP - DBP) / 3, in mm[Hg]."""
    missing = _missing(systolic=systolic, diastolic=diastolic)
    used: dict[str, Input] = {}
    value = None
    if systolic is not None and diastolic is not None:
        sbp, dbp = convert(systolic, "mm[Hg]"), convert(diastolic, "mm[Hg]")
        used = {"systolic": sbp, "diastolic": dbp}
        value = dbp.value + (sbp.value - dbp.value) / 3
    return _result(
        "MAP",
        "MAP DBP+PP/3",
        value,
        "mm[Hg]",
        used,
        missing,
        "Standard one-third pulse-pressure estimate of mean arterial pressure.",
        at,
    )


# CKD-EPI 2021 (race-free): kappa, alpha and the female factor per sex.
_CKD_EPI_2021 = {"female": (0.7, -0.241, 1.012), "male": (0.9, -0.302, 1.0)}


def egfr_ckd_epi_2021(
    creatinine: Quantity | None,
    age_years: float | None,
    sex: Sex | None,
    *,
    at: datetime | None = None,
) -> ScoreResult:
    """eGFR by the CKD-EPI 2021 creatinine equation without race, in mL/min/1.73 m²:
    142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age x 1.012 [female]."""
    missing = _missing(creatinine=creatinine, age=age_years, sex=sex)
    used: dict[str, Input] = {}
    notes: list[str] = []
    value = None
    if creatinine is not None and age_years is not None and sex is not None:
        scr = convert(creatinine, "mg/dL", analyte="creatinine")
        used = {"creatinine": scr, "age": Quantity(age_years, "a"), "sex": sex}
        if age_years < 18:
            notes.append("CKD-EPI 2021 is validated for adults (18 years and older)")
            missing = []
        else:
            kappa, alpha, female = _CKD_EPI_2021[sex]
            ratio = scr.value / kappa
            value = (
                142
                * min(ratio, 1.0) ** alpha
                * max(ratio, 1.0) ** -1.200
                * 0.9938**age_years
                * female
            )
    return _result(
        "eGFR",
        "CKD-EPI 2021 creatinine (race-free)",
        value,
        "mL/min/{1.73_m2}",
        used,
        missing,
        "Inker LA et al. New creatinine- and cystatin C-based equations to estimate GFR "
        "without race. N Engl J Med 2021;385:1737-49.",
        at,
        notes,
    )
