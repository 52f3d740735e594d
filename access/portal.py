"""Checked writes of patient-reported data into portal accounts: the one way the API writes them.

A :class:`PortalWriter` belongs to one request's principal. A patient (``Role.PATIENT``, its
subject the uid of its own portal account record) may write only to that account; an admin to
any; everyone else to none. The check runs before anything is read, so a refusal says nothing
about whether another account exists. Entries are validated and turned into graph rows by the
portal loader's own entry parser, so an API write and an imported export look the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from access.guard import writer_of
from access.policy import AccessDeniedError, Action, Principal, Role, require
from access.records import RecordAccess
from graph import portal as q
from graph.connection import Driver
from graph.registry import publish
from graph.writer import write_batch
from loaders.patient_record import changes_of
from loaders.portal import add_entry
from ontology.model import Label
from ontology.records import GraphBatch

#: Record uid -> kinds of data changed (labels): what the change feed is told after a write.
Changes = dict[str, set[str]]


class PortalAccountNotFoundError(LookupError):
    """No portal account with that uid (only ever said to its owner or an admin)."""

    def __init__(self, uid: str) -> None:
        super().__init__(f"no portal account {uid!r}")
        self.uid = uid


@dataclass(frozen=True, slots=True)
class PortalWrite:
    """What one write created or updated: its label, the fact row (reader shape) and changes."""

    label: Label
    row: dict[str, Any]
    changes: Changes


class PortalWriter:
    def __init__(
        self,
        driver: Driver,
        principal: Principal,
        *,
        database: str | None = None,
        on_changes: Callable[[Changes], None] | None = None,
        records: RecordAccess | None = None,
    ) -> None:
        self._records = records
        self._driver = driver
        self._database = database
        self._on_changes = on_changes
        self.principal = principal

    @classmethod
    def for_access(
        cls, access: RecordAccess, *, on_changes: Callable[[Changes], None] | None = None
    ) -> PortalWriter:
        """The writer for the same request (principal, driver, database) as ``access``."""
        reader = access.reader
        return cls(
            reader.driver,
            access.principal,
            database=reader.database,
            on_changes=on_changes,
            records=access,
        )

    # -- the checks ------------------------------------------------------------------------
    def authorise(self, account_uid: str) -> q.PortalAccount:
        """The account, if this principal may write to it; raises otherwise."""
        require(self.principal, Action.WRITE_PORTAL)
        if self.principal.role is Role.PATIENT and self.principal.account != account_uid:
            raise AccessDeniedError(Action.WRITE_PORTAL)
        account = q.portal_account(self._driver, account_uid, database=self._database)
        if account is None:
            raise PortalAccountNotFoundError(account_uid)
        return account

    # -- the writes ------------------------------------------------------------------------
    def record_measurement(
        self,
        account_uid: str,
        *,
        value: float,
        metric: str | None = None,
        loinc: str | None = None,
        unit: str | None = None,
        time: datetime | None = None,
    ) -> PortalWrite:
        entry = {"metric": metric, "loinc": loinc, "value": value, "unit": unit}
        return self._write(account_uid, "measurement", Label.OBSERVATION, entry, time)

    def add_symptom(
        self,
        account_uid: str,
        *,
        text: str,
        severity: int | None = None,
        snomed: str | None = None,
        time: datetime | None = None,
    ) -> PortalWrite:
        entry = {"text": text, "severity": severity, "snomed": snomed}
        return self._write(account_uid, "symptom", Label.OBSERVATION, entry, time)

    def report_medication(
        self,
        account_uid: str,
        *,
        name: str,
        taking: bool,
        rxnorm: str | None = None,
        dose: str | None = None,
        frequency: str | None = None,
        since: date | None = None,
        note: str | None = None,
        time: datetime | None = None,
    ) -> PortalWrite:
        entry = {
            "name": name,
            "taking": taking,
            "rxnorm": rxnorm,
            "dose": dose,
            "frequency": frequency,
            "since": since.isoformat() if since else None,
            "note": note,
        }
        return self._write(account_uid, "medication", Label.MEDICATION_STATEMENT, entry, time)

    def report_allergy(
        self,
        account_uid: str,
        *,
        substance: str,
        reaction: str | None = None,
        severity: str | None = None,
        snomed: str | None = None,
        rxnorm: str | None = None,
        time: datetime | None = None,
    ) -> PortalWrite:
        entry = {
            "substance": substance,
            "reaction": reaction,
            "severity": severity,
            "snomed": snomed,
            "rxnorm": rxnorm,
        }
        return self._write(account_uid, "allergy", Label.ALLERGY_INTOLERANCE, entry, time)

    def set_preference(
        self, account_uid: str, *, key: str, value: str, time: datetime | None = None
    ) -> PortalWrite:
        entry = {"key": key, "value": value}
        return self._write(account_uid, "preference", Label.PREFERENCE, entry, time)

    def _write(
        self,
        account_uid: str,
        kind: str,
        label: Label,
        fields: Mapping[str, Any],
        time: datetime | None,
    ) -> PortalWrite:
        account = self.authorise(account_uid)
        when = time or datetime.now(UTC)
        entry = {
            "id": f"api-{uuid.uuid4().hex}",
            "kind": kind,
            "time": when.isoformat(),
            **{k: v for k, v in fields.items() if v is not None},
        }
        batch = GraphBatch()
        add_entry(batch, account.domain, account.record_id, entry)  # raises InvalidField
        write_batch(self._driver, batch, database=self._database)
        changes = changes_of(batch)
        # the operational data store and the change feed hear of every write
        publish(
            self._driver,
            changes,
            source=f"mutation:portal:{kind}",
            writer=writer_of(self.principal)
            if self._records is None
            else self._records.guard.writer,  # this request's id, None with audit off
            database=self._database,
        )
        if self._on_changes is not None:
            self._on_changes(changes)
        uid = next(row.uid for row in batch.node_rows() if row.label is label)
        rows = q.facts_by_uid(self._driver, label, [uid], database=self._database)
        return PortalWrite(label, rows[0], changes)
