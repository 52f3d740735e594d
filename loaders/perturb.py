"""Make each clinic's copy of a person's demographics disagree the way real registries do.

:func:`~loaders.synthea.split_by_provider` gives every clinic an exact copy of the person's
demographics. Real registries never agree that well: front desks mistype names, spell them
the way they heard them, register a woman before or after her marriage, swap day and month,
do not ask for the national id, keep an old address. A master patient index has to be built
and measured against that, with the truth known. :func:`perturb_domains` rewrites the Patient
of every per-clinic bundle accordingly (nothing else in a bundle changes), can add twin
siblings (the hardest non-matches), and writes ``ground_truth_perturbations.json``: which
person each local record belongs to and what was done to it. Only tests and benchmarks read
that file; the loader never does.

Everything is a pure function of (the unperturbed split, seed, profile): random draws come
from a generator seeded with the seed and a stable hash of the bundle's path (and of the kind
of perturbation, so raising one probability keeps every other draw), never from file order.
"""

from __future__ import annotations

import copy
import hashlib
import random
import re
import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson

from loaders.errors import PerturbError
from loaders.synthea import (
    GROUND_TRUTH_NAME,
    LOCAL_ID_NAMESPACE,
    MRN_SYSTEM_PREFIX,
    NATIONAL_ID_SYSTEM,
    local_patient_id,
    national_id,
    write_atomic,
)

__all__ = [
    "DEFAULT_PROFILE",
    "PERTURBATION_TAG_SYSTEM",
    "PERTURBATION_TRUTH_NAME",
    "PerturbError",
    "PerturbProfile",
    "PerturbReport",
    "Perturbation",
    "perturb_domains",
]

JSON = dict[str, Any]

PERTURBATION_TRUTH_NAME = "ground_truth_perturbations.json"
#: ``meta.tag`` system on every Patient this module wrote; the code is the profile version.
PERTURBATION_TAG_SYSTEM = "urn:medshadow:perturbation"


class Perturbation(StrEnum):
    """The kinds of change logged per record (``changes[].kind`` in the ground truth)."""

    NAME_TYPO = "name_typo"
    NAME_VARIANT = "name_variant"
    MARRIED_NAME = "married_name"
    MAIDEN_NAME_LOST = "maiden_name_lost"
    BIRTH_DATE_SWAPPED = "birth_date_swapped"
    BIRTH_YEAR_OFF = "birth_year_off"
    NATIONAL_ID_MISSING = "national_id_missing"
    NATIONAL_ID_MISTYPED = "national_id_mistyped"
    ADDRESS_MOVED = "address_moved"
    GENDER_MISSING = "gender_missing"


@dataclass(frozen=True)
class PerturbProfile:
    """How often each disagreement happens. Defaults are orders of magnitude seen in practice.

    Probabilities are per domain record unless said otherwise. They are rough, deliberately
    conservative figures for manually keyed registration data, not measurements of one
    system; a benchmark should sweep them rather than trust them.
    """

    #: Written into every perturbed Patient's ``meta.tag``; change it when the defaults or the
    #: rules change, so a benchmark can tell which generation of noise it ran on.
    version: str = "1"
    #: One keying error (keyboard-neighbour substitution, deletion, transposition, insertion)
    #: in the family or a given name: a few per cent of front-desk registrations.
    name_typo: float = 0.04
    #: A spelling/transliteration variant (Catherine/Katherine, Mohammed/Muhammad, diacritics
    #: lost by an ASCII-only system, Jr. dropped, a double family name cut): about as common as
    #: typos, and much more common for names of non-English origin.
    name_variant: float = 0.05
    #: Per adult woman (not per record): her family name changed at a marriage between the
    #: registrations of two of her clinics, so earlier clinics hold the earlier name. Most US
    #: women who marry take the spouse's name and clinic registrations span decades.
    married_name: float = 0.2
    #: A record that should hold a maiden name (``use: "maiden"``) does not: many registration
    #: screens have no field for it, so it is lost about half the time.
    maiden_name_lost: float = 0.5
    #: Day and month swapped (DD/MM vs MM/DD), drawn only for records whose day is <= 12 (else
    #: the swapped date is impossible and would be caught at entry): about 1 in 50 of those.
    birth_date_swapped: float = 0.02
    #: Birth year off by one (a keying slip or an age-derived year): rare.
    birth_year_off: float = 0.005
    #: The national id (SSN) was not collected: many US providers no longer ask for it, so it
    #: is the most common gap; about a third of records.
    national_id_missing: float = 0.3
    #: The national id was collected but mistyped (one digit changed, or two adjacent digits
    #: swapped): about one record in a hundred. Drawn only where it was not missing.
    national_id_mistyped: float = 0.01
    #: The record holds another address than the person's current one (they moved between
    #: registrations; ~10 % of US residents move each year). The other addresses are other
    #: people's from the same run, a small history per person shared by their records.
    address_moved: float = 0.15
    #: Administrative gender not recorded: rare.
    gender_missing: float = 0.005
    #: Per person (not per record): add a synthetic twin sibling, registered at the same
    #: clinics. About 3 % of births are twins, i.e. ~1.5 % of people have a twin to add.
    twins: float = 0.015

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not self.version.strip():
            raise ValueError(f"version must be a non-empty string, got {self.version!r}")
        for item in fields(self):
            if item.name == "version":
                continue
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{item.name} must be a probability, got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{item.name} must be within [0, 1], got {value!r}")


DEFAULT_PROFILE = PerturbProfile()


