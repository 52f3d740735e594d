"""De-identification without the graph: k-anonymity (Sweeney 2002, "k-anonymity: a model for
protecting privacy") by Datafly-style generalisation, HIPAA Safe Harbor (45 CFR
164.514(b)(2)) three-digit postal codes, per-person date shifts."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime

import pytest

from research.deid import (
    QUASI,
    Person,
    birth_year,
    generalise,
    k_anonymise,
    new_pseudonym,
    new_shift,
    shifter,
    zip3,
)


def _people(n: int, seed: int = 7) -> list[Person]:
    rng = random.Random(seed)
    return [
        Person(
            key=f"p{i}",
            birth_year=str(rng.randint(1930, 2020)),
            gender=rng.choice(["male", "female"]),
            zip3=rng.choice(["021", "024", "010", "000"]),
            state=rng.choice(["Massachusetts", "Massachusetts", "Rhode Island"]),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("k", [2, 5, 10])
def test_every_released_class_has_at_least_k_persons(k: int) -> None:
    people = _people(60)
    anon = k_anonymise(people, k)
    classes = Counter(tuple(v[a] for a in QUASI) for v in anon.released.values())
    assert classes
    assert min(classes.values()) >= k
    assert anon.achieved_k == min(classes.values())
    assert anon.classes == len(classes)
    # nobody is lost silently: released + suppressed = everyone
    assert len(anon.released) + len(anon.suppressed) == len(people)
    assert set(anon.released).isdisjoint(anon.suppressed)
    assert len(anon.suppressed) <= k  # Datafly: generalise until at most k are left out


def test_generalisation_ladder_and_larger_k_costs_more_detail() -> None:
    assert generalise("birth_year", "1987", 0) == "1987"
    assert generalise("birth_year", "1987", 1) == "1985-1989"
    assert generalise("birth_year", "1987", 3) == "1980-1999"
    assert generalise("birth_year", "1987", 4) == "1960-1999"
    assert generalise("birth_year", "1987", 5) == "*"
    assert generalise("zip3", "021", 1) == "*"
    assert generalise("gender", None, 0) == "*"
    low, high = k_anonymise(_people(60), 2), k_anonymise(_people(60), 10)
    assert sum(high.levels.values()) >= sum(low.levels.values())
    assert high.steps


def test_a_unique_outlier_is_suppressed_not_released() -> None:
    people = [Person(f"p{i}", "1980", "female", "021", "Massachusetts") for i in range(6)]
    people.append(Person("odd", "1931", "male", "999", "Alaska"))
    anon = k_anonymise(people, 5, max_suppressed=1)
    assert anon.suppressed == ["odd"]
    assert anon.achieved_k == 6
    assert anon.levels == dict.fromkeys(QUASI, 0)  # nothing generalised for one outlier


def test_date_shift_keeps_intervals_and_pseudonyms_are_random() -> None:
    days = new_shift(180)
    assert days != 0
    assert -180 <= days <= 180
    shift = shifter(days)
    a, b = datetime(2020, 1, 1, 8, tzinfo=UTC), datetime(2020, 3, 15, 9, tzinfo=UTC)
    assert shift(b) - shift(a) == b - a
    assert shift(a) != a
    assert shift("2020-01-01") == date(2020, 1, 1) + (shift(a) - a)
    assert shift("not a date") is None
    taken: set[int] = set()
    ids = {new_pseudonym(taken) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(0 < i < 2**31 for i in ids)


def test_quasi_identifier_readers() -> None:
    assert birth_year(["1980-02-01", "1980-02-01", "1981-02-01", None]) == "1980"
    assert zip3(["02134", "02134-1200", "x"]) == "021"
    assert zip3([None]) is None
