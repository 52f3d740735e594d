"""The research data bank's export: consenting persons only, de-identified, OMOP and FHIR.

The cohort is every person with an active research consent (``grantAccess`` with the research
bank as grantee, or a grant to everyone for research), decided by the same policy as every
other read (``access/consent.py``); a fact is released only when that consent covers its
categories (a research consent may exclude mental health or HIV). Each exported person is one
audit event (action ``export``, purpose ``research``).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from access.consent import Category, Consent, Purpose, Who, decide, fact_categories
from access.policy import Role
from graph import consent as consents
from graph.connection import Driver
from graph.consent import Writer
from graph.research import person_data
from research.deid import (
    Person,
    birth_year,
    k_anonymise,
    new_pseudonym,
    new_shift,
    shifter,
    zip3,
)
from research.formats import Fact, Released, write_fhir, write_omop

RESEARCH_BANK = Who(kind="research", subject="research-bank")
FORMATS = ("omop", "fhir")


@dataclass
class ExportReport:
    export_id: str
    out_dir: str
    consenting: int
    exported: int
    suppressed: int
    k_requested: int
    k_achieved: int
    classes: int
    levels: dict[str, int]
    generalisation_steps: list[str]
    facts_released: int
    facts_withheld_by_consent: int
    date_shift_days: int
    omop: dict[str, int] = field(default_factory=dict)
    fhir: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def cohort(driver: Driver, *, now: datetime, database: str | None = None) -> dict[str, Any]:
    """Person uid -> research decision, for persons with a consent that lets the bank read."""
    out = {}
    for person, rows in consents.persons_with_consents(driver, database=database).items():
        decision = decide(
            RESEARCH_BANK,
            person,
            [Consent.from_row(r) for r in rows],
            purpose=Purpose.RESEARCH,
            now=now,
        )
        if decision.any and decision.allows(frozenset({Category.DEMOGRAPHICS})):
            out[person] = decision
    return out


def export(
    driver: Driver,
    out_dir: Path,
    *,
    k: int = 5,
    formats: Sequence[str] = FORMATS,
    shift_days: int = 180,
    actor: str = "research-export",
    now: datetime | None = None,
    database: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {', '.join(unknown)} (known: omop, fhir)")
    now = now or datetime.now(UTC)
    export_id = f"export:{uuid.uuid4()}"
    decisions = cohort(driver, now=now, database=database)
    persons = sorted(decisions)
    people: list[Person] = []
    data: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(person_data(driver, persons, database=database)):
        records = row["records"]
        uid = str(row["uid"])
        data[uid] = row
        people.append(
            Person(
                key=uid,
                birth_year=birth_year([row["birthDate"], *(r.get("birthDate") for r in records)]),
                gender=row["gender"]
                or next((r["gender"] for r in records if r.get("gender")), None),
                zip3=zip3([r.get("postalCode") for r in records]),
                state=next((r["state"] for r in records if r.get("state")), None),
            )
        )
        if progress is not None:
            progress(i + 1, len(persons))
    anon = k_anonymise(people, k)
    taken: set[int] = set()
    released: list[Released] = []
    withheld = 0
    for uid in sorted(anon.released):
        decision = decisions[uid]
        shift = shifter(new_shift(shift_days))
        person = Released(new_pseudonym(taken), str(uuid.uuid4()), anon.released[uid])
        # as the guard filters: categorise only under a restriction, scanning for what it names
        open_, looking_for = decision.unrestricted, decision.sensitive
        for fact in data[uid]["facts"]:
            labels, props, codes = fact["labels"], fact["props"], fact["codes"]
            if not open_ and not decision.allows(
                fact_categories(labels, props, codes, looking_for)
            ):
                withheld += 1
                continue
            person.facts.append(
                Fact(
                    label=labels[0],
                    codes=[
                        {k: str(c[k]) for k in ("system", "code", "display") if c.get(k)}
                        for c in sorted(codes, key=lambda c: c.get("rank") or 0)
                    ],
                    start=shift(props.get("date")),
                    end=shift(props.get("end")),
                    status=props.get("status"),
                    category=props.get("category"),
                    value=props["value"] if isinstance(props.get("value"), int | float) else None,
                    unit=props.get("unit"),
                    clinical_status=props.get("clinicalStatus"),
                    encounter_class=props.get("class"),
                )
            )
        released.append(person)
    if out_dir.exists():
        for name in FORMATS:
            shutil.rmtree(out_dir / name, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(
        export_id=export_id,
        out_dir=str(out_dir),
        consenting=len(persons),
        exported=len(released),
        suppressed=len(anon.suppressed),
        k_requested=k,
        k_achieved=anon.achieved_k,
        classes=anon.classes,
        levels=anon.levels,
        generalisation_steps=anon.steps,
        facts_released=sum(len(p.facts) for p in released),
        facts_withheld_by_consent=withheld,
        date_shift_days=shift_days,
        notes=[
            "OMOP *_concept_id are 0 (no OMOP vocabulary offline); *_source_value holds "
            "<system>|<code>",
            "dates shifted per person by a random non-zero offset within ±date_shift_days",
        ],
    )
    if "omop" in formats:
        report.omop = write_omop(released, out_dir / "omop")
    if "fhir" in formats:
        report.fhir = write_fhir(released, out_dir / "fhir", request=export_id, at=now)
    (out_dir / "report.json").write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    bank = Writer(actor, Role.RESEARCHER.value, Purpose.RESEARCH.value, request=export_id)
    consents.append_audit(
        driver,
        [
            bank.event(
                uid,
                "export",
                "research-export",
                outcome="allowed" if uid in anon.released else "denied",
                reason=None if uid in anon.released else f"suppressed for k={k}",
                basis=decisions[uid].basis,
            )
            for uid in persons
        ],
        database=database,
    )
    return report
