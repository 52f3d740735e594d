"""Portal mutations: what a patient enters about themselves, written to their portal account.

Every write goes through :class:`access.portal.PortalWriter` (who may write where) and the
portal loader's entry parser (what a valid entry is), and returns the item as the virtual EHR
shows it, marked ``patientReported``. Expected failures are union members, never errors.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated

import strawberry

from access.policy import AccessDeniedError
from access.portal import PortalAccountNotFoundError, PortalWrite, PortalWriter
from loaders.patient_record import InvalidField
from resolvers.context import Info, in_thread
from resolvers.types import (
    AccessDenied,
    Allergy,
    MedicationStatement,
    Observation,
    Preference,
    fact_from_row,
)


@strawberry.type(description="No portal account with that id.")
class PortalAccountNotFound:
    account: strawberry.ID
    message: str = "portal account not found"


@strawberry.type(description="The entry is invalid; `field` names the offending input field.")
class InvalidPortalEntry:
    field: str
    message: str


ReportedObservationResult = Annotated[
    Observation | AccessDenied | PortalAccountNotFound | InvalidPortalEntry,
    strawberry.union("ReportedObservationResult"),
]
ReportedMedicationResult = Annotated[
    MedicationStatement | AccessDenied | PortalAccountNotFound | InvalidPortalEntry,
    strawberry.union("ReportedMedicationResult"),
]
ReportedAllergyResult = Annotated[
    Allergy | AccessDenied | PortalAccountNotFound | InvalidPortalEntry,
    strawberry.union("ReportedAllergyResult"),
]
PreferenceResult = Annotated[
    Preference | AccessDenied | PortalAccountNotFound | InvalidPortalEntry,
    strawberry.union("PreferenceResult"),
]


@strawberry.input(description="A measurement the patient took: a known metric or a LOINC code.")
class SelfMeasurementInput:
    value: float
    metric: str | None = strawberry.field(
        default=None, description="body-weight, systolic-bp, blood-glucose, heart-rate, ..."
    )
    loinc: str | None = None
    unit: str | None = strawberry.field(default=None, description="UCUM; defaults per metric.")
    time: datetime | None = strawberry.field(default=None, description="Defaults to now.")


@strawberry.input(description="A symptom diary entry.")
class SymptomInput:
    text: str
    severity: int | None = strawberry.field(default=None, description="0 (none) to 10 (worst).")
    snomed: str | None = None
    time: datetime | None = None


@strawberry.input(description="A medication the patient takes, or says they stopped taking.")
class MedicationReportInput:
    name: str
    taking: bool
    rxnorm: str | None = None
    dose: str | None = None
    frequency: str | None = None
    since: date | None = None
    note: str | None = None
    time: datetime | None = None


@strawberry.input(description="An allergy the patient reports (unconfirmed until checked).")
class AllergyReportInput:
    substance: str
    reaction: str | None = None
    severity: str | None = strawberry.field(default=None, description="mild, moderate, severe")
    snomed: str | None = None
    rxnorm: str | None = None
    time: datetime | None = None


@strawberry.input(description="A preference: preferred_language, contact_channel, care wishes.")
class PreferenceInput:
    key: str
    value: str
    time: datetime | None = None


def _writer(info: Info) -> PortalWriter:
    feed = info.context.feed  # the writer publishes; wake the dispatcher for low latency
    return PortalWriter.for_access(
        info.context.access, on_changes=(lambda _changes: feed.wake()) if feed else None
    )


async def _run(
    info: Info, account: strawberry.ID, write: Callable[[PortalWriter, str], PortalWrite]
) -> object:
    try:
        done = await in_thread(write, _writer(info), str(account))
    except AccessDeniedError as e:
        return AccessDenied(message=str(e))
    except PortalAccountNotFoundError:
        return PortalAccountNotFound(account=account)
    except InvalidField as e:
        return InvalidPortalEntry(field=e.field, message=e.message)
    return fact_from_row(done.label, done.row)


@strawberry.type
class PortalMutation:
    @strawberry.mutation(description="Record a self-measurement in a portal account.")
    async def record_self_measurement(
        self, info: Info, account: strawberry.ID, input: SelfMeasurementInput
    ) -> ReportedObservationResult:
        return await _run(  # type: ignore[return-value]
            info,
            account,
            lambda w, a: w.record_measurement(
                a,
                value=input.value,
                metric=input.metric,
                loinc=input.loinc,
                unit=input.unit,
                time=input.time,
            ),
        )

    @strawberry.mutation(description="Add a symptom diary entry to a portal account.")
    async def add_symptom_entry(
        self, info: Info, account: strawberry.ID, input: SymptomInput
    ) -> ReportedObservationResult:
        return await _run(  # type: ignore[return-value]
            info,
            account,
            lambda w, a: w.add_symptom(
                a, text=input.text, severity=input.severity, snomed=input.snomed, time=input.time
            ),
        )

    @strawberry.mutation(description="Report a medication being taken or stopped.")
    async def report_medication(
        self, info: Info, account: strawberry.ID, input: MedicationReportInput
    ) -> ReportedMedicationResult:
        return await _run(  # type: ignore[return-value]
            info,
            account,
            lambda w, a: w.report_medication(
                a,
                name=input.name,
                taking=input.taking,
                rxnorm=input.rxnorm,
                dose=input.dose,
                frequency=input.frequency,
                since=input.since,
                note=input.note,
                time=input.time,
            ),
        )

    @strawberry.mutation(description="Report an allergy.")
    async def report_allergy(
        self, info: Info, account: strawberry.ID, input: AllergyReportInput
    ) -> ReportedAllergyResult:
        return await _run(  # type: ignore[return-value]
            info,
            account,
            lambda w, a: w.report_allergy(
                a,
                substance=input.substance,
                reaction=input.reaction,
                severity=input.severity,
                snomed=input.snomed,
                rxnorm=input.rxnorm,
                time=input.time,
            ),
        )

    @strawberry.mutation(description="Set a preference (replaces the value for the same key).")
    async def set_preference(
        self, info: Info, account: strawberry.ID, input: PreferenceInput
    ) -> PreferenceResult:
        return await _run(  # type: ignore[return-value]
            info,
            account,
            lambda w, a: w.set_preference(a, key=input.key, value=input.value, time=input.time),
        )


MUTATIONS: tuple[type, ...] = (PortalMutation,)
