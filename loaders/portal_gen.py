"""Synthetic portal accounts for a deterministic subset of the sample ecosystem's persons.

A person's portal account disagrees with their clinic records the way real ones do: the
patient signs up under a short given name, from their new address, with a private e-mail and
without a national id. What they enter is consistent with what the clinics measured (weights
and blood pressures near the recorded ones, glucose for diabetics) and what was prescribed,
with the discrepancies medication reconciliation exists for: a prescription they stopped, an
over-the-counter drug nobody prescribed. ``ground_truth_portal.json`` maps every account's
Patient record uid to the person id of the split's ground truth; the loader never reads it.

Deterministic per seed: draws come from generators seeded with (seed, person id), dates from
the person's own records, never the wall clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from loaders import person_view as pv
from loaders.patient_record import record_uid
from loaders.portal import FORMAT, portal_domain
from loaders.synthea import write_atomic

GROUND_TRUTH_PORTAL = "ground_truth_portal.json"
DEFAULT_PORTAL_NAME = "MyHealth"

#: Short forms people sign up with; names not listed keep their first given name.
_SHORT_NAMES = {
    "abigail": "Abby",
    "alexander": "Alex",
    "alexandra": "Alex",
    "andrew": "Andy",
    "anthony": "Tony",
    "barbara": "Barb",
    "benjamin": "Ben",
    "catherine": "Kate",
    "charles": "Charlie",
    "christina": "Tina",
    "christopher": "Chris",
    "daniel": "Dan",
    "david": "Dave",
    "deborah": "Debbie",
    "donald": "Don",
    "dorothy": "Dot",
    "edward": "Ed",
    "elizabeth": "Liz",
    "emily": "Em",
    "frederick": "Fred",
    "gregory": "Greg",
    "jacob": "Jake",
    "james": "Jim",
    "jennifer": "Jen",
    "jessica": "Jess",
    "jonathan": "Jon",
    "joseph": "Joe",
    "joshua": "Josh",
    "katherine": "Kate",
    "kenneth": "Ken",
    "kimberly": "Kim",
    "lawrence": "Larry",
    "margaret": "Maggie",
    "matthew": "Matt",
    "michael": "Mike",
    "nicholas": "Nick",
    "patricia": "Pat",
    "patrick": "Pat",
    "rebecca": "Becky",
    "richard": "Rick",
    "robert": "Bob",
    "ronald": "Ron",
    "samantha": "Sam",
    "samuel": "Sam",
    "stephanie": "Steph",
    "stephen": "Steve",
    "steven": "Steve",
    "susan": "Sue",
    "theodore": "Ted",
    "thomas": "Tom",
    "timothy": "Tim",
    "victoria": "Vicky",
    "william": "Bill",
    "zachary": "Zach",
    "della": "Dell",
    "raymond": "Ray",
    "gerald": "Jerry",
    "jeffrey": "Jeff",
    "douglas": "Doug",
    "pamela": "Pam",
    "cynthia": "Cindy",
    "sandra": "Sandy",
    "teresa": "Terry",
    "virginia": "Ginny",
    "judith": "Judy",
}
_STREETS = (
    "Maple",
    "Oak",
    "Cedar",
    "Elm",
    "Willow",
    "Birch",
    "Harbor",
    "Hillside",
    "Lake",
    "Mill",
    "Park",
    "River",
    "Spring",
    "Sunset",
    "Union",
    "Walnut",
)
_STREET_KINDS = ("St", "Ave", "Rd", "Ln", "Way", "Ct")
_CITIES = (
    "Boston",
    "Cambridge",
    "Somerville",
    "Quincy",
    "Newton",
    "Brookline",
    "Worcester",
    "Lowell",
    "Salem",
    "Framingham",
)
_MAIL_HOSTS = ("mail.example.org", "inbox.example.net", "post.example.com")

#: Over-the-counter drugs a patient takes and tells the portal, not the doctor.
_OTC = (
    ("Ibuprofen 200 mg tablets", "310965", "400 mg", "when needed"),
    ("Acetaminophen 500 mg tablets", "198440", "500-1000 mg", "when needed"),
    ("Vitamin D3 1000 IU", None, "1 capsule", "once daily"),
    ("Fish oil 1000 mg", None, "1 capsule", "once daily"),
    ("Loratadine 10 mg", None, "10 mg", "once daily in spring"),
)
_STOP_REASONS = (
    "stopped it myself, it upset my stomach",
    "ran out and did not refill",
    "felt dizzy on it so I stopped",
    "too expensive, stopped last month",
)
_FREQUENCIES = ("once daily", "twice daily", "in the morning", "at night", "as prescribed")
#: Condition words -> symptom diary entries (text, severity range, SNOMED code of the symptom).
_SYMPTOMS: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[int, int], str], ...] = (
    (
        ("migraine",),
        (
            "bad headache behind my eyes, light hurts",
            "migraine started after work, had to lie down",
        ),
        (5, 9),
        "25064002",
    ),
    (
        ("diabetes", "prediabetes"),
        ("very thirsty all day", "feel shaky before lunch"),
        (2, 5),
        "17173007",
    ),
    (
        ("hypertension",),
        ("a bit dizzy when I stand up", "headache in the morning"),
        (2, 5),
        "404640003",
    ),
    (
        ("sinusitis", "pharyngitis", "bronchitis"),
        ("blocked nose and sore throat", "coughing at night"),
        (2, 6),
        "49727002",
    ),
    (
        ("chronic pain", "fracture", "sprain"),
        ("pain in my back worse today", "joint pain after walking"),
        (3, 8),
        "22253000",
    ),
    (
        ("stress", "anxiety"),
        ("could not sleep, worrying a lot", "felt anxious all afternoon"),
        (3, 7),
        "48694002",
    ),
)
_ALLERGY_EXTRA = (
    ("Penicillin", "rash", "moderate", "764146007"),
    ("Latex", "itchy hands", "mild", "111088007"),
    ("Peanuts", "swollen lips", "severe", "762952008"),
)


@dataclass(frozen=True, slots=True)
class PortalGenReport:
    out_dir: Path
    accounts: int
    entries: int
    persons_chosen: int  # including the deceased, who get no account


def generate_portal(
    split_dir: Path,
    out_dir: Path,
    *,
    seed: int = 2026,
    fraction: float = 0.5,
    portal: str = DEFAULT_PORTAL_NAME,
) -> PortalGenReport:
    """Write one ``<account>.json`` per chosen living person and the ground truth."""
    out_dir.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str] = {}
    entries = 0
    considered = 0
    for person in pv.read_persons(split_dir, lambda pid: pv.chosen(seed, "portal", pid, fraction)):
        considered += 1
        if not person.alive:
            continue
        doc = _account(person, seed, portal, list(_CITIES))
        account_id = doc["account"]["id"]
        write_atomic(out_dir / f"{account_id}.json", orjson.dumps(doc, option=_JSON_OPTS))
        truth[record_uid(portal_domain(portal), account_id)] = person.pid
        entries += len(doc["entries"])
    write_atomic(out_dir / GROUND_TRUTH_PORTAL, orjson.dumps(truth, option=_JSON_OPTS))
    return PortalGenReport(out_dir, len(truth), entries, considered)


_JSON_OPTS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS


def _account(person: pv.PersonView, seed: int, portal: str, cities: list[str]) -> dict[str, Any]:
    rng = pv.rng_for(seed, "portal", person.pid)
    patient = person.patient
    given, family = pv.official_name(patient)
    first = given[0] if given else "Pat"
    short = _SHORT_NAMES.get(first.lower(), first)
    home = _home(patient)
    city = home.get("city") if rng.random() < 0.6 else rng.choice(cities)
    mail_name = "".join(
        ch for ch in f"{short}.{family or 'x'}".lower() if ch.isalnum() or ch == "."
    )
    account = {
        "id": f"mh-{pv.stable_id(seed, 'portal', person.pid)}",
        "given": [short],
        "family": family,
        "birthDate": patient.get("birthDate"),
        "gender": patient.get("gender"),
        "email": f"{mail_name}{rng.randint(1, 99)}@{rng.choice(_MAIL_HOSTS)}",
        "phone": pv.telecom(patient, "phone") if rng.random() < 0.7 else None,
        "address": {
            "line": f"{rng.randint(2, 980)} {rng.choice(_STREETS)} {rng.choice(_STREET_KINDS)}",
            "postalCode": f"0{rng.randint(1000, 2799)}",
            "city": city,
        },
    }
    now = person.last_seen or datetime.fromisoformat("2025-01-01T00:00:00+00:00")
    entries = [
        *_measurements(person, rng, now),
        *_symptoms(person, rng, now),
        *_medications(person, rng, now),
        *_allergies(person, rng, now),
        *_preferences(patient, rng, now),
    ]
    for i, entry in enumerate(entries):
        entry["id"] = f"e{i + 1}"
    return {
        "format": FORMAT,
        "portal": portal,
        "account": {k: v for k, v in account.items() if v is not None},
        "entries": entries,
    }


def _home(patient: dict[str, Any]) -> dict[str, Any]:
    for address in patient.get("address") or []:
        if isinstance(address, dict):
            return address
    return {}


def _at(now: datetime, rng: random.Random, days: int) -> str:
    when = now - timedelta(days=rng.randint(0, days), minutes=rng.randint(0, 12 * 60))
    return when.replace(microsecond=0).isoformat()


def _measurements(person: pv.PersonView, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    plan = (
        ("body-weight", pv.WEIGHT, 0.8, 1, "kg"),
        ("systolic-bp", pv.SYSTOLIC, 7.0, 0, "mm[Hg]"),
        ("diastolic-bp", pv.DIASTOLIC, 5.0, 0, "mm[Hg]"),
        ("heart-rate", pv.HEART_RATE, 6.0, 0, "/min"),
    )
    for metric, code, spread, digits, unit in plan:
        recorded = person.latest(code)
        if recorded is None:
            continue
        for _ in range(rng.randint(1, 3)):
            value = round(recorded + rng.gauss(0, spread), digits)
            out.append(
                {
                    "kind": "measurement",
                    "metric": metric,
                    "value": value if digits else int(value),
                    "unit": unit,
                    "time": _at(now, rng, 60),
                }
            )
    if person.has_condition("diabetes", "prediabetes"):
        base = person.latest(pv.GLUCOSE) or (140.0 if person.has_condition("diabetes") else 110.0)
        for _ in range(rng.randint(2, 4)):
            out.append(
                {
                    "kind": "measurement",
                    "metric": "blood-glucose",
                    "value": int(max(70.0, base + rng.gauss(0, 18))),
                    "unit": "mg/dL",
                    "time": _at(now, rng, 30),
                }
            )
    return out


def _symptoms(person: pv.PersonView, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for words, texts, (low, high), snomed in _SYMPTOMS:
        if person.has_condition(*words):
            for text in rng.sample(texts, rng.randint(1, len(texts))):
                entry = {
                    "kind": "symptom",
                    "text": text,
                    "severity": rng.randint(low, high),
                    "time": _at(now, rng, 45),
                }
                if rng.random() < 0.5:
                    entry["snomed"] = snomed
                out.append(entry)
    return out


def _medications(person: pv.PersonView, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    current = person.current_meds()
    out: list[dict[str, Any]] = []
    stopped = rng.choice(current) if len(current) >= 2 or (current and rng.random() < 0.3) else None
    for med in current:
        entry: dict[str, Any] = {
            "kind": "medication",
            "name": _plain_name(med.display),
            "dose": _strength(med.display),
            "frequency": rng.choice(_FREQUENCIES),
            "taking": med is not stopped,
            "time": _at(now, rng, 30),
        }
        if med.code and rng.random() < 0.7:
            entry["rxnorm"] = med.code  # from the pharmacy label scan; some type the name only
        if med.authored is not None:
            entry["since"] = med.authored.date().isoformat()
        if med is stopped:
            entry["note"] = rng.choice(_STOP_REASONS)
        out.append({k: v for k, v in entry.items() if v is not None})
    if rng.random() < 0.8:
        name, rxnorm, dose, frequency = rng.choice(_OTC)
        otc: dict[str, Any] = {
            "kind": "medication",
            "name": name,
            "dose": dose,
            "frequency": frequency,
            "taking": True,
            "note": "over the counter",
            "time": _at(now, rng, 30),
        }
        if rxnorm:
            otc["rxnorm"] = rxnorm
        out.append(otc)
    return out


def _plain_name(display: str) -> str:
    """``"Simvastatin 10 MG Oral Tablet"`` -> ``"simvastatin 10 mg"``, as a patient writes it."""
    words = display.replace(" MG", " mg").split()
    for i, word in enumerate(words):
        if word in {"Oral", "Tablet", "Capsule", "Delayed", "Extended", "Chewable", "Injectable"}:
            words = words[:i]
            break
    return " ".join(words).lower() if words else display.lower()


def _strength(display: str) -> str | None:
    parts = display.split()
    for i, part in enumerate(parts[:-1]):
        if part.replace(".", "", 1).isdigit() and parts[i + 1].upper() == "MG":
            return f"{part} mg"
    return None


def _allergies(person: pv.PersonView, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for allergy in person.allergies:
        entry: dict[str, Any] = {
            "kind": "allergy",
            "substance": allergy.display.split(" (")[0],
            "reaction": rng.choice(("rash", "hives", "swelling", "upset stomach")),
            "severity": rng.choice(("mild", "moderate")),
            "time": _at(now, rng, 90),
        }
        if allergy.code and allergy.system and allergy.system.endswith("rxnorm"):
            entry["rxnorm"] = allergy.code
        elif allergy.code:
            entry["snomed"] = allergy.code
        out.append(entry)
    if rng.random() < 0.25:
        substance, reaction, severity, snomed = rng.choice(_ALLERGY_EXTRA)
        out.append(
            {
                "kind": "allergy",
                "substance": substance,
                "reaction": reaction,
                "severity": severity,
                "snomed": snomed,
                "time": _at(now, rng, 90),
            }
        )
    return out


def _preferences(
    patient: dict[str, Any], rng: random.Random, now: datetime
) -> list[dict[str, Any]]:
    language = "en"
    for comm in patient.get("communication") or []:
        codings = ((comm or {}).get("language") or {}).get("coding") or []
        if codings and isinstance(codings[0].get("code"), str):
            language = codings[0]["code"].split("-")[0]
            break
    prefs = [
        ("preferred_language", language),
        ("contact_channel", rng.choice(("email", "sms", "phone", "portal message"))),
    ]
    if rng.random() < 0.5:
        prefs.append(
            (
                "care_wishes",
                rng.choice(
                    (
                        "morning appointments please",
                        "I want my daughter informed about results",
                        "prefer a female doctor",
                        "no phone calls at work",
                    )
                ),
            )
        )
    return [
        {"kind": "preference", "key": key, "value": value, "time": _at(now, rng, 120)}
        for key, value in prefs
    ]