@dataclass(frozen=True)
class PerturbReport:
    """What :func:`perturb_domains` did."""

    #: Records written by ``split_by_provider`` (twin records not included).
    records_seen: int
    #: Of those, how many now differ from the unperturbed copy (the tag aside).
    records_changed: int
    #: Times each :class:`Perturbation` was applied, over all records (twins' included).
    changes: dict[str, int] = field(default_factory=dict)
    #: Twin persons added, and the records written for them (one per clinic of the sibling).
    twins_added: int = 0
    twin_records: int = 0


def perturb_domains(
    split_dir: Path, *, seed: int, profile: PerturbProfile = DEFAULT_PROFILE
) -> PerturbReport:
    """Perturb, in place, the Patient of every per-clinic bundle under ``split_dir``.

    Why: record linkage must be developed and benchmarked on records that disagree the way
    real registries do, with the truth known; see :class:`PerturbProfile` for what changes.

    The result depends only on the unperturbed split, ``seed`` and ``profile``: a run always
    starts from the unperturbed Patients (kept as ``original`` in
    ``ground_truth_perturbations.json``; a bundle whose Patient carries the
    ``urn:medshadow:perturbation`` tag is restored from there first) and from no twins (those
    of an earlier run are deleted). So re-running is idempotent, byte for byte, and re-running
    with another seed or profile gives what a fresh split would, never a mix. Persons come
    from ``ground_truth.json`` of the split. The ground truth is written before the bundles, so
    a run that was interrupted can simply be repeated.

    Raises:
        FileNotFoundError: ``split_dir`` has no ``ground_truth.json`` (not a split).
        PerturbError: a listed bundle is missing or unreadable, or already perturbed with no
            unperturbed copy in the ground truth (re-run ``split_by_provider``).
    """
    split_dir = Path(split_dir)
    truth_path = split_dir / GROUND_TRUTH_NAME
    if not truth_path.is_file():
        raise FileNotFoundError(f"{truth_path} not found: run split_by_provider first")
    old_truth = _read_old_truth(split_dir / PERTURBATION_TRUTH_NAME)
    persons = _read_persons(split_dir, _read_json(truth_path), old_truth)
    pools = _Pools.collect(persons)

    twins = [twin for person in persons if (twin := _make_twin(person, pools, seed, profile))]
    everyone = persons + twins
    results: dict[str, _Result] = {}
    for person in everyone:
        plan = _plan(person, pools, seed, profile)
        for record in person.records:
            results[record.key] = _perturb_record(record, plan, seed, profile)

    # 1. no twin of an earlier run survives; 2. the truth (with every unperturbed Patient)
    # is safe before 3. any bundle changes.
    original_keys = {r.key for p in persons for r in p.records}
    for key, entry in old_truth.items():
        if "twin_of" in entry and key not in original_keys:
            (split_dir / f"{key}.json").unlink(missing_ok=True)
    truth: JSON = {}
    for key in sorted(results):
        record, result = results[key].record, results[key]
        item: JSON = {"person": record.person}
        if record.twin_of is not None:
            item["twin_of"] = record.twin_of
        item["changes"] = result.changes
        item["original"] = record.original
        truth[key] = item
    write_atomic(
        split_dir / PERTURBATION_TRUTH_NAME, orjson.dumps(truth, option=orjson.OPT_INDENT_2)
    )
    for person in everyone:
        for record in person.records:
            _write_record(split_dir, record, results[record.key].patient)

    counts: Counter[str] = Counter()
    for result in results.values():
        counts.update(change["kind"] for change in result.changes)
    return PerturbReport(
        records_seen=len(original_keys),
        records_changed=sum(
            1 for p in persons for r in p.records if results[r.key].patient_changed
        ),
        changes={kind.value: counts[kind.value] for kind in Perturbation},
        twins_added=len(twins),
        twin_records=sum(len(t.records) for t in twins),
    )


# --------------------------------------------------------------------------- reading


@dataclass
class _Record:
    key: str  # "<org key>/<local patient id>", the bundle path without ".json"
    org_key: str
    person: str
    original: JSON  # the unperturbed Patient
    #: The Patient's bundle entry without its resource (fullUrl, request), and the bundle
    #: type: what a twin's bundle is built from.
    entry: JSON
    bundle_type: str
    seen_until: date | None  # the last Encounter the clinic had: when it last saw the person
    twin_of: str | None = None


@dataclass
class _Person:
    pid: str
    records: list[_Record]
    twin_of: str | None = None

    @property
    def patient(self) -> JSON:
        """The person's true demographics: every unperturbed copy holds the same."""
        return self.records[0].original


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except OSError as err:
        raise PerturbError(path, f"cannot read: {err}") from err
    except orjson.JSONDecodeError as err:
        raise PerturbError(path, f"not valid JSON: {err}") from err


def _read_old_truth(path: Path) -> dict[str, JSON]:
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise PerturbError(path, "not a perturbation ground truth (record -> object)")
    return data


def _read_persons(split_dir: Path, split_truth: object, old: dict[str, JSON]) -> list[_Person]:
    if not isinstance(split_truth, dict):
        raise PerturbError(split_dir / GROUND_TRUTH_NAME, "not a split ground truth")
    persons: list[_Person] = []
    for pid in sorted(split_truth):
        records: list[_Record] = []
        for link in split_truth[pid]:
            org_key, local_id = str(link["org_key"]), str(link["local_patient_id"])
            records.append(_read_record(split_dir, org_key, local_id, pid, old))
        if records:
            persons.append(_Person(pid, sorted(records, key=lambda r: r.key)))
    return persons


