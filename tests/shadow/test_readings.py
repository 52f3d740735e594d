"""Calculator inputs picked from raw readings: newest wins, units normalised, sources named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shadow.model import Quantity, Reading
from shadow.readings import LOINC, latest, news2_from_readings
from shadow.units import UnitError

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _r(code: str, value: float | str, unit: str | None, minutes: int, source: str) -> Reading:
    return Reading(code, LOINC, value, unit, T0 + timedelta(minutes=minutes), source)


VITALS = [
    _r("9279-1", 18, "/min", 0, "ward"),
    _r("9279-1", 26, "/min", 30, "ward"),  # newer: wins
    _r("2708-6", 95, "%", 0, "lab"),
    _r("59408-5", 0.93, "1", 30, "wearable"),  # a fraction from a device
    _r("8480-6", 95, "mmHg", 30, "ward"),
    _r("8867-4", 115, "{beats}/min", 30, "wearable"),
    _r("8310-5", 101.3, "[degF]", 30, "portal"),
    _r("8310-5", "see note", None, 40, "portal"),  # not numeric: not a value
]


def test_latest_takes_the_newest_reading_in_the_asked_unit() -> None:
    hit = latest(VITALS, "respiration_rate", "/min")
    assert hit is not None
    assert hit[0] == Quantity(26, "/min")
    assert hit[1].at == T0 + timedelta(minutes=30)
    spo2 = latest(VITALS, "spo2", "%")
    assert spo2 is not None
    assert spo2[0].value == pytest.approx(93)
    assert spo2[1].source == "wearable"
    early = latest(VITALS, "respiration_rate", "/min", before=T0 + timedelta(minutes=10))
    assert early is not None
    assert early[0].value == 18
    assert latest(VITALS, "weight", "kg") is None


def test_creatinine_in_si_units_for_egfr() -> None:
    hit = latest(
        [_r("2160-0", 88.4, "umol/L", 0, "lab")], "creatinine", "mg/dL", analyte="creatinine"
    )
    assert hit is not None
    assert hit[0].value == pytest.approx(1.0, abs=1e-3)


def test_bad_unit_is_an_error_not_a_skip() -> None:
    with pytest.raises(UnitError, match="'kg'"):
        latest([_r("8867-4", 70, "kg", 0, "device")], "pulse", "/min")


def test_news2_from_the_latest_vital_signs() -> None:
    # Same set as the hand-scored example in test_scores: RR 26 -> 3, SpO2 93 -> 2, oxygen -> 2,
    # SBP 95 -> 2, pulse 115 -> 2, alert -> 0, 101.3 degF = 38.5 degC -> 1; total 12, high.
    result = news2_from_readings(VITALS, consciousness="A", on_oxygen=True)
    assert (result.value, result.category) == (12.0, "high")
    assert "temperature from portal at 2026-03-01T08:30:00+00:00" in result.notes
    assert "spo2 from wearable at 2026-03-01T08:30:00+00:00" in result.notes


def test_news2_from_readings_names_what_is_missing() -> None:
    result = news2_from_readings(VITALS[:2], consciousness=None, on_oxygen=False)
    assert result.value is None
    assert result.inputs_missing == ["spo2", "systolic", "pulse", "consciousness", "temperature"]
