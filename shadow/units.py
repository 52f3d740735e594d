"""UCUM normalisation of the units the shadow's calculators need.

Plain tables rather than a general UCUM engine (``ucumvert``): the calculators need a small,
closed set of units, and the conversions that matter clinically (mg/dL <-> µmol/L creatinine,
mg/dL <-> mmol/L cholesterol and glucose) cross from mass to substance concentration, which
needs the analyte's molar mass — something UCUM expressions do not carry. A table states each
factor and molar mass where a reviewer can check it, and an unknown or incompatible unit fails
with a :class:`UnitError` naming both units instead of a parser message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shadow.model import Quantity

Analyte = Literal["creatinine", "cholesterol", "glucose"]

#: Molar masses in g/mol (PubChem): creatinine C4H7N3O, cholesterol C27H46O, glucose C6H12O6.
MOLAR_MASS: dict[Analyte, float] = {
    "creatinine": 113.12,
    "cholesterol": 386.65,
    "glucose": 180.16,
}


class UnitError(ValueError):
    """A unit that is unknown, or that cannot be converted to the one asked for."""


@dataclass(frozen=True, slots=True)
class _Unit:
    dimension: str
    factor: float  # to the dimension's base unit
    offset: float = 0.0  # added after the factor (temperatures only)


# Base units: kg, m, Cel, mm[Hg], %, /min, mg/dL (mass conc.), mmol/L (substance conc.).
_UNITS: dict[str, _Unit] = {
    "kg": _Unit("mass", 1.0),
    "g": _Unit("mass", 0.001),
    "[lb_av]": _Unit("mass", 0.45359237),
    "m": _Unit("length", 1.0),
    "cm": _Unit("length", 0.01),
    "mm": _Unit("length", 0.001),
    "[in_i]": _Unit("length", 0.0254),
    "Cel": _Unit("temperature", 1.0),
    "[degF]": _Unit("temperature", 5 / 9, -32 * 5 / 9),
    "K": _Unit("temperature", 1.0, -273.15),
    "mm[Hg]": _Unit("pressure", 1.0),
    "kPa": _Unit("pressure", 7.500616827),
    "%": _Unit("fraction", 1.0),
    "1": _Unit("fraction", 100.0),
    "/min": _Unit("rate", 1.0),
    "{beats}/min": _Unit("rate", 1.0),
    "{breaths}/min": _Unit("rate", 1.0),
    "mg/dL": _Unit("mass_conc", 1.0),
    "mg/L": _Unit("mass_conc", 0.1),
    "g/L": _Unit("mass_conc", 100.0),
    "mmol/L": _Unit("substance_conc", 1.0),
    "umol/L": _Unit("substance_conc", 0.001),
    "kg/m2": _Unit("bmi", 1.0),
    "mL/min/{1.73_m2}": _Unit("gfr", 1.0),
}

# Spellings seen in source systems for the UCUM codes above.
_ALIASES = {
    "µmol/L": "umol/L",
    "μmol/L": "umol/L",
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "°C": "Cel",
    "degC": "Cel",
    "°F": "[degF]",
    "degF": "[degF]",
    "mmHg": "mm[Hg]",
    "lb": "[lb_av]",
    "in": "[in_i]",
    "bpm": "{beats}/min",
    "kg/m²": "kg/m2",
    # eGFR as Synthea and some laboratories label it (the /1.73 m2 normalisation is implied)
    "mL/min": "mL/min/{1.73_m2}",
}


def ucum(unit: str) -> str:
    """The UCUM code of ``unit`` (aliases such as ``mmHg`` or ``°F`` resolved)."""
    code = _ALIASES.get(unit.strip(), unit.strip())
    if code not in _UNITS:
        raise UnitError(f"unknown unit {unit!r}; known: {', '.join(sorted(_UNITS))}")
    return code


def convert(quantity: Quantity, target: str, analyte: Analyte | None = None) -> Quantity:
    """``quantity`` expressed in ``target``.

    Mass and substance concentrations convert into each other only for a named ``analyte``
    (mmol/L = mg/dL x 10 / molar mass).
    """
    source_code, target_code = ucum(quantity.unit), ucum(target)
    source, dest = _UNITS[source_code], _UNITS[target_code]
    base = quantity.value * source.factor + source.offset
    if source.dimension != dest.dimension:
        base = _cross(base, source.dimension, dest.dimension, analyte, quantity.unit, target)
    return Quantity((base - dest.offset) / dest.factor, target_code)


def _cross(
    base: float, source: str, dest: str, analyte: Analyte | None, unit: str, target: str
) -> float:
    pair = {source, dest}
    if pair != {"mass_conc", "substance_conc"}:
        raise UnitError(f"cannot convert {unit!r} ({source}) to {target!r} ({dest})")
    if analyte is None:
        raise UnitError(f"converting {unit!r} to {target!r} needs the analyte's molar mass")
    mass = MOLAR_MASS[analyte]
    # base mass concentration is mg/dL (= 10 mg/L); base substance concentration is mmol/L
    return base * 10 / mass if source == "mass_conc" else base * mass / 10
