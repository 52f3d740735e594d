"""A synthetic IoT cloud export for some persons of the sample ecosystem.

:func:`generate_iot` reads the per-clinic FHIR Patients of a split Synthea population
(:func:`loaders.synthea.split_by_provider`), picks a deterministic subset of persons and writes
what a wearable / home-monitor vendor would export for them:

* ``accounts.ndjson`` - user profiles typed in by the users themselves: a nickname or short
  given name, sometimes another address, phone or e-mail, no national id;
* ``devices.ndjson`` - a wrist wearable (minute-level heart rate and steps), a blood-pressure
  monitor, pulse oximeter, scale, thermometer, urine test-strip reader, and a glucometer for
  diabetics (a Condition coded as diabetes in any of the person's clinic records);
* ``readings.ndjson`` (and ``readings.csv`` with ``csv_variant=True``, the same readings) -
  heart rate with a circadian rhythm, sleep and activity bouts, steps during activity, spot
  readings of the others a few times a day; the wearable goes off-wrist for hours now and
  then, some devices stop entirely, and every person gets abnormal episodes (tachycardia,
  desaturation, hypertensive spike, hypoglycaemia for diabetics);
* ``ground_truth_iot.json`` - account -> person (the split's person id), the episodes and the
  silences, for tests and benchmarks only (the loader never reads it).

Everything is a pure function of (split, seed, days, fraction, vendor, end, max_persons).
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from loaders.errors import LoaderError
from loaders.readings import METRICS, check_vendor
from loaders.synthea import GROUND_TRUTH_NAME, write_atomic

IOT_TRUTH_NAME = "ground_truth_iot.json"
DEFAULT_END = datetime(2026, 1, 1, tzinfo=UTC)
DIABETES_CODES = frozenset({"44054006", "73211009", "46635009", "190330002"})

_NICKNAMES = {
    "alexander": "Alex", "andrew": "Andy", "anthony": "Tony", "barbara": "Barb",
    "benjamin": "Ben", "catherine": "Kate", "charles": "Charlie", "christopher": "Chris",
    "daniel": "Dan", "david": "Dave", "deborah": "Debbie", "donald": "Don",
    "edward": "Ed", "elizabeth": "Liz", "frederick": "Fred", "gregory": "Greg",
    "james": "Jim", "jennifer": "Jen", "jessica": "Jess", "john": "Jack",
    "jonathan": "Jon", "joseph": "Joe", "joshua": "Josh", "katherine": "Kathy",
    "kenneth": "Ken", "margaret": "Maggie", "matthew": "Matt", "michael": "Mike",
    "nicholas": "Nick", "patricia": "Pat", "patrick": "Pat", "rebecca": "Becky",
    "richard": "Rick", "robert": "Bob", "ronald": "Ron", "samuel": "Sam",
    "stephen": "Steve", "steven": "Steve", "susan": "Sue", "thomas": "Tom",
    "timothy": "Tim", "victoria": "Vicky", "william": "Bill", "zachary": "Zach",
}  # fmt: skip
_STREETS = ("Maple", "Oak", "Cedar", "Elm", "Pine", "Birch", "Willow", "Lake", "Hill", "Park")
_SUFFIXES = ("St", "Ave", "Rd", "Ln", "Dr", "Ct")
_MAIL_DOMAINS = ("mail.example", "inbox.example", "post.example")


@dataclass(frozen=True, slots=True)
class IotGenReport:
    out_dir: Path
    persons: int
    accounts: int
    devices: int
    readings: int
    episodes: int
    silences: int


@dataclass(frozen=True, slots=True)
class _Device:
    id: str
    type: str
    model: str
    manufacturer: str
    metrics: tuple[str, ...]


def _rng(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("|".join((str(seed), *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - test data


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- reading the split -------------------------------------------------------------------------


def _persons(split_dir: Path) -> dict[str, list[dict[str, Any]]]:
    truth = split_dir / GROUND_TRUTH_NAME
    if not truth.is_file():
        raise LoaderError(f"{truth}: not found (run loaders.synthea.split_by_provider first)")
    data = orjson.loads(truth.read_bytes())
    if not isinstance(data, dict):
        raise LoaderError(f"{truth}: expected a JSON object of person id -> records")
    return {str(pid): list(links) for pid, links in data.items()}


def _bundle_resources(split_dir: Path, link: dict[str, Any]) -> list[dict[str, Any]]:
    path = split_dir / str(link["org_key"]) / f"{link['local_patient_id']}.json"
    try:
        bundle = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise LoaderError(f"{path}: cannot read the clinic record: {e}") from e
    return [e["resource"] for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict)]


def _person_facts(split_dir: Path, links: list[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The person's Patient (from the first clinic record) and whether any record says diabetes."""
    patient: dict[str, Any] | None = None
    diabetic = False
    for link in links:
        for r in _bundle_resources(split_dir, link):
            if r.get("resourceType") == "Patient" and patient is None:
                patient = r
            elif r.get("resourceType") == "Condition":
                codes = {c.get("code") for c in (r.get("code") or {}).get("coding") or []}
                diabetic = diabetic or bool(codes & DIABETES_CODES)
    if patient is None:
        raise LoaderError(f"no Patient resource in the clinic records {links}")
    return patient, diabetic


