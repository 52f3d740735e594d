"""The digital shadow of one person, computed from what every domain sent (issue 5 §1-2, §4).

Pure: :class:`PersonData` is what ``shadow/service.py`` read from the graph; this module turns
it into the person's vitals (latest value per metric, derived ones marked with their inputs),
the validated scores and the data requests for what is missing. Nothing here guesses: an input
that no domain holds and no derivation gives is a missing input, and a missing input becomes a
request naming what is needed, why, and which of the person's domains could provide it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from shadow import derived, scores
from shadow.metrics import METRICS
from shadow.model import Input, Point, Quantity, ScoreResult, SeriesActivity, Sex
from shadow.scores import (
    news2_pulse,
    news2_respiration,
    news2_spo2_scale1,
    news2_systolic,
    news2_temperature,
)

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"

#: Condition groups the scores and rules ask about: root codes, expanded to their descendants
#: (IS_A) by the caller (``graph.shadow.descendants``).
CONDITION_GROUPS: Mapping[str, tuple[str, ...]] = {
    "diabetes": (
        f"{SNOMED}|73211009",
        f"{SNOMED}|44054006",
        f"{SNOMED}|46635009",
        f"{ICD10}|E10",
        f"{ICD10}|E11",
        f"{ICD10CM}|E11.9",
    ),
    "hypertension": (f"{SNOMED}|38341003", f"{SNOMED}|59621000", f"{ICD10}|I10", f"{ICD10CM}|I10"),
    "prediabetes": (f"{SNOMED}|15777000", f"{SNOMED}|714628002", f"{ICD10CM}|R73.03"),
    "heart_failure": (f"{SNOMED}|84114007", f"{SNOMED}|88805009", f"{ICD10}|I50"),
}

#: Tobacco smoking status (LOINC 72166-2) answers that mean "smokes now" (SNOMED CT).
SMOKING_STATUS = f"{LOINC}|72166-2"
CURRENT_SMOKER = frozenset(
    {"449868002", "428041000124106", "77176002", "65568007", "428071000124103"}
)
NOT_SMOKER = frozenset({"266919005", "8517006", "405746006", "266927001"})

#: Ingredients of the antihypertensive ATC groups C02, C03, C07, C08 and C09 that clinics
#: prescribe most; an active prescription naming one counts as treated hypertension.
ANTIHYPERTENSIVES = (
    "amlodipine", "nifedipine", "felodipine", "diltiazem", "verapamil",  # C08
    "lisinopril", "enalapril", "ramipril", "captopril", "benazepril", "perindopril",  # C09A
    "losartan", "valsartan", "irbesartan", "candesartan", "olmesartan", "telmisartan",  # C09C
    "hydrochlorothiazide", "chlorthalidone", "indapamide", "furosemide", "spironolactone",  # C03
    "metoprolol", "atenolol", "bisoprolol", "carvedilol", "propranolol", "nebivolol",  # C07
    "clonidine", "methyldopa", "doxazosin", "hydralazine",  # C02
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DomainRef:
    uid: str
    name: str
    kind: str
    record: str  # the person's Patient record in that domain
    #: kinds of data the domain has written for the person (the operational data store's
    #: registry: ``Observation``, ``ReadingSeries``, ...)
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CodedValue:
    code: str
    display: str | None
    t: int
    source: str
    record: str


@dataclass(slots=True)
class PersonData:
    """Everything the shadow reads about one person, as of ``as_of`` (epoch seconds)."""

    person: str
    as_of: int
    name: str | None = None
    birth_date: date | None = None
    sex: Sex | None = None
    deceased: bool = False
    domains: list[DomainRef] = field(default_factory=list)
    points: dict[str, list[Point]] = field(default_factory=dict)  # metric -> ascending by t
    coded: dict[str, CodedValue] = field(default_factory=dict)  # concept uid -> newest answer
    conditions: frozenset[str] = frozenset()
    medications: list[str] = field(default_factory=list)
    series: list[SeriesActivity] = field(default_factory=list)

    def age_at(self, t: int) -> float | None:
        if self.birth_date is None:
            return None
        day = datetime.fromtimestamp(t, UTC).date()
        return (day - self.birth_date).days / 365.25

    def latest(self, metric: str) -> Point | None:
        pts = self.points.get(metric)
        return pts[-1] if pts else None


@dataclass(frozen=True, slots=True)
class Vital:
    """The latest value of one metric, or a value derived from others (``derived``)."""

    metric: str
    display: str
    value: float
    unit: str
    t: int
    source: str
    record: str
    derived: bool = False
    inputs: tuple[tuple[str, str], ...] = ()  # (input, "value unit from source at time")
    method: str | None = None


@dataclass(frozen=True, slots=True)
class Need:
    """A data request: ``need`` is a metric key or a score input name."""

    need: str
    display: str
    reasons: tuple[str, ...]
    domains: tuple[str, ...]  # domain uids that could hold it, most likely first
    tried: tuple[str, ...]


@dataclass(slots=True)
class Shadow:
    person: str
    vitals: list[Vital]
    scores: list[ScoreResult]
    needs: list[Need]


def in_groups(data: PersonData, groups: Mapping[str, frozenset[str]], name: str) -> bool:
    codes = groups.get(name) or frozenset(CONDITION_GROUPS[name])
    return not data.conditions.isdisjoint(codes)


# --------------------------------------------------------------------------- vitals


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _describe(p: Point, value: Input) -> str:
    """An input as it went in (a quantity in the equation's unit), with where it came from."""
    shown = f"{value.value:g} {value.unit}" if isinstance(value, Quantity) else str(value)
    return f"{shown} from {p.source} at {_iso(p.t)}"


def _q(p: Point | None, metric: str) -> Quantity | None:
    return None if p is None else Quantity(p.value, METRICS[metric].unit)


def _derived_vital(
    metric: str, display: str, result: ScoreResult, inputs: Sequence[tuple[str, Point]]
) -> Vital | None:
    if result.value is None or not inputs:
        return None
    newest = max((p for _, p in inputs), key=lambda p: p.t)
    return Vital(
        metric=metric,
        display=display,
        value=round(result.value, 2),
        unit=result.unit or "",
        t=newest.t,
        source="medshadow",
        record=newest.record,
        derived=True,
        inputs=tuple((name, _describe(p, result.inputs_used[name])) for name, p in inputs),
        method=f"{result.version}: {result.reference}",
    )


def vitals(data: PersonData) -> list[Vital]:
    """The latest point of each metric; BMI, eGFR and mean arterial pressure derived from
    their inputs when no domain sent one at least as recent as those inputs."""
    out: dict[str, Vital] = {}
    for key, pts in data.points.items():
        if pts:
            p = pts[-1]
            m = METRICS[key]
            out[key] = Vital(key, m.display, p.value, m.unit, p.t, p.source, p.record)
    w, h = data.latest("weight"), data.latest("height")
    if w and h:
        v = _derived_vital(
            "bmi",
            METRICS["bmi"].display,
            derived.bmi(_q(w, "weight"), _q(h, "height")),
            [("weight", w), ("height", h)],
        )
        if v and ("bmi" not in out or out["bmi"].t < v.t):
            out["bmi"] = v
    s, d = data.latest("bp_systolic"), data.latest("bp_diastolic")
    if s and d and abs(s.t - d.t) <= 600:  # a pair measured together
        v = _derived_vital(
            "mean_arterial_pressure",
            "Mean arterial pressure",
            derived.mean_arterial_pressure(_q(s, "bp_systolic"), _q(d, "bp_diastolic")),
            [("systolic", s), ("diastolic", d)],
        )
        if v:
            out[v.metric] = v
    c = data.latest("creatinine")
    if c:
        v = _derived_vital(
            "egfr",
            METRICS["egfr"].display,
            derived.egfr_ckd_epi_2021(_q(c, "creatinine"), data.age_at(c.t), data.sex),
            [("creatinine", c)],
        )
        if v and ("egfr" not in out or out["egfr"].t < v.t):
            out["egfr"] = v
    return sorted(out.values(), key=lambda v: v.metric)


# --------------------------------------------------------------------------- scores

NEWS2_SET_S = 24 * 3600  # the newest vital-sign set: readings within a day of the newest one
_NEWS2_PARAMS = {
    "respiration_rate": ("respiration_rate", news2_respiration),
    "spo2": ("spo2", news2_spo2_scale1),
    "systolic": ("bp_systolic", news2_systolic),
    "pulse": ("heart_rate", news2_pulse),
    "temperature": ("body_temperature", news2_temperature),
}


def news2_of(data: PersonData) -> ScoreResult:
    """NEWS2 of the newest vital-sign set. Consciousness (ACVPU) and supplemental oxygen are
    recorded at the bedside, rarely in the data that reaches the shadow; when they are missing
    the result is incomplete (no value), and the notes give the partial sum of the parameters
    present - a lower bound of the full score, since a missing parameter can only add."""
    latest = {name: data.latest(metric) for name, (metric, _) in _NEWS2_PARAMS.items()}
    present = [p for p in latest.values() if p is not None]
    at = datetime.fromtimestamp(data.as_of, UTC)
    if present:
        newest = max(p.t for p in present)
        latest = {k: (p if p and p.t >= newest - NEWS2_SET_S else None) for k, p in latest.items()}
    result = scores.news2(
        respiration_rate=_q(latest["respiration_rate"], "respiration_rate"),
        spo2=_q(latest["spo2"], "spo2"),
        on_oxygen=None,
        systolic=_q(latest["systolic"], "bp_systolic"),
        pulse=_q(latest["pulse"], "heart_rate"),
        consciousness=None,
        temperature=_q(latest["temperature"], "body_temperature"),
        at=at,
    )
    partial = sum(fn(p.value) for name, (_, fn) in _NEWS2_PARAMS.items() if (p := latest[name]))
    result.notes.append(f"partial sum of the parameters present: {partial} (a lower bound)")
    result.notes.extend(
        f"{name} {_describe(p, Quantity(p.value, METRICS[_NEWS2_PARAMS[name][0]].unit))}"
        for name, p in latest.items()
        if p is not None
    )
    return result


def _smoker(data: PersonData) -> bool | None:
    answer = data.coded.get(SMOKING_STATUS)
    if answer is None:
        return None
    if answer.code in CURRENT_SMOKER:
        return True
    return False if answer.code in NOT_SMOKER else None


def _antihypertensive(data: PersonData) -> str | None:
    for name in data.medications:
        low = name.lower()
        if hit := next((drug for drug in ANTIHYPERTENSIVES if drug in low), None):
            return f"{hit} ({name})"
    return None


def pce_of(data: PersonData, groups: Mapping[str, frozenset[str]]) -> ScoreResult:
    """Pooled cohort equations. No domain in the sample records race: the white equations are
    used, as the 2013 guideline advises for races other than African American, and the notes
    say so (race is also asked for as a data request)."""
    at = datetime.fromtimestamp(data.as_of, UTC)
    drug = _antihypertensive(data)
    result = scores.pooled_cohort_equations(
        age_years=data.age_at(data.as_of),
        sex=data.sex,
        race="other",
        total_cholesterol=_q(data.latest("total_cholesterol"), "total_cholesterol"),
        hdl_cholesterol=_q(data.latest("hdl_cholesterol"), "hdl_cholesterol"),
        systolic=_q(data.latest("bp_systolic"), "bp_systolic"),
        treated_hypertension=drug is not None,
        smoker=_smoker(data),
        diabetes=in_groups(data, groups, "diabetes"),
        at=at,
    )
    result.notes.append("race: not recorded by any domain, 'other' assumed")
    result.notes.append(
        f"treated hypertension: {'active ' + drug if drug else 'no active antihypertensive'}"
    )
    return result


def _high_glucose_history(data: PersonData, groups: Mapping[str, frozenset[str]]) -> bool | None:
    """FINDRISC's "ever had high blood glucose": a diabetes or prediabetes diagnosis, an HbA1c
    of 5.7 % or more, or a glucose of 126 mg/dL or more (ADA diagnostic thresholds); no if the
    person has such results and none is high; unknown without any."""
    if in_groups(data, groups, "diabetes") or in_groups(data, groups, "prediabetes"):
        return True
    a1c, glucose = data.points.get("hba1c", []), data.points.get("glucose", [])
    if any(p.value >= 5.7 for p in a1c) or any(p.value >= 126 for p in glucose):
        return True
    return False if a1c or glucose else None


def findrisc_of(data: PersonData, groups: Mapping[str, frozenset[str]]) -> ScoreResult:
    at = datetime.fromtimestamp(data.as_of, UTC)
    bmi = next((v for v in vitals(data) if v.metric == "bmi"), None)
    return scores.findrisc(
        age_years=data.age_at(data.as_of),
        sex=data.sex,
        bmi=Quantity(bmi.value, "kg/m2") if bmi else None,
        waist=_q(data.latest("waist"), "waist"),
        physically_active=None,
        daily_fruit_vegetables=None,
        antihypertensive_medication=_antihypertensive(data) is not None,
        history_high_glucose=_high_glucose_history(data, groups),
        family_history=None,
        at=at,
    )


# --------------------------------------------------------------------------- data requests

#: Where each missing input is usually found, by domain kind, most likely first; a patient-
#: reported item (questionnaire) goes to the portal.
SOURCES_BY_INPUT: Mapping[str, tuple[str, ...]] = {
    "respiration_rate": ("MIS",),
    "spo2": ("IOT_CLOUD", "MIS", "PORTAL"),
    "systolic": ("IOT_CLOUD", "MIS", "PORTAL"),
    "pulse": ("IOT_CLOUD", "MIS", "PORTAL"),
    "temperature": ("IOT_CLOUD", "MIS", "PORTAL"),
    "consciousness": ("MIS",),
    "on_oxygen": ("MIS",),
    "total_cholesterol": ("MIS",),
    "hdl_cholesterol": ("MIS",),
    "smoker": ("MIS", "PORTAL"),
    "race": ("MIS", "PORTAL"),
    "age": ("MIS", "PORTAL"),
    "sex": ("MIS", "PORTAL"),
    "bmi": ("MIS", "IOT_CLOUD", "PORTAL"),
    "waist": ("MIS", "PORTAL"),
    "physically_active": ("PORTAL",),
    "daily_fruit_vegetables": ("PORTAL",),
    "family_history": ("PORTAL", "MIS"),
    "history_high_glucose": ("MIS",),
    "weight": ("IOT_CLOUD", "PORTAL", "MIS"),
}

INPUT_DISPLAY: Mapping[str, str] = {
    "respiration_rate": "Respiratory rate",
    "spo2": "Oxygen saturation (SpO2)",
    "systolic": "Systolic blood pressure",
    "pulse": "Pulse rate",
    "temperature": "Body temperature",
    "consciousness": "Level of consciousness (ACVPU)",
    "on_oxygen": "Supplemental oxygen (yes/no)",
    "total_cholesterol": "Total cholesterol",
    "hdl_cholesterol": "HDL cholesterol",
    "smoker": "Tobacco smoking status",
    "race": "Race (for the pooled cohort equations)",
    "age": "Date of birth",
    "sex": "Administrative sex",
    "bmi": "Body mass index (or height and weight)",
    "waist": "Waist circumference",
    "physically_active": "At least 30 minutes of physical activity daily (yes/no)",
    "daily_fruit_vegetables": "Eats vegetables, fruit or berries every day (yes/no)",
    "family_history": "Diabetes in the family (parents, siblings, children; or grandparents, "
    "aunts, uncles, cousins)",
    "history_high_glucose": "Ever found to have high blood glucose",
    "weight": "Body weight (daily, heart-failure monitoring)",
}

#: Score inputs named differently from the metric that answers them.
INPUT_METRIC: Mapping[str, str] = {
    "systolic": "bp_systolic",
    "pulse": "heart_rate",
    "temperature": "body_temperature",
}

#: How recent a daily weight must be for heart-failure self-monitoring (ESC 2021: daily).
HF_WEIGHT_MAX_AGE_S = 7 * 86_400


#: Registry kinds that show a domain records measurements for the person.
MEASURING_KINDS = frozenset({"Observation", "ReadingSeries"})


def _domains_for(data: PersonData, need: str) -> tuple[str, ...]:
    """Domains of the kinds that hold such data, those whose registry entry shows they already
    record measurements for this person first."""
    kinds = SOURCES_BY_INPUT.get(need, ("MIS",))
    ranked = sorted(
        (d for d in data.domains if d.kind in kinds),
        key=lambda d: (kinds.index(d.kind), MEASURING_KINDS.isdisjoint(d.kinds), d.uid),
    )
    return tuple(dict.fromkeys(d.uid for d in ranked))


def applicable(data: PersonData, result: ScoreResult, groups: Mapping[str, frozenset[str]]) -> bool:
    """Whether completing a score is worth asking a domain for: NEWS2 while the person is
    being monitored (a vital sign in the last day), the pooled cohort equations in their
    validated ages 40-79, FINDRISC for adults not known to have diabetes (it screens for
    undiagnosed type 2 diabetes)."""
    age = data.age_at(data.as_of)
    if result.name == "NEWS2":
        newest = max(
            (p.t for m, (k, _) in _NEWS2_PARAMS.items() if (p := data.latest(k))), default=None
        )
        return newest is not None and newest >= data.as_of - NEWS2_SET_S
    if result.version == scores.PCE_VERSION:
        return age is not None and 40 <= age <= 79
    if result.name == "FINDRISC":
        return (age is None or age >= 18) and not in_groups(data, groups, "diabetes")
    return True


def needs(
    data: PersonData, results: Sequence[ScoreResult], groups: Mapping[str, frozenset[str]]
) -> list[Need]:
    """Data requests for the inputs the scores and monitoring rules still lack, after every
    domain's data was pooled and the derivations were tried."""
    if data.deceased:
        return []
    reasons: dict[str, list[str]] = {}
    for r in results:
        if not applicable(data, r, groups):
            continue
        for name in r.inputs_missing:
            reasons.setdefault(name, []).append(f"{r.name} ({r.version})")
        age = data.age_at(data.as_of)
        if r.version == scores.PCE_VERSION and age is not None and 40 <= age <= 79:
            reasons.setdefault("race", []).append(
                f"{r.name}: race not recorded, the white equations were assumed"
            )
    if in_groups(data, groups, "heart_failure"):
        w = data.latest("weight")
        if w is None or w.t < data.as_of - HF_WEIGHT_MAX_AGE_S:
            reasons.setdefault("weight", []).append(
                "heart failure: daily weight to detect fluid retention (ESC 2021)"
            )
    tried_all = f"searched all {len(data.domains)} domains holding this person's records"
    derivations = {
        "bmi": "derivation from height and weight: "
        + ", ".join(m for m in ("height", "weight") if data.latest(m) is None)
        + " missing",
        "history_high_glucose": "derivation from diagnoses, HbA1c and glucose results: none "
        "recorded",
    }
    out = []
    for name in sorted(reasons):
        tried = [tried_all] + ([derivations[name]] if name in derivations else [])
        out.append(
            Need(
                need=name,
                display=INPUT_DISPLAY.get(name, name.replace("_", " ")),
                reasons=tuple(dict.fromkeys(reasons[name])),
                domains=_domains_for(data, name),
                tried=tuple(tried),
            )
        )
    return out


def compute(data: PersonData, groups: Mapping[str, frozenset[str]]) -> Shadow:
    results = [news2_of(data), pce_of(data, groups), findrisc_of(data, groups)]
    return Shadow(data.person, vitals(data), results, needs(data, results, groups))


def score_row(person: str, r: ScoreResult) -> dict[str, object]:
    """A score as ``graph.shadow.store_scores`` stores it."""

    def plain(v: Input) -> object:
        return {"value": v.value, "unit": v.unit} if isinstance(v, Quantity) else v

    return {
        "person": person,
        "name": r.name,
        "version": r.version,
        "value": r.value,
        "category": r.category,
        "inputsUsed": {k: plain(v) for k, v in r.inputs_used.items()},
        "inputsMissing": list(r.inputs_missing),
        "reference": r.reference,
        "notes": list(r.notes),
        "computedAt": r.computed_at,
        "complete": r.complete,
    }
