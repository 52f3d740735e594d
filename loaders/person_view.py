"""One person's story as the sample ecosystem's clinics recorded it, for the channel generators.

:func:`read_persons` walks the split produced by :func:`loaders.synthea.split_by_provider`
(its ground-truth file says which clinic records belong to which person) and gathers, per
person, the demographics and the facts a patient would know about themselves: vital signs,
glucose, medications, conditions, allergies. Only the generators of synthetic portal accounts
and community posts use this; nothing here is a loader.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from loaders.errors import FileError
from loaders.synthea import GROUND_TRUTH_NAME

JSON = dict[str, Any]

WEIGHT, HEIGHT, HEART_RATE = "29463-7", "8302-2", "8867-4"
SYSTOLIC, DIASTOLIC, BP_PANEL = "8480-6", "8462-4", "85354-9"
GLUCOSE, HBA1C = "2339-0", "4548-4"
_TRACKED = frozenset({WEIGHT, HEIGHT, HEART_RATE, SYSTOLIC, DIASTOLIC, GLUCOSE, HBA1C})


@dataclass(frozen=True, slots=True)
class Med:
    display: str
    code: str | None
    status: str
    authored: datetime | None


@dataclass(frozen=True, slots=True)
class Coded:
    display: str
    code: str | None
    system: str | None
    active: bool


@dataclass(slots=True)
class PersonView:
    pid: str
    patient: JSON
    vitals: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    meds: list[Med] = field(default_factory=list)
    conditions: list[Coded] = field(default_factory=list)
    allergies: list[Coded] = field(default_factory=list)
    last_seen: datetime | None = None

    @property
    def alive(self) -> bool:
        return "deceasedDateTime" not in self.patient

    def latest(self, code: str) -> float | None:
        readings = self.vitals.get(code)
        return max(readings)[1] if readings else None

    def has_condition(self, *words: str) -> bool:
        return any(w in c.display.lower() for c in self.conditions if c.active for w in words)

    def current_meds(self) -> list[Med]:
        """Distinct active prescriptions, newest first (by display)."""
        seen: dict[str, Med] = {}
        for med in sorted(self.meds, key=_authored_key, reverse=True):
            if med.status == "active" and med.display not in seen:
                seen[med.display] = med
        return list(seen.values())


def _authored_key(med: Med) -> float:
    return med.authored.timestamp() if med.authored else float("-inf")


def read_persons(
    split_dir: Path, keep: Callable[[str], bool] | None = None
) -> Iterator[PersonView]:
    """Every person of the split (or those whose id ``keep`` accepts), ordered by person id.

    Only the kept persons' bundles are read: the filter is what keeps generation fast.
    """
    truth_path = split_dir / GROUND_TRUTH_NAME
    try:
        truth = orjson.loads(truth_path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise FileError(truth_path, f"cannot read the split's ground truth: {e}") from e
    for pid in sorted(truth):
        if keep is not None and not keep(pid):
            continue
        view: PersonView | None = None
        for link in truth[pid]:
            path = split_dir / link["org_key"] / f"{link['local_patient_id']}.json"
            try:
                bundle = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as e:
                raise FileError(path, f"cannot read clinic record: {e}") from e
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") or {}
                if view is None and resource.get("resourceType") == "Patient":
                    view = PersonView(pid, resource)
                if view is not None:
                    _take(view, resource)
        if view is not None:
            yield view


def _take(view: PersonView, r: JSON) -> None:
    rtype = r.get("resourceType")
    when = _instant(
        r.get("effectiveDateTime")
        or r.get("authoredOn")
        or r.get("onsetDateTime")
        or r.get("recordedDate")
    )
    if when is not None and (view.last_seen is None or when > view.last_seen):
        view.last_seen = when
    if rtype == "Observation" and when is not None:
        code = _coding(r.get("code")).get("code")
        parts = r.get("component") if code == BP_PANEL else [r]
        for part in parts or []:
            pcode = _coding(part.get("code")).get("code")
            value = (part.get("valueQuantity") or {}).get("value")
            if pcode in _TRACKED and isinstance(value, int | float):
                view.vitals.setdefault(pcode, []).append((when, float(value)))
    elif rtype == "MedicationRequest":
        coding = _coding(r.get("medicationCodeableConcept"))
        display = coding.get("display") or (r.get("medicationReference") or {}).get("display")
        if isinstance(display, str):
            view.meds.append(Med(display, coding.get("code"), str(r.get("status")), when))
    elif rtype in ("Condition", "AllergyIntolerance"):
        coding = _coding(r.get("code"))
        status = _coding(r.get("clinicalStatus")).get("code")
        if isinstance(coding.get("display"), str):
            item = Coded(
                coding["display"], coding.get("code"), coding.get("system"), status == "active"
            )
            (view.conditions if rtype == "Condition" else view.allergies).append(item)


def _coding(concept: Any) -> JSON:
    codings = (concept or {}).get("coding") if isinstance(concept, dict) else None
    return codings[0] if isinstance(codings, list) and codings else {}


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def chosen(seed: int, salt: str, pid: str, fraction: float) -> bool:
    """A deterministic subset: the same persons for the same (seed, salt, fraction)."""
    digest = hashlib.sha256(f"{seed}:{salt}:{pid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def rng_for(seed: int, salt: str, pid: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{salt}:{pid}:rng".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 -- synthetic data


def stable_id(seed: int, salt: str, pid: str, length: int = 10) -> str:
    return hashlib.sha256(f"{seed}:{salt}:{pid}:id".encode()).hexdigest()[:length]


def official_name(patient: JSON) -> tuple[list[str], str | None]:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    given = [g for g in name.get("given") or [] if isinstance(g, str)]
    family = name.get("family")
    return given, family if isinstance(family, str) else None


def telecom(patient: JSON, system: str) -> str | None:
    for t in patient.get("telecom") or []:
        if isinstance(t, dict) and t.get("system") == system and isinstance(t.get("value"), str):
            return str(t["value"])
    return None