# -- accounts and devices ----------------------------------------------------------------------


def _account(patient: dict[str, Any], account_id: str, rng: random.Random) -> dict[str, Any]:
    name: dict[str, Any] = next(iter(patient.get("name") or []), {})
    given = list(name.get("given") or ["Anon"])
    family = str(name.get("family") or "")
    first = given[0]
    roll = rng.random()
    if roll < 0.45 and first.lower() in _NICKNAMES:
        first = _NICKNAMES[first.lower()]
    elif roll < 0.6 and len(first) > 4:
        first = first[:3]  # "Jos" for Joseph: what people type in a sign-up form
    telecom = {t.get("system"): t.get("value") for t in patient.get("telecom") or []}
    address: dict[str, Any] = next(iter(patient.get("address") or []), {})
    line = next(iter(address.get("line") or []), None)
    postal = address.get("postalCode")
    if rng.random() < 0.4:  # moved, or gave a work address
        line = f"{rng.randint(1, 999)} {rng.choice(_STREETS)} {rng.choice(_SUFFIXES)}"
        postal = f"{rng.randint(1000, 99999):05d}"
    phone = telecom.get("phone")
    if phone is None or rng.random() < 0.5:  # a mobile number, not the home phone
        phone = f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    email = telecom.get("email")
    if email is None or rng.random() < 0.5:
        email = f"{first.lower()}.{family.lower()}{rng.randint(1, 99)}@{rng.choice(_MAIL_DOMAINS)}"
    return {
        "id": account_id,
        "name": f"{first} {family}".strip(),
        "birthDate": patient.get("birthDate") if rng.random() < 0.9 else None,
        "gender": patient.get("gender"),
        "email": email,
        "phone": phone,
        "postalCode": postal,
        "city": address.get("city"),
        "addressLine": line,
    }


def _devices(account_id: str, diabetic: bool) -> list[_Device]:
    devices = [
        _Device(f"{account_id}-w", "wearable", "PulseBand 3", "Acme", ("heart_rate", "steps")),
        _Device(f"{account_id}-bp", "bp_monitor", "CuffPro", "Acme", _BP),
        _Device(f"{account_id}-ox", "pulse_oximeter", "OxiClip", "Acme", ("spo2",)),
        _Device(f"{account_id}-sc", "scale", "SmartScale", "Acme", ("weight",)),
        _Device(f"{account_id}-th", "thermometer", "ThermoTouch", "Acme", ("body_temperature",)),
        _Device(f"{account_id}-ur", "urine_analyzer", "StripReader", "Acme", ("urine_ph",)),
    ]  # fmt: skip
    if diabetic:
        devices.append(
            _Device(f"{account_id}-gl", "glucometer", "GlucoSense", "Acme", ("glucose",))
        )
    return devices