def _read_record(
    split_dir: Path, org_key: str, local_id: str, pid: str, old: dict[str, JSON]
) -> _Record:
    key = f"{org_key}/{local_id}"
    path = split_dir / f"{key}.json"
    if not path.is_file():
        raise PerturbError(path, "listed in ground_truth.json but missing")
    bundle = _read_json(path)
    index = _patient_index(bundle, path)
    entry = bundle["entry"][index]
    patient: JSON = entry["resource"]
    if _is_tagged(patient):
        stored = old.get(key, {}).get("original")
        if not isinstance(stored, dict):
            raise PerturbError(
                path,
                f"already perturbed but {PERTURBATION_TRUTH_NAME} holds no unperturbed copy; "
                "re-run split_by_provider",
            )
        patient = stored
    seen = [
        when
        for e in bundle["entry"]
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "Encounter"
        and (when := _encounter_day(e["resource"])) is not None
    ]
    return _Record(
        key=key,
        org_key=org_key,
        person=pid,
        original=patient,
        entry={k: v for k, v in entry.items() if k != "resource"},
        bundle_type=str(bundle.get("type") or "transaction"),
        seen_until=max(seen, default=None),
    )


def _patient_index(bundle: object, path: Path) -> int:
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    if not isinstance(entries, list):
        raise PerturbError(path, "not a FHIR Bundle with entries")
    found = [
        i
        for i, e in enumerate(entries)
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "Patient"
    ]
    if len(found) != 1:
        raise PerturbError(path, f"expected exactly one Patient, found {len(found)}")
    return found[0]


def _is_tagged(patient: JSON) -> bool:
    meta = patient.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return isinstance(tags, list) and any(
        isinstance(t, dict) and t.get("system") == PERTURBATION_TAG_SYSTEM for t in tags
    )


def _encounter_day(encounter: JSON) -> date | None:
    period = encounter.get("period")
    if not isinstance(period, dict):
        return None
    return _parse_day(period.get("start")) or _parse_day(period.get("end"))


