"""Curation rules of the mapping workbench that need no database: statuses, equivalences, and
the agreement of two reviewers who mapped the same list independently."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

STATUSES = ("unreviewed", "approved", "rejected", "flagged")
EQUIVALENCES = ("equal", "equivalent", "wider", "narrower", "inexact", "unmatched")
#: A decision compared between reviewers: the chosen target code, or one of these.
REJECTED, UNDECIDED = "<rejected>", "<undecided>"


class CurationError(ValueError):
    """A curation request that cannot be carried out; the message says why."""


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise CurationError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    return status


def check_equivalence(equivalence: str) -> str:
    if equivalence not in EQUIVALENCES:
        raise CurationError(
            f"unknown equivalence {equivalence!r}; one of {', '.join(EQUIVALENCES)}"
        )
    return equivalence


def decision(status: str | None, target_code: str | None, equivalence: str | None) -> str:
    """What a reviewer decided about one local code, as one comparable value."""
    if status == "approved":
        return "<unmatched>" if equivalence == "unmatched" else (target_code or "<unmatched>")
    if status == "rejected":
        return REJECTED
    return UNDECIDED


@dataclass(frozen=True, slots=True)
class Disagreement:
    source_code: str
    source_display: str | None
    a: str
    b: str


@dataclass(frozen=True, slots=True)
class AgreementReport:
    """Two reviewers' decisions on the codes both decided (approved or rejected)."""

    #: Codes in either workspace.
    codes: int
    #: Codes both reviewers decided.
    compared: int
    agreed: int
    #: Observed agreement (agreed / compared).
    percent: float
    #: Cohen's kappa over the decided codes (agreement beyond chance); None below 2 codes.
    kappa: float | None
    only_a: int
    only_b: int
    disagreements: list[Disagreement] = field(default_factory=list)


def agreement(
    a: dict[str, tuple[str, str | None]],
    b: dict[str, tuple[str, str | None]],
) -> AgreementReport:
    """Compare decisions keyed by source code: ``code -> (decision, source display)``.

    Cohen's kappa: κ = (p_o − p_e) / (1 − p_e), p_e from each reviewer's own distribution of
    decisions (Cohen 1960); categories are the chosen target codes plus rejected.
    """
    decided_a = {k: v for k, v in a.items() if v[0] != UNDECIDED}
    decided_b = {k: v for k, v in b.items() if v[0] != UNDECIDED}
    both = sorted(decided_a.keys() & decided_b.keys())
    agreed = sum(1 for k in both if decided_a[k][0] == decided_b[k][0])
    n = len(both)
    kappa: float | None = None
    if n >= 2:
        po = agreed / n
        count_a = Counter(decided_a[k][0] for k in both)
        count_b = Counter(decided_b[k][0] for k in both)
        pe = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
        kappa = 1.0 if pe >= 1.0 else (po - pe) / (1 - pe)
    return AgreementReport(
        codes=len(a.keys() | b.keys()),
        compared=n,
        agreed=agreed,
        percent=agreed / n if n else 0.0,
        kappa=kappa,
        only_a=len(decided_a.keys() - decided_b.keys()),
        only_b=len(decided_b.keys() - decided_a.keys()),
        disagreements=[
            Disagreement(k, decided_a[k][1], decided_a[k][0], decided_b[k][0])
            for k in both
            if decided_a[k][0] != decided_b[k][0]
        ],
    )


def slug(system: str) -> str:
    """A readable piece of a concept map name from a system URI."""
    known = {
        "http://snomed.info/sct": "snomed",
        "http://loinc.org": "loinc",
        "http://hl7.org/fhir/sid/icd-10": "icd10",
        "http://hl7.org/fhir/sid/icd-10-cm": "icd10cm",
        "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
    }
    if system in known:
        return known[system]
    tail = system.removeprefix("urn:medshadow:local:").replace(":", "-").replace("/", "-")
    return "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in tail).strip("-").lower()


def map_name(source_system: str, target_system: str) -> str:
    return f"{slug(source_system)}-to-{slug(target_system)}"


def parse_codes(values: Sequence[str] | None) -> list[str] | None:
    return [v.strip() for v in values if v.strip()] if values else None
