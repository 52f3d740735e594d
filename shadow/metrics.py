"""The metrics of the digital shadow: one key per clinical quantity, whatever domain sent it.

A clinic sends systolic pressure as a LOINC-coded Observation, a home cuff as a reading series
with the same LOINC code, the portal as a patient-entered Observation: all three become points
of metric ``bp_systolic`` in its canonical UCUM unit. The codes are the ones Synthea, the
device clouds and most MIS use (LOINC 2.x); the first code is the preferred one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shadow.units import Analyte

LOINC = "http://loinc.org"


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    display: str
    unit: str  # canonical UCUM unit every point is converted to
    codes: tuple[str, ...]  # LOINC codes, preferred first
    analyte: Analyte | None = None  # for mass <-> substance conversions
    vital: bool = False  # part of the vital-sign set (NEWS2, the vitals panel)

    @property
    def concept_uids(self) -> tuple[str, ...]:
        return tuple(f"{LOINC}|{c}" for c in self.codes)


def _m(
    key: str,
    display: str,
    unit: str,
    *codes: str,
    analyte: Analyte | None = None,
    vital: bool = False,
) -> Metric:
    return Metric(key, display, unit, codes, analyte, vital)


METRICS: Mapping[str, Metric] = {
    m.key: m
    for m in (
        _m("heart_rate", "Heart rate", "/min", "8867-4", vital=True),
        _m("respiration_rate", "Respiratory rate", "/min", "9279-1", vital=True),
        _m("spo2", "Oxygen saturation", "%", "59408-5", "2708-6", vital=True),
        _m("bp_systolic", "Systolic blood pressure", "mm[Hg]", "8480-6", vital=True),
        _m("bp_diastolic", "Diastolic blood pressure", "mm[Hg]", "8462-4", vital=True),
        _m("body_temperature", "Body temperature", "Cel", "8310-5", vital=True),
        _m("weight", "Body weight", "kg", "29463-7", vital=True),
        _m("height", "Body height", "cm", "8302-2", vital=True),
        _m("bmi", "Body mass index", "kg/m2", "39156-5", vital=True),
        _m("waist", "Waist circumference", "cm", "8280-0", "56086-2"),
        _m("glucose", "Glucose", "mg/dL", "2339-0", "2345-7", analyte="glucose"),
        _m("hba1c", "Hemoglobin A1c", "%", "4548-4"),
        _m("creatinine", "Creatinine", "mg/dL", "2160-0", "38483-4", analyte="creatinine"),
        _m("egfr", "eGFR", "mL/min/{1.73_m2}", "98979-8", "33914-3", "62238-1"),
        _m("total_cholesterol", "Total cholesterol", "mg/dL", "2093-3", analyte="cholesterol"),
        _m("hdl_cholesterol", "HDL cholesterol", "mg/dL", "2085-9", analyte="cholesterol"),
        _m("ldl_cholesterol", "LDL cholesterol", "mg/dL", "18262-6", analyte="cholesterol"),
        _m("triglycerides", "Triglycerides", "mg/dL", "2571-8"),
    )
}

#: LOINC code -> metric key (every code of every metric).
BY_CODE: Mapping[str, str] = {code: m.key for m in METRICS.values() for code in m.codes}


def metric_of_code(code: str) -> Metric | None:
    """The metric a LOINC code (bare, or ``http://loinc.org|code``) measures, if any."""
    key = BY_CODE.get(code.removeprefix(f"{LOINC}|"))
    return None if key is None else METRICS[key]
