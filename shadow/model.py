"""Typed records of the digital-shadow calculators: quantities, input readings, score results.

A calculator never guesses: when an input is missing its result has ``value=None`` and
``inputs_missing`` names what it needs, so the shadow can ask a domain for it (issue 5 §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal


@dataclass(frozen=True, slots=True)
class Quantity:
    """A measured value in a UCUM unit (``kg``, ``mg/dL``, ``Cel``, ``mm[Hg]``...)."""

    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class Reading:
    """One observation as it arrived from a domain, before any normalisation."""

    code: str
    system: str
    value: float | str | bool
    unit: str | None
    at: datetime
    source: str

    def quantity(self) -> Quantity:
        """The reading as a :class:`Quantity`; a reading without a numeric value is refused."""
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise ValueError(f"reading {self.system}|{self.code} from {self.source} is not numeric")
        return Quantity(float(self.value), self.unit or "1")


Input = Quantity | str | bool
Sex = Literal["female", "male"]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """A score or derived value with its provenance: what went in, what was missing, which
    published version of the model was applied, and when."""

    name: str
    version: str
    value: float | None
    category: str | None
    inputs_used: dict[str, Input]
    inputs_missing: list[str]
    computed_at: datetime
    reference: str
    notes: list[str] = field(default_factory=list)
    derived: bool = False
    unit: str | None = None

    @property
    def complete(self) -> bool:
        return self.value is not None


def now_utc() -> datetime:
    return datetime.now(UTC)