def _parse_day(value: object) -> date | None:
    if not isinstance(value, str) or not re.match(r"\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


# --------------------------------------------------------------------------- writing


def _write_record(split_dir: Path, record: _Record, patient: JSON) -> None:
    path = split_dir / f"{record.key}.json"
    if record.twin_of is None:
        bundle = _read_json(path)
        bundle["entry"][_patient_index(bundle, path)]["resource"] = patient
    else:
        entry = {**record.entry, "resource": patient}
        bundle = {"resourceType": "Bundle", "type": record.bundle_type, "entry": [entry]}
    write_atomic(path, orjson.dumps(bundle))


# --------------------------------------------------------------------------- randomness


def _rng(seed: int, *parts: str) -> random.Random:
    """A generator for one purpose (a bundle or person, and a kind of perturbation).

    Keying the stream by kind as well as by file means that raising one probability adds
    changes of that kind and leaves every other draw as it was.
    """
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return random.Random(seed ^ int.from_bytes(digest, "big"))  # noqa: S311 - test data


def _record_rng(seed: int, record: _Record, kind: str) -> random.Random:
    return _rng(seed, f"{record.key}.json", kind)


def _person_rng(seed: int, pid: str, kind: str) -> random.Random:
    return _rng(seed, "person", pid, kind)


# --------------------------------------------------------------------------- the run's pools


@dataclass(frozen=True)
class _Pools:
    """What the run itself offers to draw from: names, addresses, ids already in use."""

    given_by_gender: dict[str, list[str]]
    male_families: list[str]
    families: list[str]
    addresses: list[tuple[str, JSON]]  # (person id, home address)
    national_ids: set[str]
    mrns: dict[str, set[str]]  # org key -> MRNs in use

    @classmethod
    def collect(cls, persons: list[_Person]) -> _Pools:
        given: dict[str, set[str]] = {}
        male: set[str] = set()
        families: set[str] = set()
        addresses: list[tuple[str, JSON]] = []
        national_ids: set[str] = set()
        mrns: dict[str, set[str]] = {}
        for person in persons:
            patient = person.patient
            name = _official_name(patient)
            gender = patient.get("gender")
            if name is not None:
                family = name.get("family")
                if isinstance(family, str) and family:
                    families.add(family)
                    if gender == "male":
                        male.add(family)
                first = _givens(name)[:1]
                if first and isinstance(gender, str):
                    given.setdefault(gender, set()).add(first[0])
            home = _home_address(patient)
            if home is not None:
                addresses.append((person.pid, home))
            ssn = national_id(patient)
            if ssn:
                national_ids.add(ssn)
            for record in person.records:
                mrn = _mrn(record.original, record.org_key)
                if mrn is not None:
                    mrns.setdefault(record.org_key, set()).add(mrn)
        return cls(
            given_by_gender={g: sorted(names) for g, names in sorted(given.items())},
            male_families=sorted(male),
            families=sorted(families),
            addresses=addresses,
            national_ids=national_ids,
            mrns=mrns,
        )


# --------------------------------------------------------------------------- twins

_FALLBACK_GIVEN = {
    "female": ("Emma", "Olivia", "Ava", "Sophia", "Mia", "Amelia", "Harper", "Evelyn"),
    "male": ("Liam", "Noah", "Oliver", "Elijah", "James", "William", "Lucas", "Henry"),
}


def _make_twin(
    sibling: _Person, pools: _Pools, seed: int, profile: PerturbProfile
) -> _Person | None:
    """A twin sibling of ``sibling``: same birth date, family name and address, another person.

    Only persons still under their birth name get one (a married woman's twin would not share
    her married name, and sharing the family name is what makes twins hard to tell apart).
    The twin is of the same sex (the harder case, and most twin pairs), has another first
    name, national id, MRN and other identifiers, is alive, and is registered at every clinic
    of the sibling, with a record that holds only the Patient.
    """
    rng = _person_rng(seed, sibling.pid, "twin")
    if rng.random() >= profile.twins:
        return None
    patient = sibling.patient
    name = _official_name(patient)
    gender = patient.get("gender")
    if (
        name is None
        or _maiden_names(patient)
        or not isinstance(name.get("family"), str)
        or not _givens(name)
        or _parse_day(patient.get("birthDate")) is None
    ):
        return None
    twin_id = str(uuid.uuid5(LOCAL_ID_NAMESPACE, f"twin|{sibling.pid}"))
    taken = {_fold(g).casefold() for g in _givens(name)}
    taken |= {_fold(v).casefold() for g in _givens(name) for v in _table_variants(g)}
    pool = pools.given_by_gender.get(str(gender), [])
    fallback = _FALLBACK_GIVEN.get(str(gender), _FALLBACK_GIVEN["female"])
    candidates = [g for g in pool if _fold(g).casefold() not in taken] or [
        g for g in fallback if _fold(g).casefold() not in taken
    ]
    given = rng.choice(sorted(set(candidates)))
    ssn = _new_national_id(rng, pools.national_ids)
    email_number = rng.randint(1, 999)
    other_ids: dict[str, str] = {}
    for ident in patient.get("identifier") or []:
        system = ident.get("system") if isinstance(ident, dict) else None
        value = ident.get("value") if isinstance(ident, dict) else None
        if (
            isinstance(system, str)
            and isinstance(value, str)
            and system != NATIONAL_ID_SYSTEM
            and not system.startswith(MRN_SYSTEM_PREFIX)
        ):
            other_ids[system] = "".join(str(rng.randrange(10)) if c.isdigit() else c for c in value)

    records: list[_Record] = []
    for record in sibling.records:
        local_id = local_patient_id(record.org_key, twin_id)
        twin = copy.deepcopy(record.original)
        twin["id"] = local_id
        for key in [k for k in twin if k.startswith("deceased")]:
            del twin[key]
        twin_name = _official_name(twin)
        assert twin_name is not None  # a copy of ``name``
        twin_name["given"] = [given]
        twin_name.pop("suffix", None)
        twin["name"] = [twin_name]
        mrn_digits = len(_mrn(record.original, record.org_key) or "") or 9
        mrn = _new_mrn(record.org_key, twin_id, mrn_digits, pools.mrns)
        for ident in twin.get("identifier") or []:
            if not isinstance(ident, dict):
                continue
            system = ident.get("system")
            if system == NATIONAL_ID_SYSTEM:
                ident["value"] = ssn
            elif system == f"{MRN_SYSTEM_PREFIX}{record.org_key}":
                ident["value"] = mrn
            elif system in other_ids:
                ident["value"] = other_ids[system]
        for telecom in twin.get("telecom") or []:
            if isinstance(telecom, dict) and telecom.get("system") == "email":
                value = telecom.get("value")
                domain = value.rsplit("@", 1)[1] if isinstance(value, str) and "@" in value else ""
                local = f"{_email_part(given)}.{_email_part(twin_name['family'])}{email_number}"
                telecom["value"] = f"{local}@{domain or 'example.com'}"
        entry = dict(record.entry)
        entry["fullUrl"] = f"urn:uuid:{local_id}"
        request = entry.get("request")
        if isinstance(request, dict) and isinstance(request.get("url"), str):
            sibling_local = record.key.rsplit("/", 1)[1]
            entry["request"] = {**request, "url": request["url"].replace(sibling_local, local_id)}
        records.append(
            _Record(
                key=f"{record.org_key}/{local_id}",
                org_key=record.org_key,
                person=twin_id,
                original=twin,
                entry=entry,
                bundle_type=record.bundle_type,
                seen_until=record.seen_until,
                twin_of=sibling.pid,
            )
        )
    return _Person(twin_id, sorted(records, key=lambda r: r.key), twin_of=sibling.pid)


def _new_national_id(rng: random.Random, taken: set[str]) -> str:
    """An SSN in Synthea's never-issued 999 area, unused in the run."""
    while True:
        value = f"999-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"
        if value not in taken:
            taken.add(value)
            return value


def _new_mrn(org_key: str, person: str, digits: int, taken: dict[str, set[str]]) -> str:
    """A local MRN for a twin, built like the split's and unique within the clinic."""
    in_use = taken.setdefault(org_key, set())
    attempt = 0
    while True:
        digest = uuid.uuid5(LOCAL_ID_NAMESPACE, f"mrn|{org_key}|{person}|{attempt}")
        mrn = f"{digest.int % 10**digits:0{digits}d}"
        if mrn not in in_use:
            in_use.add(mrn)
            return mrn
        attempt += 1


def _email_part(text: object) -> str:
    return re.sub(r"[^a-z0-9]+", "", _fold(str(text)).lower()) or "x"


# --------------------------------------------------------------------------- per-person plans


@dataclass(frozen=True)
class _Marriage:
    """A marriage between registrations: clinics that last saw her by ``married_after`` hold
    ``earlier`` as family name, later ones ``later``. ``truth_is_later``: the person's true
    (unperturbed) name is the later one (Synthea married her; earlier clinics are stale);
    otherwise she married after Synthea's record and later clinics hold a new name."""

    married_after: date
    earlier: str
    later: str
    truth_is_later: bool


@dataclass(frozen=True)
class _Plan:
    marriage: _Marriage | None
    #: Other addresses the person had (earlier or later): records that "moved" hold one.
    addresses: tuple[JSON, ...]


def _plan(person: _Person, pools: _Pools, seed: int, profile: PerturbProfile) -> _Plan:
    """Decisions shared by all of a person's records, so their clinics disagree coherently."""
    return _Plan(
        marriage=_plan_marriage(person, pools, seed, profile),
        addresses=_plan_addresses(person, pools, seed),
    )


def _plan_marriage(
    person: _Person, pools: _Pools, seed: int, profile: PerturbProfile
) -> _Marriage | None:
    patient = person.patient
    birth = _parse_day(patient.get("birthDate"))
    name = _official_name(patient)
    family = name.get("family") if name is not None else None
    if patient.get("gender") != "female" or birth is None or not isinstance(family, str):
        return None
    adult = _add_years(birth, 18)
    dates = sorted({r.seen_until for r in person.records if r.seen_until and r.seen_until >= adult})
    if not dates:
        return None
    rng = _person_rng(seed, person.pid, Perturbation.MARRIED_NAME)
    if rng.random() >= profile.married_name:
        return None
    maiden = _maiden_names(patient)
    if maiden:
        # Synthea married her: the clinics up to some visit registered her before.
        cut = dates[rng.randrange(len(dates) - 1)] if len(dates) > 1 else dates[0]
        return _Marriage(cut, earlier=maiden[0], later=family, truth_is_later=True)
    others = [f for f in pools.male_families if f != family] or [
        f for f in pools.families if f != family
    ]
    if not others:
        return None
    new_family = rng.choice(others)
    cut = dates[rng.randrange(len(dates) - 1)] if len(dates) > 1 else adult - timedelta(days=1)
    return _Marriage(cut, earlier=family, later=new_family, truth_is_later=False)


def _plan_addresses(person: _Person, pools: _Pools, seed: int) -> tuple[JSON, ...]:
    own = _home_address(person.patient)
    own_key = _address_key(own) if own is not None else None
    candidates: list[JSON] = []
    seen: set[tuple[str, ...]] = set()
    for pid, address in pools.addresses:
        key = _address_key(address)
        if pid in {person.pid, person.twin_of} or key == own_key or key in seen:
            continue
        seen.add(key)
        candidates.append(address)
    rng = _person_rng(seed, person.pid, Perturbation.ADDRESS_MOVED)
    return tuple(rng.sample(candidates, min(2, len(candidates))))


# --------------------------------------------------------------------------- one record


@dataclass
class _Result:
    record: _Record
    patient: JSON
    changes: list[JSON]
    patient_changed: bool


def _perturb_record(record: _Record, plan: _Plan, seed: int, profile: PerturbProfile) -> _Result:
    """The record's perturbed, tagged Patient and its change log."""
    patient = copy.deepcopy(record.original)

    def draw(kind: Perturbation) -> random.Random:
        return _record_rng(seed, record, kind)

    changes = [
        *_marriage(patient, record, plan.marriage, draw(Perturbation.MAIDEN_NAME_LOST), profile),
        *_name_variant(patient, draw(Perturbation.NAME_VARIANT), profile.name_variant),
        *_name_typo(patient, draw(Perturbation.NAME_TYPO), profile.name_typo),
        *_birth_date(
            patient,
            draw(Perturbation.BIRTH_DATE_SWAPPED),
            draw(Perturbation.BIRTH_YEAR_OFF),
            profile,
        ),
        *_national_id_noise(
            patient,
            draw(Perturbation.NATIONAL_ID_MISSING),
            draw(Perturbation.NATIONAL_ID_MISTYPED),
            profile,
        ),
        *_moved(patient, plan.addresses, draw(Perturbation.ADDRESS_MOVED), profile.address_moved),
        *_gender_missing(patient, draw(Perturbation.GENDER_MISSING), profile.gender_missing),
    ]
    changed = patient != record.original
    _tag(patient, profile.version)
    return _Result(record, patient, changes, changed)


def _change(kind: Perturbation, **details: Any) -> JSON:
    return {"kind": kind.value, **details}


def _marriage(
    patient: JSON,
    record: _Record,
    marriage: _Marriage | None,
    rng: random.Random,
    profile: PerturbProfile,
) -> list[JSON]:
    """The family name this clinic holds, given when it last saw her; maiden name kept or not."""
    maiden_lost = rng.random() < profile.maiden_name_lost
    name = _official_name(patient)
    if name is None:
        return []
    if marriage is not None:
        after = record.seen_until is None or record.seen_until > marriage.married_after
        details = {
            "field": "family",
            "from": marriage.later if marriage.truth_is_later else marriage.earlier,
            "to": marriage.earlier if marriage.truth_is_later else marriage.later,
            "married_after": marriage.married_after.isoformat(),
        }
        if marriage.truth_is_later and not after:
            name["family"] = marriage.earlier
            patient["name"] = [n for n in patient["name"] if not _is_maiden(n)]
            return [_change(Perturbation.MARRIED_NAME, **details, holds="name before marriage")]
        if not marriage.truth_is_later and after:
            name["family"] = marriage.later
            if not maiden_lost:
                maiden: JSON = {"use": "maiden", "family": marriage.earlier, "given": _givens(name)}
                patient["name"].append(maiden)
            return [
                _change(
                    Perturbation.MARRIED_NAME,
                    **details,
                    holds="name after marriage",
                    maiden_kept=not maiden_lost,
                )
            ]
    lost = _maiden_names(patient)
    if not maiden_lost or not lost:
        return []
    patient["name"] = [n for n in patient["name"] if not _is_maiden(n)]
    return [_change(Perturbation.MAIDEN_NAME_LOST, field="name[maiden]", **{"from": lost[0]})]


def _is_maiden(name: object) -> bool:
    return isinstance(name, dict) and name.get("use") == "maiden"


def _name_variant(patient: JSON, rng: random.Random, probability: float) -> list[JSON]:
    """Another accepted spelling of one name part (the kinds in :func:`_variants`)."""
    if rng.random() >= probability:
        return []
    name = _official_name(patient)
    if name is None:
        return []
    candidates: list[tuple[float, str, str, str | None]] = [
        (weight, label, rule, new)
        for label, text in _name_parts(name)
        for rule, new, weight in _variants(text)
    ]
    suffixes = [s for s in name.get("suffix") or [] if isinstance(s, str)]
    if suffixes:
        candidates.append((3.0, "suffix", "suffix_dropped", None))
    if not candidates:
        return []
    _, label, rule, new = rng.choices(candidates, weights=[c[0] for c in candidates])[0]
    if new is None:
        name.pop("suffix")
        old = " ".join(suffixes)
    else:
        old = _set_part(name, label, new)
    return [_change(Perturbation.NAME_VARIANT, field=label, rule=rule, **{"from": old, "to": new})]


def _name_typo(patient: JSON, rng: random.Random, probability: float) -> list[JSON]:
    """One keying error in one name part."""
    if rng.random() >= probability:
        return []
    name = _official_name(patient)
    if name is None:
        return []
    parts = [(label, text) for label, text in _name_parts(name) if len(text) >= 2]
    if not parts:
        return []
    label, text = rng.choice(parts)
    made = _typo(text, rng)
    if made is None:
        return []
    new, edit = made
    _set_part(name, label, new)
    return [_change(Perturbation.NAME_TYPO, field=label, edit=edit, **{"from": text, "to": new})]


def _birth_date(
    patient: JSON, swap_rng: random.Random, year_rng: random.Random, profile: PerturbProfile
) -> list[JSON]:
    """Day and month swapped (only where the result is a valid, different date); year +-1."""
    swap = swap_rng.random() < profile.birth_date_swapped
    off = year_rng.random() < profile.birth_year_off
    text = patient.get("birthDate")
    born = _parse_day(text) if isinstance(text, str) and len(text) == 10 else None
    if born is None or not (swap or off):
        return []
    changes: list[JSON] = []
    if swap and born.day <= 12 and born.day != born.month:
        swapped = date(born.year, born.day, born.month)
        changes.append(
            _change(
                Perturbation.BIRTH_DATE_SWAPPED,
                field="birthDate",
                **{"from": born.isoformat(), "to": swapped.isoformat()},
            )
        )
        born = swapped
    if off:
        shifted = _add_years(born, year_rng.choice((-1, 1)))
        changes.append(
            _change(
                Perturbation.BIRTH_YEAR_OFF,
                field="birthDate",
                **{"from": born.isoformat(), "to": shifted.isoformat()},
            )
        )
        born = shifted
    if changes:
        patient["birthDate"] = born.isoformat()
    return changes


def _national_id_noise(
    patient: JSON, missing_rng: random.Random, typo_rng: random.Random, profile: PerturbProfile
) -> list[JSON]:
    """The national id not collected, or collected with one keying error."""
    missing = missing_rng.random() < profile.national_id_missing
    identifiers = patient.get("identifier")
    if not isinstance(identifiers, list):
        return []
    index = next(
        (
            i
            for i, ident in enumerate(identifiers)
            if isinstance(ident, dict)
            and ident.get("system") == NATIONAL_ID_SYSTEM
            and isinstance(ident.get("value"), str)
        ),
        None,
    )
    if index is None:
        return []
    value: str = identifiers[index]["value"]
    if missing:
        patient["identifier"] = [x for i, x in enumerate(identifiers) if i != index]
        return [
            _change(Perturbation.NATIONAL_ID_MISSING, field="identifier[ssn]", **{"from": value})
        ]
    if typo_rng.random() >= profile.national_id_mistyped:
        return []
    made = _mistype_digits(value, typo_rng)
    if made is None:
        return []
    new, edit = made
    identifiers[index]["value"] = new
    return [
        _change(
            Perturbation.NATIONAL_ID_MISTYPED,
            field="identifier[ssn]",
            edit=edit,
            **{"from": value, "to": new},
        )
    ]


def _moved(
    patient: JSON, addresses: tuple[JSON, ...], rng: random.Random, probability: float
) -> list[JSON]:
    """The clinic holds one of the person's other addresses."""
    if rng.random() >= probability or not addresses:
        return []
    moved = copy.deepcopy(rng.choice(addresses))
    current = _home_address(patient)
    listed = patient.get("address")
    if current is None or not isinstance(listed, list):
        patient["address"] = [moved]
    else:
        patient["address"] = [moved if a is current else a for a in listed]
    return [
        _change(
            Perturbation.ADDRESS_MOVED,
            field="address",
            **{"from": _address_text(current), "to": _address_text(moved)},
        )
    ]


def _gender_missing(patient: JSON, rng: random.Random, probability: float) -> list[JSON]:
    if rng.random() >= probability or "gender" not in patient:
        return []
    return [_change(Perturbation.GENDER_MISSING, field="gender", **{"from": patient.pop("gender")})]


def _tag(patient: JSON, version: str) -> None:
    meta = patient.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    tags = [
        t
        for t in meta.get("tag") or []
        if not (isinstance(t, dict) and t.get("system") == PERTURBATION_TAG_SYSTEM)
    ]
    tags.append({"system": PERTURBATION_TAG_SYSTEM, "code": version})
    meta["tag"] = tags
    patient["meta"] = meta


# --------------------------------------------------------------------------- edits

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """QWERTY neighbours; each row sits half a key right of the one above."""
    neighbours: dict[str, str] = {}
    for r, row in enumerate(_KEYBOARD_ROWS):
        for i, key in enumerate(row):
            near = [row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)]
            if r > 0:
                above = _KEYBOARD_ROWS[r - 1]
                near += [above[j] for j in (i, i + 1) if 0 <= j < len(above)]
            if r + 1 < len(_KEYBOARD_ROWS):
                below = _KEYBOARD_ROWS[r + 1]
                near += [below[j] for j in (i - 1, i) if 0 <= j < len(below)]
            neighbours[key] = "".join(sorted(near))
    return neighbours