# -- readings ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Person:
    account: str
    rng: random.Random
    start: int
    end: int
    diabetic: bool
    hr_base: float
    weight: float
    sys_base: float
    dia_base: float


def _circadian(t: int) -> float:
    """-1 at 04:00 UTC, +1 at 16:00: the daily swing of resting heart rate."""
    hour = (t % 86_400) / 3600
    return math.sin((hour - 10) / 24 * 2 * math.pi)


def _asleep(t: int) -> bool:
    hour = (t % 86_400) / 3600
    return hour >= 23 or hour < 7


def _wearable(
    p: _Person, dev: str, stop: int, gaps: list[tuple[int, int]], tachy: list[tuple[int, int]]
) -> Iterator[tuple[str, str, int, float]]:
    rng = p.rng
    active_until = -1
    hr = p.hr_base
    for t in range(p.start, min(p.end, stop), 60):
        if any(a <= t < b for a, b in gaps):
            continue
        if t >= active_until and not _asleep(t) and rng.random() < 0.012:
            active_until = t + 60 * rng.randint(10, 45)  # a walk
        active = t < active_until
        target = p.hr_base + 6 * _circadian(t) - (8 if _asleep(t) else 0) + (35 if active else 0)
        if any(a <= t < b for a, b in tachy):
            target = 150 + rng.uniform(-8, 12)
        hr += 0.3 * (target - hr) + rng.gauss(0, 2.0)
        yield dev, "heart_rate", t, round(min(max(hr, 35.0), 220.0))
        if active:
            yield dev, "steps", t, float(rng.randint(70, 125))
        elif not _asleep(t) and rng.random() < 0.08:
            yield dev, "steps", t, float(rng.randint(1, 30))


def _spots(p: _Person, metric: str, per_day: tuple[float, ...]) -> Iterator[int]:
    """Times of spot readings: at the given hours of each day, with a few minutes' jitter."""
    day0 = p.start - p.start % 86_400
    for day in range(day0, p.end, 86_400):
        for hour in per_day:
            t = day + int(hour * 3600) + p.rng.randint(-20, 20) * 60
            if p.start <= t < p.end:
                yield t


def _spot_value(p: _Person, metric: str, t: int) -> float:
    rng = p.rng
    match metric:
        case "bp_systolic":
            return float(round(p.sys_base + rng.gauss(0, 6)))
        case "bp_diastolic":
            return float(round(p.dia_base + rng.gauss(0, 4)))
        case "spo2":
            return float(min(100, round(rng.gauss(97, 1))))
        case "weight":
            return round(p.weight + rng.gauss(0, 0.3), 1)
        case "body_temperature":
            return round(rng.gauss(36.7, 0.2), 1)
        case "urine_ph":
            return round(min(8.5, max(4.6, rng.gauss(6.0, 0.5))), 1)
        case "glucose":
            return float(round(rng.gauss(150 if p.diabetic else 95, 25)))
    raise LoaderError(f"no generator for metric {metric}")


_BP = ("bp_systolic", "bp_diastolic")
#: The episode that a spot metric shows (the user re-measures every 5 minutes during one).
_EPISODE_OF_SPOT = {
    "bp_systolic": "hypertensive_spike",
    "spo2": "desaturation",
    "glucose": "hypoglycaemia",
}

_SPOT_HOURS: dict[str, tuple[float, ...]] = {
    "bp_systolic": (7.5, 20.5),
    "spo2": (8.0, 21.0),
    "weight": (7.0,),
    "body_temperature": (7.2,),
    "urine_ph": (7.1,),
    "glucose": (6.5, 12.5, 18.5, 22.0),
}


