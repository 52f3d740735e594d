"""Typed records of the drug-safety layer: the knowledge (substances, classes, interactions
with their severity) and what a check returns (findings with their evidence)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    """The common scale every source's own levels map onto, most severe first."""

    CONTRAINDICATED = "contraindicated"
    MAJOR = "major"
    MODERATE = "moderate"
    MINOR = "minor"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def raised(self) -> Severity:
        """One step more severe (contraindicated stays)."""
        return _BY_RANK[min(self.rank + 1, 4)]


_RANK = {
    Severity.CONTRAINDICATED: 4,
    Severity.MAJOR: 3,
    Severity.MODERATE: 2,
    Severity.MINOR: 1,
}
_BY_RANK = {rank: sev for sev, rank in _RANK.items()}


@dataclass(frozen=True, slots=True)
class Entity:
    """A thesaurus entry an interaction can name: a substance, a class, or something else
    (grapefruit juice, alcohol). ``ingredients`` are the drug dictionary's canonical names it
    stands for; ``members`` (classes only) are the substance keys that belong to it."""

    key: str
    name: str
    kind: str  # substance | class | other
    ingredients: tuple[str, ...] = ()
    rxnorm: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Level:
    """One of an entry's severity statements: the source's own wording, its mapping and the
    advice that goes with it ("Surveillance clinique ...")."""

    severity: Severity
    source_level: str
    management: str


@dataclass(frozen=True, slots=True)
class KnownInteraction:
    """A curated interaction between two entities (either may be a class)."""

    uid: str
    a: str
    b: str
    severity: Severity  # the most severe of ``levels``
    levels: tuple[Level, ...]
    mechanism: str
    description: str
    source: str
    version: str
    see_also: str = ""


@dataclass(slots=True)
class Knowledge:
    """One parsed knowledge base, ready to be written."""

    source: str
    version: str
    title: str
    licence: str
    entities: dict[str, Entity] = field(default_factory=dict)
    interactions: list[KnownInteraction] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MedSource:
    """One domain's latest record of a medication: who says the patient takes it, and how."""

    record: str
    kind: str  # MedicationRequest (a clinic's prescription) | MedicationStatement (patient)
    domain: str
    domain_kind: str | None
    domain_name: str | None
    status: str
    at: int | None  # epoch seconds
    display: str
    strength: str | None  # "325 mg", parsed from the product name or the stated dose
    patient_reported: bool
    code: str | None  # concept uid (system|code) when coded
    note: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def prescribed(self) -> bool:
        return self.kind == "MedicationRequest"


ACTIVE_STATUSES = frozenset({"active", "on-hold", "intended", "draft", "unknown"})


@dataclass(slots=True)
class MedItem:
    """One medication of the reconciled list: the same ingredients from every source."""

    key: str
    display: str
    ingredients: tuple[str, ...]
    sources: list[MedSource]
    conflicts: list[str] = field(default_factory=list)
    proposed: bool = False  # a what-if prescription, not yet written

    @property
    def active(self) -> bool:
        return any(s.active for s in self.sources)

    @property
    def resolved(self) -> bool:
        return bool(self.ingredients)

    @property
    def prescribers(self) -> list[str]:
        """Domains that prescribe it (active clinic prescriptions)."""
        return sorted({s.domain for s in self.sources if s.prescribed and s.active})


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of a check. ``priority`` is what the screen does with it: ``interrupt``
    (the dangerous few, shown first and open), ``review`` or ``info`` (folded away)."""

    kind: str  # interaction | duplicate | polypharmacy | context
    severity: Severity
    base_severity: Severity
    priority: str
    title: str
    items: tuple[str, ...]  # MedItem keys concerned
    evidence: str  # "ANSM thesaurus 2020-10-20", "medshadow rule <id>", ...
    source_level: str | None = None
    mechanism: str | None = None
    management: str | None = None
    via: tuple[str, ...] = ()  # the thesaurus entries matched ("warfarine" + "antiagregants ...")
    rules: tuple[str, ...] = ()  # context rules that raised or annotated it, with their reason
    interaction: str | None = None  # DrugInteraction uid
    score: float = 0.0
    #: Weaker entries about the same pair, folded into this one ("minor: A prendre en compte via
    #: antiagrégants plaquettaires + anticoagulants oraux").
    also: tuple[str, ...] = ()
