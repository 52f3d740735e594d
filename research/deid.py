"""De-identification for the research data bank: pseudonyms, per-person date shifts and
k-anonymity by generalising quasi-identifiers (Sweeney 2002; HIPAA Safe Harbor 45 CFR
164.514(b)(2) for what counts as a direct identifier).

Pure functions, no I/O. The export (``research/export.py``) reads only quasi-identifiers and
coded facts from the graph — names, identifiers, contact details, addresses and free text are
never read — and this module makes what it read safe to release:

* each person gets a random pseudonym per export (never derived from a uid);
* all of a person's dates move by one random offset (intervals within the person are kept);
* the quasi-identifiers (birth year, gender, postal code, state) are generalised along a
  ladder, the attribute with the most distinct values first (Datafly, Sweeney 1998), until
  every equivalence class holds at least ``k`` persons, allowing at most ``max_suppressed``
  persons to be left out; those in classes still below ``k`` are suppressed and counted.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

#: Quasi-identifiers, in the order they appear in reports.
QUASI = ("birth_year", "gender", "zip3", "state")
#: Generalisation levels per quasi-identifier (level 0 is already coarse: Safe Harbor keeps
#: only the first three digits of a postal code).
LEVELS = {"birth_year": 6, "gender": 2, "zip3": 2, "state": 2}


def generalise(attribute: str, value: str | None, level: int) -> str:
    """One quasi-identifier at one level of its ladder ("*": suppressed)."""
    if value in (None, ""):
        return "*"
    assert value is not None
    if attribute == "birth_year":
        widths = (1, 5, 10, 20, 40)
        if level >= len(widths):
            return "*"
        start = int(value) - int(value) % widths[level]
        return str(start) if widths[level] == 1 else f"{start}-{start + widths[level] - 1}"
    return value if level == 0 else "*"


@dataclass(frozen=True, slots=True)
class Person:
    """One person's quasi-identifiers as read (before generalisation)."""

    key: str  # the person's uid, used only inside the export
    birth_year: str | None
    gender: str | None
    zip3: str | None
    state: str | None

    def value(self, attribute: str) -> str | None:
        return str(getattr(self, attribute)) if getattr(self, attribute) is not None else None


@dataclass
class Anonymised:
    """The outcome of k-anonymisation: who is released with which generalised values."""

    k: int
    levels: dict[str, int]
    released: dict[str, dict[str, str]]  # person key -> generalised quasi-identifiers
    suppressed: list[str]
    classes: int = 0
    achieved_k: int = 0
    steps: list[str] = field(default_factory=list)


def _classes(
    people: Sequence[Person], levels: Mapping[str, int]
) -> dict[tuple[str, ...], list[str]]:
    out: dict[tuple[str, ...], list[str]] = {}
    for p in people:
        key = tuple(generalise(a, p.value(a), levels[a]) for a in QUASI)
        out.setdefault(key, []).append(p.key)
    return out


def k_anonymise(
    people: Sequence[Person], k: int = 5, *, max_suppressed: int | None = None
) -> Anonymised:
    """Generalise until at most ``max_suppressed`` persons sit in classes smaller than ``k``
    (default: ``k`` persons, Datafly's rule), then suppress those."""
    if k < 1:
        raise ValueError("k must be at least 1")
    allowed = k if max_suppressed is None else max_suppressed
    levels = dict.fromkeys(QUASI, 0)
    steps: list[str] = []
    while True:
        classes = _classes(people, levels)
        small = sum(len(v) for v in classes.values() if len(v) < k)
        if small <= allowed:
            break
        open_attrs = [a for a in QUASI if levels[a] < LEVELS[a] - 1]
        if not open_attrs:
            break
        distinct = {
            a: len({generalise(a, p.value(a), levels[a]) for p in people}) for a in open_attrs
        }
        chosen = max(open_attrs, key=lambda a: (distinct[a], -QUASI.index(a)))
        levels[chosen] += 1
        steps.append(f"{chosen} -> level {levels[chosen]} ({small} persons in classes < {k})")
    classes = _classes(people, levels)
    released: dict[str, dict[str, str]] = {}
    suppressed: list[str] = []
    for key, members in classes.items():
        if len(members) < k:
            suppressed.extend(members)
            continue
        for m in members:
            released[m] = dict(zip(QUASI, key, strict=True))
    sizes = [len(v) for v in classes.values() if len(v) >= k]
    return Anonymised(
        k=k,
        levels=levels,
        released=released,
        suppressed=sorted(suppressed),
        classes=len(sizes),
        achieved_k=min(sizes) if sizes else 0,
        steps=steps,
    )


def new_pseudonym(taken: set[int]) -> int:
    """A random positive 31-bit id (OMOP person_id is an integer), unique within the export."""
    while True:
        value = secrets.randbelow(2**31 - 1) + 1
        if value not in taken:
            taken.add(value)
            return value


def new_shift(max_days: int) -> int:
    """A random non-zero offset in days within ±max_days."""
    if max_days < 1:
        raise ValueError("the date shift needs at least one day of range")
    while True:
        days = secrets.randbelow(2 * max_days + 1) - max_days
        if days:
            return days


def shifter(days: int) -> Callable[[Any], Any]:
    """A function moving a date, a datetime or an ISO string by ``days``."""
    delta = timedelta(days=days)

    def shift(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime | date):
            return value + delta
        text = str(value)
        try:
            parsed = datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text[:10])
        except ValueError:
            return None  # not a date: dropped rather than released unshifted
        return parsed + delta

    return shift


def birth_year(values: Sequence[Any]) -> str | None:
    """The most common birth year among a person's records (their registries may disagree)."""
    years = [str(v)[:4] for v in values if v and str(v)[:4].isdigit()]
    return Counter(years).most_common(1)[0][0] if years else None


def zip3(values: Sequence[Any]) -> str | None:
    """Safe Harbor: the first three digits of the most common postal code ("000" stands for
    the sparsely populated three-digit areas and for unknown)."""
    codes = [str(v).strip()[:3] for v in values if v and str(v).strip()[:3].isdigit()]
    return Counter(codes).most_common(1)[0][0] if codes else None