def _person_readings(
    p: _Person, devices: list[_Device], truth: dict[str, Any]
) -> list[tuple[str, str, int, float]]:
    rng = p.rng
    days = (p.end - p.start) // 86_400
    out: list[tuple[str, str, int, float]] = []
    # Silences: the wearable goes off-wrist a few hours on some days (at least once), and a
    # device may stop for good somewhere in the second half.
    gaps: list[tuple[int, int]] = []
    for day in range(max(days, 1)):
        if day == 1 or (day > 1 and rng.random() < 0.15):
            a = p.start + day * 86_400 + rng.randint(8, 18) * 3600
            gaps.append((a, a + rng.randint(1, 6) * 3600))
    stops: dict[str, int] = {}
    for dev in devices:
        if days >= 4 and rng.random() < 0.2:
            stops[dev.id] = p.start + rng.randint(days // 2, days - 1) * 86_400
    wearable = devices[0].id
    for a, b in gaps:
        truth["silences"].append(
            {"account": p.account, "device": wearable, "start": _iso(a), "end": _iso(b)}
        )
    for dev_id, t in sorted(stops.items()):
        truth["silences"].append(
            {"account": p.account, "device": dev_id, "start": _iso(t), "end": None}
        )

    # Episodes: one or two per person, never inside a silence of the device that shows them.
    kinds = ["tachycardia", "desaturation", "hypertensive_spike"] + (
        ["hypoglycaemia"] if p.diabetic else []
    )
    chosen = rng.sample(kinds, k=min(len(kinds), 1 + (rng.random() < 0.5)))
    episodes: dict[str, list[tuple[int, int]]] = {k: [] for k in kinds}
    device_of = {m: d.id for d in devices for m in d.metrics}
    metric_of = {
        "tachycardia": "heart_rate",
        "desaturation": "spo2",
        "hypertensive_spike": "bp_systolic",
        "hypoglycaemia": "glucose",
    }
    for kind in chosen:
        shown_by = device_of[metric_of[kind]]
        limit = stops.get(shown_by, p.end)
        for _ in range(50):
            a = p.start + rng.randint(0, max((limit - p.start) // 60 - 120, 1)) * 60
            b = a + rng.randint(20, 60) * 60
            if b <= limit and not any(x < b and a < y for x, y in gaps):
                episodes[kind].append((a, b))
                truth["episodes"].append(
                    {
                        "account": p.account,
                        "kind": kind,
                        "metric": metric_of[kind],
                        "device": shown_by,
                        "start": _iso(a),
                        "end": _iso(b),
                    }
                )
                break

    out.extend(_wearable(p, wearable, stops.get(wearable, p.end), gaps, episodes["tachycardia"]))
    for dev in devices[1:]:
        stop = stops.get(dev.id, p.end)
        lead = dev.metrics[0]
        times = [t for t in _spots(p, lead, _SPOT_HOURS[lead]) if t < stop]
        # during an episode the user measures again and again (every 5 minutes)
        spells = episodes.get(_EPISODE_OF_SPOT.get(lead, ""), [])
        for a, b in spells:
            times.extend(range(a, b, 300))
        for t in sorted(set(times)):
            in_episode = any(a <= t < b for a, b in spells)
            for metric in dev.metrics:
                value = _spot_value(p, metric, t)
                if in_episode:
                    value = _episode_value(rng, metric, value)
                out.append((dev.id, metric, t, value))
    out.sort(key=lambda r: (r[2], r[0], r[1]))
    return out


def _episode_value(rng: random.Random, metric: str, normal: float) -> float:
    match metric:
        case "bp_systolic":
            return float(rng.randint(182, 215))
        case "bp_diastolic":
            return float(rng.randint(112, 130))
        case "spo2":
            return float(rng.randint(81, 88))
        case "glucose":
            return float(rng.randint(42, 62))
    return normal


# -- the entry point ---------------------------------------------------------------------------


def generate_iot(
    split_dir: Path,
    out_dir: Path,
    *,
    seed: int = 2026,
    days: int = 14,
    fraction: float = 0.2,
    vendor: str = "pulsewave",
    end: datetime = DEFAULT_END,
    max_persons: int | None = None,
    csv_variant: bool = False,
) -> IotGenReport:
    """Write an IoT cloud export for a deterministic subset of the split's persons."""
    check_vendor(vendor)
    if days < 1:
        raise LoaderError("days must be at least 1")
    if not 0 < fraction <= 1:
        raise LoaderError("fraction must be within (0, 1]")
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    persons = _persons(split_dir)
    pids = sorted(persons)
    k = max(1, round(fraction * len(pids)))
    if max_persons is not None:
        k = min(k, max_persons)
    chosen = sorted(_rng(seed, "subset").sample(pids, k=min(k, len(pids))))
    end_t = int(end.timestamp())
    end_t -= end_t % 60
    start_t = end_t - days * 86_400
    out_dir.mkdir(parents=True, exist_ok=True)

    truth: dict[str, Any] = {
        "vendor": vendor,
        "seed": seed,
        "start": _iso(start_t),
        "end": _iso(end_t),
        "accounts": {},
        "diabetic": [],
        "episodes": [],
        "silences": [],
    }
    accounts: list[bytes] = []
    devices_out: list[bytes] = []
    count = 0
    readings_path = out_dir / "readings.ndjson"
    tmp = readings_path.with_suffix(".ndjson.tmp")
    csv_tmp = out_dir / "readings.csv.tmp"
    csv_fh = csv_tmp.open("w", newline="", encoding="utf-8") if csv_variant else None
    writer = csv.writer(csv_fh) if csv_fh else None
    if writer:
        writer.writerow(["account", "device", "metric", "time", "value", "unit"])
    try:
        with tmp.open("wb") as fh:
            for pid in chosen:
                rng = _rng(seed, "person", pid)
                patient, diabetic = _person_facts(split_dir, persons[pid])
                account_id = (
                    "u" + hashlib.sha256(f"{seed}|{vendor}|{pid}".encode()).hexdigest()[:10]
                )
                truth["accounts"][account_id] = pid
                if diabetic:
                    truth["diabetic"].append(account_id)
                accounts.append(orjson.dumps(_account(patient, account_id, rng)))
                devs = _devices(account_id, diabetic)
                for d in devs:
                    devices_out.append(
                        orjson.dumps(
                            {
                                "id": d.id,
                                "account": account_id,
                                "type": d.type,
                                "model": d.model,
                                "manufacturer": d.manufacturer,
                                "registered": _iso(start_t - 86_400 * rng.randint(1, 400)),
                            }
                        )
                    )
                p = _Person(
                    account=account_id,
                    rng=rng,
                    start=start_t,
                    end=end_t,
                    diabetic=diabetic,
                    hr_base=rng.uniform(58, 76),
                    weight=rng.uniform(55, 110),
                    sys_base=rng.uniform(112, 142),
                    dia_base=rng.uniform(70, 90),
                )
                for dev, metric, t, value in _person_readings(p, devs, truth):
                    unit = METRICS[metric].unit
                    row = {
                        "account": account_id,
                        "device": dev,
                        "metric": metric,
                        "time": _iso(t),
                        "value": value,
                        "unit": unit,
                    }
                    fh.write(orjson.dumps(row) + b"\n")
                    if writer:
                        writer.writerow([account_id, dev, metric, _iso(t), f"{value:g}", unit])
                    count += 1
    finally:
        if csv_fh:
            csv_fh.close()
    tmp.replace(readings_path)
    if csv_variant:
        csv_tmp.replace(out_dir / "readings.csv")
    write_atomic(out_dir / "accounts.ndjson", b"\n".join(accounts) + b"\n")
    write_atomic(out_dir / "devices.ndjson", b"\n".join(devices_out) + b"\n")
    write_atomic(out_dir / IOT_TRUTH_NAME, orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return IotGenReport(
        out_dir=out_dir,
        persons=len(chosen),
        accounts=len(accounts),
        devices=len(devices_out),
        readings=count,
        episodes=len(truth["episodes"]),
        silences=len(truth["silences"]),
    )