_NEIGHBOURS = _keyboard_neighbours()


def _typo(word: str, rng: random.Random) -> tuple[str, str] | None:
    """One keying error; never in the first letter (the one typed with most care)."""
    keyed = [i for i in range(1, len(word)) if word[i].lower() in _NEIGHBOURS]
    swappable = [i for i in range(1, len(word) - 1) if word[i].lower() != word[i + 1].lower()]
    slips = [i for i in range(len(word)) if word[i].lower() in _NEIGHBOURS]
    edits = [
        edit
        for edit, possible in (
            ("substitution", keyed),
            ("deletion", len(word) >= 3),
            ("transposition", swappable),
            ("insertion", slips),
        )
        if possible
    ]
    if not edits:
        return None
    edit = rng.choice(edits)
    chars = list(word)
    if edit == "substitution":
        i = rng.choice(keyed)
        chars[i] = _case_like(rng.choice(_NEIGHBOURS[word[i].lower()]), word[i])
    elif edit == "deletion":
        del chars[rng.randrange(1, len(word))]
    elif edit == "transposition":
        i = rng.choice(swappable)
        chars[i], chars[i + 1] = _case_like(word[i + 1], word[i]), _case_like(word[i], word[i + 1])
    else:  # a neighbouring key (or the same one) pressed too, after the intended one
        i = rng.choice(slips)
        typed = rng.choice(_NEIGHBOURS[word[i].lower()] + word[i].lower())
        chars.insert(i + 1, typed.upper() if word.isupper() else typed)
    return "".join(chars), edit


