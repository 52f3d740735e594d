"""From raw readings to calculator inputs: the latest value of a LOINC-coded observation,
normalised to the unit a calculator needs, with the reading it came from."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from shadow.model import Quantity, Reading, ScoreResult
from shadow.scores import Consciousness, news2
from shadow.units import Analyte, convert

LOINC = "http://loinc.org"

#: LOINC codes (as Synthea and most MIS use them) per calculator input, preferred first.
CODES: dict[str, tuple[str, ...]] = {
    "respiration_rate": ("9279-1",),
    "spo2": ("59408-5", "2708-6"),
    "systolic": ("8480-6",),
    "diastolic": ("8462-4",),
    "pulse": ("8867-4",),
    "temperature": ("8310-5",),
    "weight": ("29463-7",),
    "height": ("8302-2",),
    "creatinine": ("2160-0", "38483-4"),
    "total_cholesterol": ("2093-3",),
    "hdl_cholesterol": ("2085-9",),
}


def latest(
    readings: Iterable[Reading],
    name: str,
    unit: str,
    *,
    analyte: Analyte | None = None,
    before: datetime | None = None,
) -> tuple[Quantity, Reading] | None:
    """The newest numeric LOINC reading for input ``name`` (at or before ``before``), in
    ``unit``; ``None`` when there is none. A reading in an unknown or incompatible unit raises
    :class:`~shadow.units.UnitError` rather than being skipped silently."""
    codes = set(CODES[name])
    candidates = [
        r
        for r in readings
        if r.system == LOINC
        and r.code in codes
        and (before is None or r.at <= before)
        and not isinstance(r.value, bool | str)
    ]
    if not candidates:
        return None
    newest = max(candidates, key=lambda r: r.at)
    return convert(newest.quantity(), unit, analyte=analyte), newest


def news2_from_readings(
    readings: Iterable[Reading],
    *,
    consciousness: Consciousness | None,
    on_oxygen: bool | None,
    spo2_scale: Literal[1, 2] = 1,
    at: datetime | None = None,
) -> ScoreResult:
    """NEWS2 of the latest vital-sign set; each input's source and time goes into the notes."""
    pool = list(readings)
    found = {
        name: latest(pool, name, unit, before=at)
        for name, unit in (
            ("respiration_rate", "/min"),
            ("spo2", "%"),
            ("systolic", "mm[Hg]"),
            ("pulse", "/min"),
            ("temperature", "Cel"),
        )
    }
    result = news2(
        respiration_rate=_value(found["respiration_rate"]),
        spo2=_value(found["spo2"]),
        on_oxygen=on_oxygen,
        systolic=_value(found["systolic"]),
        pulse=_value(found["pulse"]),
        consciousness=consciousness,
        temperature=_value(found["temperature"]),
        spo2_scale=spo2_scale,
        at=at,
    )
    result.notes.extend(
        f"{name} from {hit[1].source} at {hit[1].at.isoformat()}"
        for name, hit in found.items()
        if hit is not None
    )
    return result


def _value(hit: tuple[Quantity, Reading] | None) -> Quantity | None:
    return None if hit is None else hit[0]
