"""Derived values against their published formulas and reference values (issue 5 §1)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from shadow.derived import bmi, egfr_ckd_epi_2021, mean_arterial_pressure
from shadow.model import Quantity

AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_bmi_from_si_and_us_units() -> None:
    # WHO: BMI = weight (kg) / height (m)^2; 70 kg, 175 cm -> 70 / 1.75^2 = 22.857
    result = bmi(Quantity(70, "kg"), Quantity(175, "cm"), at=AT)
    assert result.derived
    assert result.unit == "kg/m2"
    assert result.value == pytest.approx(22.857, abs=1e-3)
    assert result.inputs_used == {"weight": Quantity(70, "kg"), "height": Quantity(1.75, "m")}
    # 154.3 lb and 68.9 in are 69.99 kg and 1.750 m (1 lb = 0.45359237 kg, 1 in = 2.54 cm)
    us = bmi(Quantity(154.3, "[lb_av]"), Quantity(68.9, "[in_i]"), at=AT)
    assert us.value == pytest.approx(154.3 * 0.45359237 / (68.9 * 0.0254) ** 2)


def test_bmi_missing_height_names_it_and_withholds_the_value() -> None:
    result = bmi(Quantity(70, "kg"), None, at=AT)
    assert result.value is None
    assert result.inputs_missing == ["height"]
    assert not result.complete


def test_mean_arterial_pressure() -> None:
    # 120/80 -> 80 + 40/3 = 93.33 mm[Hg]; kPa input converted (1 kPa = 7.500617 mm[Hg])
    assert mean_arterial_pressure(Quantity(120, "mmHg"), Quantity(80, "mm[Hg]")).value == (
        pytest.approx(93.333, abs=1e-3)
    )
    kpa = mean_arterial_pressure(Quantity(16, "kPa"), Quantity(10.6658, "kPa"))
    assert kpa.value == pytest.approx(80 + 40 / 3, abs=0.01)
    assert mean_arterial_pressure(None, None).inputs_missing == ["systolic", "diastolic"]


def _ckd_epi_2021_by_hand(scr: float, age: float, female: bool) -> float:
    """Inker et al., NEJM 2021;385:1737, Table 1 (creatinine equation, 2021), written out
    independently: 142 x min(Scr/k,1)^a x max(Scr/k,1)^-1.200 x 0.9938^age [x 1.012 female],
    k = 0.7 / 0.9, a = -0.241 / -0.302 (female / male)."""
    if female:
        k, a, f = 0.7, -0.241, 1.012
    else:
        k, a, f = 0.9, -0.302, 1.0
    return float(142 * min(scr / k, 1) ** a * max(scr / k, 1) ** -1.2 * 0.9938**age * f)


@pytest.mark.parametrize(
    ("scr", "age", "sex", "rounded"),
    [
        # Not copied from a calculator (none reachable offline): each whole-number eGFR below
        # was worked out by hand from the published equation, e.g. female 50 y, Scr 1.0:
        # 142 x (1/0.7)^-1.2 [0.6518] x 0.9938^50 [0.7328] x 1.012 = 68.6 -> 69;
        # male 50 y, 1.0: 142 x (1/0.9)^-1.2 [0.8812] x 0.7328 = 91.7 -> 92;
        # female 30 y, 0.6: 142 x (0.6/0.7)^-0.241 [1.0378] x 0.9938^30 [0.8298] x 1.012 = 123.8;
        # male 70 y, 2.5: 142 x (2.5/0.9)^-1.2 [0.2935] x 0.9938^70 [0.6471] = 27.0.
        (1.0, 50, "female", 69),
        (1.0, 50, "male", 92),
        (0.6, 30, "female", 124),
        (2.5, 70, "male", 27),
    ],
)
def test_egfr_ckd_epi_2021_reference_values(scr: float, age: float, sex: str, rounded: int) -> None:
    result = egfr_ckd_epi_2021(Quantity(scr, "mg/dL"), age, "female" if sex == "female" else "male")
    assert result.value is not None
    assert result.value == pytest.approx(_ckd_epi_2021_by_hand(scr, age, sex == "female"))
    assert round(result.value) == rounded
    assert result.derived
    assert result.version == "CKD-EPI 2021 creatinine (race-free)"
    assert "Inker" in result.reference


def test_egfr_from_si_creatinine() -> None:
    # 88.4 umol/L is 1.0 mg/dL (creatinine 113.12 g/mol: 1 mg/dL = 10 / 113.12 mmol/L)
    si = egfr_ckd_epi_2021(Quantity(88.42, "µmol/L"), 50, "female")
    assert si.value == pytest.approx(_ckd_epi_2021_by_hand(88.42 * 113.12 / 10_000, 50, True))
    used = si.inputs_used["creatinine"]
    assert isinstance(used, Quantity)
    assert used.unit == "mg/dL"
    assert used.value == pytest.approx(1.0, abs=1e-3)


def test_egfr_missing_and_paediatric() -> None:
    missing = egfr_ckd_epi_2021(Quantity(1.0, "mg/dL"), None, None)
    assert missing.value is None
    assert missing.inputs_missing == ["age", "sex"]
    child = egfr_ckd_epi_2021(Quantity(0.5, "mg/dL"), 12, "male")
    assert child.value is None
    assert child.inputs_missing == []
    assert any("adults" in n for n in child.notes)
    assert math.isfinite(_ckd_epi_2021_by_hand(0.5, 12, False))