def _case_like(char: str, model: str) -> str:
    return char.upper() if model.isupper() else char.lower()


def _mistype_digits(value: str, rng: random.Random) -> tuple[str, str] | None:
    """One digit changed, or two adjacent digits (hyphens aside) swapped."""
    digits = [i for i, c in enumerate(value) if c.isdigit()]
    if not digits:
        return None
    pairs = [(a, b) for a, b in pairwise(digits) if value[a] != value[b]]
    edit = rng.choice(("digit_changed", "digits_swapped")) if pairs else "digit_changed"
    chars = list(value)
    if edit == "digit_changed":
        i = rng.choice(digits)
        chars[i] = rng.choice([d for d in "0123456789" if d != value[i]])
    else:
        a, b = rng.choice(pairs)
        chars[a], chars[b] = chars[b], chars[a]
    return "".join(chars), edit


# --------------------------------------------------------------------------- name variants

#: Spellings of one name that registries hold interchangeably (transliterations, anglicised
#: and traditional spellings). Small on purpose: the rules below cover the long tail.
_VARIANT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("Catherine", "Katherine", "Kathryn", "Catharine", "Katharine"),
    ("Mohammed", "Muhammad", "Mohamed", "Mohammad", "Muhammed"),
    ("Ahmed", "Ahmad"),
    ("Yusuf", "Youssef", "Yousef"),
    ("Alexander", "Aleksandr", "Aleksander", "Alexandre"),
    ("Sergei", "Sergey"),
    ("Dmitri", "Dmitry", "Dmitrii"),
    ("Yuri", "Yury", "Iurii"),
    ("Natalia", "Natalya", "Nataliya"),
    ("Tatiana", "Tatyana"),
    ("Stephen", "Steven"),
    ("Geoffrey", "Jeffrey"),
    ("Sean", "Shaun", "Shawn"),
    ("Ann", "Anne"),
    ("Sara", "Sarah"),
    ("Philip", "Phillip"),
    ("Alan", "Allan", "Allen"),
    ("Brian", "Bryan"),
    ("Eric", "Erik"),
    ("Carl", "Karl"),
    ("Christopher", "Kristopher"),
    ("Jacqueline", "Jacquelyn", "Jaclyn"),
    ("Megan", "Meghan"),
    ("Rachel", "Rachael"),
    ("Teresa", "Theresa"),
    ("Isabel", "Isabelle", "Isobel"),
    ("Nicholas", "Nicolas", "Nikolas"),
    ("Zoe", "Zoey"),
    ("Smith", "Smyth"),
    ("Reid", "Reed", "Read"),
    ("Thompson", "Thomson"),
    ("Meyer", "Meier", "Mayer", "Maier"),
    ("Schmidt", "Schmitt"),
    ("McDonald", "MacDonald"),
    ("Zhang", "Chang"),
    ("Zhou", "Chou"),
    ("Wang", "Wong"),
    ("Li", "Lee"),
)
_VARIANTS: dict[str, tuple[str, ...]] = {
    spelling.casefold(): tuple(v for v in group if v.casefold() != spelling.casefold())
    for group in _VARIANT_GROUPS
    for spelling in group
}
#: Rule-based spelling variants: (rule, pattern, replacement), applied once, case kept.
_SPELLING_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (rule, re.compile(pattern, re.IGNORECASE), replacement)
    for rule, pattern, replacement in (
        ("ph_as_f", r"ph", "f"),
        ("ck_as_k", r"ck", "k"),
        ("c_as_k", r"\bc(?=[aou])", "k"),
        ("k_as_c", r"\bk(?=[aou])", "c"),
        ("th_as_t", r"th", "t"),
        ("double_letter_single", r"([bdfglmnprstz])\1", r"\1"),
        ("single_letter_doubled", r"(?<=[aeiou])([lnrt])(?=[aeiouy])", r"\1\1"),
        ("y_as_ie", r"(?<=[^aeiou])y\b", "ie"),
        ("ie_as_y", r"ie\b", "y"),
        ("ee_as_ie", r"ee\b", "ie"),
        ("y_as_i", r"(?<=\w)y(?=\w)", "i"),
        ("ou_as_u", r"ou", "u"),
        ("sch_as_sh", r"sch", "sh"),
        ("ks_as_x", r"ks", "x"),
        ("x_as_ks", r"x", "ks"),
        ("ei_as_ie", r"ei", "ie"),
        ("final_h_dropped", r"(?<=[aeiou])h\b", ""),
    )
)
_SUFFIX_IN_TEXT = re.compile(r"(?:,\s*|\s+)(?:jr|sr|ii|iii|iv)\.?$", re.IGNORECASE)
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})
_FOLD_EXTRA = str.maketrans(
    {
        "ß": "ss",
        "ø": "o",
        "Ø": "O",
        "æ": "ae",
        "Æ": "Ae",
        "œ": "oe",
        "Œ": "Oe",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ı": "i",
    }
)


