"""Care gaps (issue 5 §3): rules kept as data (``shadow/data/care_gaps.yaml``), evaluated on the
graph, each open gap a ``CareGap`` with its due date and the rule that raised it.

A rule names a population (living persons with conditions, by code and everything under it in
the code system's hierarchy; an age range; a sex) and what it requires (a fact kind and codes)
at least every N months. :func:`evaluate` finds, per rule, each person of the population and
the date of their last required fact up to ``as_of``; a person with none in the window gets an
open gap due N months after the last one (at ``as_of`` when there never was one).
Re-evaluating is idempotent; a gap whose requirement is met since is closed, not deleted (it
stays in the person's history).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from graph import caregaps as g
from graph.connection import Driver
from shadow.rulesfile import load_rule_list
from shadow.times import day_of
from terminology.sources import system_url

RULES_PATH = Path(__file__).with_name("data") / "care_gaps.yaml"
FactKind = Literal["Observation", "Immunization", "Procedure", "Condition", "MedicationRequest"]


class CareGapRuleError(ValueError):
    """A rules file that cannot be used; names the file and the rule."""


def _code(value: str) -> str:
    system, sep, code = value.partition("|")
    if not sep or not system or not code:
        raise ValueError(f"{value!r} is not 'system|code'")
    return f"{system_url(system)}|{code}"


class _Age(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class _Population(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conditions: list[str] = Field(default_factory=list)
    age: _Age = Field(default_factory=_Age)
    sex: Literal["male", "female"] | None = None

    @field_validator("conditions")
    @classmethod
    def _codes(cls, values: list[str]) -> list[str]:
        return [_code(v) for v in values]


class _Requires(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: FactKind
    codes: list[str] = Field(min_length=1)

    @field_validator("codes")
    @classmethod
    def _codes(cls, values: list[str]) -> list[str]:
        return [_code(v) for v in values]


class CareGapRule(BaseModel):
    """One rule of the rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    population: _Population
    requires: _Requires
    every_months: int = Field(ge=1, le=600)
    reference: str


def load_rules(path: Path = RULES_PATH) -> list[CareGapRule]:
    """Parse and check a rules file; every bad rule is named (by id or position) in one error."""
    return load_rule_list(path, CareGapRule.model_validate, CareGapRuleError, lambda r: r.id)


@cache
def default_rules() -> tuple[CareGapRule, ...]:
    return tuple(load_rules())


def add_months(day: date, months: int) -> date:
    """``day`` plus whole months, clamped to the month's last day (31 Aug + 6 → 28/29 Feb)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True, slots=True)
class Gap:
    """An open care gap of one person under one rule."""

    rule: str
    person: str
    title: str
    due: date
    last_done: date | None
    reference: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    as_of: date
    #: rule id -> persons in its population
    population: dict[str, int]
    gaps: list[Gap]
    opened: int
    closed: int


def gaps_for(rule: CareGapRule, rows: Sequence[dict[str, Any]], as_of: date) -> list[Gap]:
    """The open gaps among a rule's population rows (``person``, ``last`` date or None)."""
    out = []
    for row in rows:
        last = day_of(row.get("last"))
        due = add_months(last, rule.every_months) if last else as_of
        if due <= as_of:
            out.append(Gap(rule.id, row["person"], rule.title, due, last, rule.reference))
    return out


def evaluate(
    driver: Driver,
    as_of: date,
    rules: Sequence[CareGapRule] | None = None,
    *,
    database: str | None = None,
) -> Evaluation:
    """Evaluate every rule on the graph as of ``as_of``; store open gaps, close met ones."""
    rules = list(rules if rules is not None else default_rules())
    population: dict[str, int] = {}
    gaps: list[Gap] = []
    for rule in rules:
        p = rule.population
        rows = g.population_last_done(
            driver,
            conditions=p.conditions,
            min_age=p.age.min,
            max_age=p.age.max,
            sex=p.sex,
            kind=rule.requires.kind,
            codes=rule.requires.codes,
            as_of=as_of,
            database=database,
        )
        population[rule.id] = len(rows)
        gaps += gaps_for(rule, rows, as_of)
    opened, closed = g.store_gaps(
        driver,
        [
            {
                "rule": gap.rule,
                "person": gap.person,
                "title": gap.title,
                "due": gap.due,
                "lastDone": gap.last_done,
                "reference": gap.reference,
            }
            for gap in gaps
        ],
        rules=[r.id for r in rules],
        as_of=as_of,
        database=database,
    )
    return Evaluation(as_of, population, gaps, opened, closed)
