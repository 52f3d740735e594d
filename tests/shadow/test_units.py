"""UCUM normalisation: every conversion the calculators need, both ways, and bad units."""

from __future__ import annotations

import pytest

from shadow.model import Quantity
from shadow.units import MOLAR_MASS, UnitError, convert, ucum


@pytest.mark.parametrize(
    ("value", "unit", "target", "expected", "analyte"),
    [
        # creatinine 113.12 g/mol: 1 mg/dL = 10 mg/L / 113.12 g/mol = 88.40 umol/L
        (1.0, "mg/dL", "umol/L", 88.40, "creatinine"),
        (88.40, "µmol/L", "mg/dL", 1.0, "creatinine"),
        # cholesterol 386.65 g/mol: 1 mmol/L = 38.665 mg/dL (the usual factor 38.67)
        (5.0, "mmol/L", "mg/dL", 193.33, "cholesterol"),
        (193.33, "mg/dL", "mmol/L", 5.0, "cholesterol"),
        # glucose 180.16 g/mol: 1 mmol/L = 18.016 mg/dL
        (100.0, "mg/dL", "mmol/L", 5.551, "glucose"),
        (5.551, "mmol/L", "mg/dL", 100.0, "glucose"),
        (150.0, "umol/L", "mmol/L", 0.15, None),
    ],
)
def test_concentrations_both_ways(
    value: float, unit: str, target: str, expected: float, analyte: str | None
) -> None:
    result = convert(Quantity(value, unit), target, analyte=analyte)  # type: ignore[arg-type]
    assert result.value == pytest.approx(expected, rel=1e-3)
    assert result.unit == ucum(target)


@pytest.mark.parametrize(
    ("value", "unit", "target", "expected"),
    [
        (98.6, "[degF]", "Cel", 37.0),  # (F - 32) x 5/9
        (37.0, "Cel", "[degF]", 98.6),
        (104.0, "°F", "Cel", 40.0),
        (310.15, "K", "Cel", 37.0),
        (175.0, "cm", "m", 1.75),
        (1.75, "m", "cm", 175.0),
        (154.0, "[lb_av]", "kg", 69.853),  # 1 lb = 0.45359237 kg exactly
        (70.0, "kg", "g", 70_000.0),
        (16.0, "kPa", "mm[Hg]", 120.01),  # 1 kPa = 7.500617 mm[Hg]
        (120.0, "mmHg", "kPa", 15.999),
        (0.97, "1", "%", 97.0),
        (72.0, "{beats}/min", "/min", 72.0),
        (72.0, "bpm", "{beats}/min", 72.0),
    ],
)
def test_physical_units_both_ways(value: float, unit: str, target: str, expected: float) -> None:
    assert convert(Quantity(value, unit), target).value == pytest.approx(expected, rel=1e-4)


def test_molar_masses_are_the_stated_ones() -> None:
    assert MOLAR_MASS == {"creatinine": 113.12, "cholesterol": 386.65, "glucose": 180.16}


def test_unknown_unit_is_named() -> None:
    with pytest.raises(UnitError, match=r"unknown unit 'furlong'"):
        convert(Quantity(1, "furlong"), "m")
    with pytest.raises(UnitError, match=r"unknown unit 'stone'"):
        convert(Quantity(1, "kg"), "stone")


def test_incompatible_units_are_refused() -> None:
    with pytest.raises(UnitError, match=r"cannot convert 'kg' \(mass\) to 'Cel'"):
        convert(Quantity(70, "kg"), "Cel")
    with pytest.raises(UnitError, match="molar mass"):
        convert(Quantity(1.0, "mg/dL"), "umol/L")