def _variants(text: str) -> list[tuple[str, str, float]]:
    """Other spellings of one name part as (rule, spelling, weight); likelier kinds weigh more.

    Diacritics lost (an ASCII-only system) is by far the commonest where it can happen; then
    a known alternative spelling, a dropped generational suffix, a double name cut to its
    first part; the generic spelling rules fill in with a low weight each.
    """
    out: list[tuple[str, str, float]] = []
    folded = _fold(text)
    if folded != text:
        out.append(("diacritics_stripped", folded, 6.0))
    if text.translate(_UMLAUTS) != text:
        out.append(("umlaut_transliterated", text.translate(_UMLAUTS), 2.0))
    table = _table_variants(text)
    out += [("spelling_table", _case_of(v, text), 3.0 / len(table)) for v in table]
    suffix = _SUFFIX_IN_TEXT.search(text)
    if suffix is not None and suffix.start() > 0:
        out.append(("suffix_dropped", text[: suffix.start()], 3.0))
    if "-" in text.strip("-"):
        out.append(("double_name_split", text.split("-", 1)[0], 2.0))
        out.append(("double_name_unhyphenated", text.replace("-", " "), 1.0))
    for rule, pattern, replacement in _SPELLING_RULES:
        out.append((rule, _sub_keeping_case(pattern, replacement, text), 0.5))
    return [(rule, new, w) for rule, new, w in out if len(new.strip()) >= 2 and new != text]


def _table_variants(text: str) -> tuple[str, ...]:
    return _VARIANTS.get(text.casefold(), ())


def _case_of(variant: str, model: str) -> str:
    if model.isupper() and len(model) > 1:
        return variant.upper()
    return variant.lower() if model.islower() else variant


def _sub_keeping_case(pattern: re.Pattern[str], replacement: str, text: str) -> str:
    def fix(match: re.Match[str]) -> str:
        out = match.expand(replacement)
        if text.isupper():
            return out.upper()
        return out[:1].upper() + out[1:] if match.group(0)[:1].isupper() else out

    return pattern.sub(fix, text, count=1)


def _fold(text: str) -> str:
    """``text`` as an ASCII-only registration system stores it: diacritics stripped."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD_EXTRA))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# --------------------------------------------------------------------------- FHIR helpers


def _official_name(patient: JSON) -> JSON | None:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    for name in names:
        if name.get("use") == "official":
            return name
    return next((n for n in names if n.get("use") not in {"maiden", "old"}), None)


def _maiden_names(patient: JSON) -> list[str]:
    return [
        n["family"]
        for n in patient.get("name") or []
        if _is_maiden(n) and isinstance(n.get("family"), str)
    ]


def _givens(name: JSON) -> list[str]:
    return [g for g in name.get("given") or [] if isinstance(g, str)]


def _name_parts(name: JSON) -> list[tuple[str, str]]:
    """(label, text) of the family name and each given name."""
    parts: list[tuple[str, str]] = []
    family = name.get("family")
    if isinstance(family, str) and family:
        parts.append(("family", family))
    for i, given in enumerate(name.get("given") or []):
        if isinstance(given, str) and given:
            parts.append((f"given[{i}]", given))
    return parts


def _set_part(name: JSON, label: str, value: str) -> str:
    """Set a part named by :func:`_name_parts`; returns the old text."""
    if label == "family":
        old: str = name["family"]
        name["family"] = value
        return old
    i = int(label.removeprefix("given[").removesuffix("]"))
    old = name["given"][i]
    name["given"][i] = value
    return old


def _home_address(patient: JSON) -> JSON | None:
    addresses = [a for a in patient.get("address") or [] if isinstance(a, dict)]
    home = next((a for a in addresses if a.get("use") == "home"), None)
    return home if home is not None or not addresses else addresses[0]


def _address_key(address: JSON) -> tuple[str, ...]:
    lines = address.get("line") or []
    return (
        *(str(line) for line in lines),
        str(address.get("city")),
        str(address.get("postalCode")),
    )


def _address_text(address: JSON | None) -> str | None:
    if address is None:
        return None
    parts = [*(address.get("line") or []), address.get("city"), address.get("state")]
    parts.append(address.get("postalCode"))
    return ", ".join(str(p) for p in parts if p)


def _mrn(patient: JSON, org_key: str) -> str | None:
    for ident in patient.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == f"{MRN_SYSTEM_PREFIX}{org_key}":
            value = ident.get("value")
            return value if isinstance(value, str) else None
    return None


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February into a common year
        return day.replace(year=day.year + years, day=28)
